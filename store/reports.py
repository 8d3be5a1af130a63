"""Queries behind `sipprobe report`: rows of acc and missed_calls as lists of dicts.

Every report takes the same filters and returns REPORT_COLUMNS in that order, sorted by packet
time (time_epoch), then id.
"""
from __future__ import annotations

import math
import re
import sqlite3
from datetime import datetime, timezone

from store import FilterError, StoreError
from store.schema import KAMAILIO_NAMES, check_columns, connect, database_error

REPORT_COLUMNS = KAMAILIO_NAMES + ("time_epoch", "cseq")  # row_key is internal
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


def rows(table: str, db_path: str, *, since=None, until=None, callid=None, user=None,
         method=None, code=None, limit=None) -> list[dict]:
    """Rows of `table` matching every filter given.

    since / until: packet time, since inclusive and until exclusive; epoch seconds or ISO 8601
    text (UTC unless it carries an offset). user: src_user, dst_user or dst_ouser. method: exact.
    code: a SIP code (486) or a class (4xx). limit: the first n rows.
    """
    where, params = [], []
    if since is not None:
        where.append("time_epoch >= ?")
        params.append(parse_time(since))
    if until is not None:
        where.append("time_epoch < ?")
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
    sql = f"SELECT {', '.join(REPORT_COLUMNS)} FROM [{table}]"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time_epoch, id"
    if limit is not None:
        if limit < 1:
            raise FilterError(f"bad limit {limit}: give a positive number of rows")
        sql += " LIMIT ?"
        params.append(limit)
    db = connect(db_path, create=False)
    try:
        if not db[table].exists():
            raise StoreError(f"{db_path} has no {table} table: it was not written by sipprobe; "
                             f"run `sipprobe replay CAPTURE --db {db_path}` first")
        check_columns(db, db_path, table)
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
