"""Queries behind `sipprobe report`: rows of acc, missed_calls and acc_cdrs as lists of dicts.

Every report takes the same filters and returns its columns in table order (REPORT_COLUMNS,
CDR_REPORT_COLUMNS), sorted by packet time (the table's clock column: time_epoch; start_epoch for
CDRs), then id. Columns, clocks and end reasons come from store/tables.py.
"""
from __future__ import annotations

from store import FilterError
from store.query import Filters, parse_time, stream  # noqa: F401 (parse_time: its old home)
from store.schema import CDR_TABLE
from store.tables import ACC, BY_NAME, CDR, END_REASONS

REPORT_COLUMNS = ACC.report_columns
CDR_REPORT_COLUMNS = CDR.report_columns


def acc_rows(db_path: str, *, since=None, until=None, callid: str | None = None,
             user: str | None = None, method: str | None = None, code: str | None = None,
             limit: int | None = None) -> list[dict]:
    """Rows of `acc` (answered transactions). See rows() for the filters."""
    return rows("acc", db_path, since=since, until=until, callid=callid, user=user,
                method=method, code=code, limit=limit)


def missed_rows(db_path: str, *, since=None, until=None, callid: str | None = None,
                user: str | None = None, method: str | None = None, code: str | None = None,
                limit: int | None = None) -> list[dict]:
    """Rows of `missed_calls` (INVITEs that failed). See rows() for the filters."""
    return rows("missed_calls", db_path, since=since, until=until, callid=callid, user=user,
                method=method, code=code, limit=limit)


def cdr_rows(db_path: str, *, since=None, until=None, callid: str | None = None,
             user: str | None = None, code: str | None = None, end_reason: str | None = None,
             limit: int | None = None) -> list[dict]:
    """Rows of `acc_cdrs` (one per call), in start order. since / until compare start_epoch;
    end_reason: one of tables.END_REASONS. See rows() for the others."""
    if end_reason is not None and end_reason not in END_REASONS:
        raise FilterError(f"bad end reason {end_reason!r}: give "
                          f"{', '.join(END_REASONS[:-1])} or {END_REASONS[-1]}")
    return rows(CDR_TABLE, db_path, since=since, until=until, callid=callid, user=user,
                code=code, end_reason=end_reason, limit=limit)


def rows(table: str, db_path: str, *, since=None, until=None, callid=None, user=None,
         method=None, code=None, end_reason=None, limit=None, ip=None) -> list[dict]:
    """Rows of `table` matching every filter given, as dicts (store/query.py streams them as
    tuples; Filters says what each filter matches)."""
    filters = Filters.parse(since=since, until=until, callid=callid, user=user, method=method,
                            code=code, end_reason=end_reason, ip=ip)
    columns = BY_NAME[table].report_columns
    return [dict(zip(columns, row)) for row in stream(table, db_path, filters, limit=limit)]
