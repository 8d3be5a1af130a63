"""Queries behind `sipprobe report`: rows of acc, missed_calls and acc_cdrs as lists of dicts.

Every report takes the same filters and returns its columns in table order (REPORT_COLUMNS,
CDR_REPORT_COLUMNS), sorted by packet time (the table's clock column: time_epoch; start_epoch for
CDRs), then id. Columns, clocks and end reasons come from store/tables.py.
"""
from __future__ import annotations

import math
import re
import sqlite3
from datetime import datetime, timezone

from store import FilterError, StoreError
from store.schema import CDR_TABLE, check_columns, connect, database_error
from store.tables import ACC, BY_NAME, CALL_QUALITY, CDR, END_REASONS

REPORT_COLUMNS = ACC.report_columns
CDR_REPORT_COLUMNS = CDR.report_columns
_CODE = re.compile(r"[1-6](\d\d|xx)", re.I)


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
         method=None, code=None, end_reason=None, limit=None) -> list[dict]:
    """Rows of `table` matching every filter given.

    since / until: packet time, since inclusive and until exclusive; epoch seconds or ISO 8601
    text (UTC unless it carries an offset). user: src_user, dst_user or dst_ouser. method: exact.
    code: a SIP code (486) or a class (4xx). end_reason (acc_cdrs): exact. limit: the first n.
    """
    cdrs = table == CDR_TABLE
    layout = BY_NAME[table]
    clock = layout.clock
    where, params = [], []
    if since is not None:
        where.append(f"{clock} >= ?")
        params.append(parse_time(since))
    if until is not None:
        where.append(f"{clock} < ?")
        params.append(parse_time(until))
    if callid is not None:
        where.append("callid = ?")
        params.append(callid)
    if user is not None:
        where.append("(src_user = ? OR dst_user = ? OR dst_ouser = ?)")
        params += [user] * 3
    if method is not None:
        where.append("method = ?")
        params.append(method)
    if code is not None:
        if not _CODE.fullmatch(code):
            raise FilterError(f"bad SIP code {code!r}: give three digits (486) or a class (4xx)")
        where.append("sip_code LIKE ?")  # a class matches through LIKE's `_`
        params.append(code.lower().replace("x", "_"))
    if end_reason is not None:
        where.append("end_reason = ?")
        params.append(end_reason)
    if limit is not None and limit < 1:
        raise FilterError(f"bad limit {limit}: give a positive number of rows")
    db = connect(db_path, create=False)
    try:
        if not db[table].exists() and cdrs and db["acc"].exists():
            raise StoreError(f"{db_path} has no {table} table: it was written by an older "
                             "sipprobe; a replay or live run into it adds the table "
                             f"(sipprobe replay CAPTURE --db {db_path})")
        if not db[table].exists():
            raise StoreError(f"{db_path} has no {table} table: it was not written by sipprobe; "
                             f"run `sipprobe replay CAPTURE --db {db_path}` first")
        have = check_columns(db, db_path, table)
        # a file a writer has not migrated yet lacks the newer columns: NULL in its rows
        columns = [c if c in have else f"NULL AS {c}" for c in layout.report_columns]
        sql = f"SELECT {', '.join(columns)} FROM [{table}]"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {clock}, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return list(db.query(sql, params))
    except sqlite3.Error as exc:
        raise database_error(db_path, exc) from None
    finally:
        db.close()


def parse_time(value) -> float:
    """Epoch seconds from a number, a numeric string or ISO 8601 text (naive = UTC)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"bad time {value!r}: give ISO 8601 (2026-11-23T10:57:25Z, "
                          "2026-11-23 10:57:25+01:00, 2026-11-23) or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# `report quality`: call_quality's columns, then who called whom (from the call's CDR)
QUALITY_REPORT_COLUMNS = CALL_QUALITY.report_columns + ("src_user", "dst_user")
QUALITY_SUMMARY_COLUMNS = ("side", "reports", "codec", "mos_min", "mos_avg", "mos_max",
                           "loss_pct_avg", "jitter_ms_avg", "rtt_ms_avg", "mos_rtpengine_avg",
                           "src_user", "dst_user", "callid")


def quality_rows(db_path: str, *, since=None, until=None, callid: str | None = None,
                 user: str | None = None, max_mos: float | None = None,
                 limit: int | None = None) -> list[dict]:
    """Rows of `call_quality` (a call's MOS and its inputs per side), worst first: by mos_min,
    sides without a MOS last. since / until compare the call's start; user: the caller's or
    callee's user in the call's CDR (src_user, dst_user, dst_ouser); max_mos: sides whose
    lowest MOS is at most this."""
    table = CALL_QUALITY.name
    where, params = [], []
    if since is not None:
        where.append("q.start_epoch >= ?")
        params.append(parse_time(since))
    if until is not None:
        where.append("q.start_epoch < ?")
        params.append(parse_time(until))
    if callid is not None:
        where.append("q.callid = ?")
        params.append(callid)
    if user is not None:
        where.append("(c.src_user = ? OR c.dst_user = ? OR c.dst_ouser = ?)")
        params += [user] * 3
    if max_mos is not None:
        where.append("q.mos_min <= ?")
        params.append(float(max_mos))
    columns = [f"q.{c}" for c in CALL_QUALITY.report_columns] + ["c.src_user", "c.dst_user"]
    sql = (f"SELECT {', '.join(columns)} FROM [{table}] q LEFT JOIN [{CDR_TABLE}] c "
           "ON c.callid = q.callid AND c.from_tag = q.from_tag")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY q.mos_min IS NULL, q.mos_min, q.start_epoch, q.id"
    if limit is not None:
        if limit < 1:
            raise FilterError(f"bad limit {limit}: give a positive number of rows")
        sql += " LIMIT ?"
        params.append(limit)
    db = connect(db_path, create=False)
    try:
        if not db[table].exists():
            raise StoreError(f"{db_path} has no {table} table: replay a capture with RTCP into "
                             f"it (sipprobe replay CAPTURE --db {db_path})")
        check_columns(db, db_path, table)
        return list(db.query(sql, params))
    except sqlite3.Error as exc:
        raise database_error(db_path, exc) from None
    finally:
        db.close()
