"""The filters every report shares, as one parameterised WHERE clause, and rows streamed from
the cursor of the SQLite file or the PostgreSQL database (a report of 40 000 rows starts
printing at its first row); open_report for the reports that aggregate (store/dialect.py).

Filters (Filters): packet time (`since` inclusive, `until` exclusive; dates, epoch seconds or
relative times: parse_time), `user` (partial; a number matches whatever its prefix: `+`, `00`
or `0`), `ip` (the source address or the request-URI host), `callid`, `method` (any case),
`code` (486 or 4xx), `end_reason` (acc_cdrs), `min_mos` / `max_mos` (acc_cdrs.mos_min, the
worst side's lowest MOS; call_quality.mos_min per side). Values always travel as SQL parameters.
"""
from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Iterator

from store import FilterError, StoreError, is_url
from store.dialect import POSTGRES, SQLITE, Dialect, ReportDb
from store.schema import CDR_TABLE, check_columns, connect, database_error, file_flavour
from store.tables import BY_NAME, CALL_QUALITY, END_REASONS, FLAVOURS, Table

_CODE = re.compile(r"[1-6](\d\d|xx)", re.I)
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)", re.I)
_UNIT = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
USER_COLUMNS = ("src_user", "dst_user", "dst_ouser")
IP_COLUMNS = ("src_ip", "dst_domain")  # the request-URI host is the destination's address
# the tables the row reports (`report acc`, `report missed`) read in a file of another flavour
# than Kamailio's (which has them all); every other report reads Kamailio's acc_cdrs or pairs
# Kamailio's acc rows (docs/opensips.md)
ROW_REPORTS = {"opensips": ("acc", "missed_calls")}


@dataclass(frozen=True)
class Filters:
    """What a report keeps; None: no condition. Times are epoch seconds (parse_time)."""
    since: float | None = None
    until: float | None = None
    callid: str | None = None
    user: str | None = None
    ip: str | None = None
    domain: str | None = None
    method: str | None = None
    code: str | None = None
    end_reason: str | None = None
    min_mos: float | None = None  # the worst side's lowest MOS (acc_cdrs.mos_min) at least
    max_mos: float | None = None  # ... at most

    @classmethod
    def parse(cls, *, now: float | None = None, **given) -> "Filters":
        """Filters from the CLI's text: times parsed, the rest checked; FilterError if bad."""
        values = {f.name: given.get(f.name) for f in fields(cls)}
        for name in ("since", "until"):
            if values[name] is not None:
                values[name] = parse_time(values[name], now=now)
        code = values["code"]
        if code is not None and not _CODE.fullmatch(code):
            raise FilterError(f"bad SIP code {code!r}: give three digits (486) or a class (4xx)")
        reason = values["end_reason"]
        if reason is not None and reason not in END_REASONS:
            raise FilterError(f"bad end reason {reason!r}: give "
                              f"{', '.join(END_REASONS[:-1])} or {END_REASONS[-1]}")
        for name in ("min_mos", "max_mos"):
            if values[name] is not None and not 1.0 <= float(values[name]) <= 5.0:
                raise FilterError(f"bad --{name.replace('_', '-')} {values[name]}: give a MOS "
                                  "between 1.0 and 5.0 (3.6, for example)")
        return cls(**values)

    def party(self, prefix: str = "", dialect: Dialect = SQLITE) -> tuple[list[str], list]:
        """The --user and --ip conditions on a row's users and addresses (`prefix`: the
        columns' table alias and dot)."""
        where, params = [], []
        if self.user is not None:
            sql, more = user_condition(self.user, [prefix + c for c in USER_COLUMNS],
                                       dialect.like_nocase)
            where.append(sql)
            params += more
        if self.ip is not None:
            ip = self.ip.strip().strip("[]")
            where.append("(" + " OR ".join(f"{prefix}{c} IN (?, ?)" for c in IP_COLUMNS) + ")")
            params += [ip, f"[{ip}]"] * len(IP_COLUMNS)
        return where, params

    def where(self, table: str, alias: str = "", dialect: Dialect = SQLITE,
              layout: Table | None = None) -> tuple[str, list]:
        """(' WHERE ...' or '', parameters) for `table`'s layout (default: the Kamailio
        flavour's; layout_of gives a file's) in `dialect`'s SQL (the parameters as `?`);
        `alias` prefixes columns. FilterError for a filter whose columns the layout lacks."""
        layout = layout or BY_NAME[table]
        self._check_columns(table, layout)
        p = f"{alias}." if alias else ""
        clock = p + layout.clock
        where, params = [], []
        if self.since is not None:
            where.append(f"{clock} >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append(f"{clock} < ?")
            params.append(self.until)
        if self.callid is not None:
            where.append(f"{p}callid = ?")
            params.append(self.callid)
        more_where, more_params = self.party(p, dialect)
        where += more_where
        params += more_params
        if self.domain is not None:
            where.append(f"(lower({p}src_domain) = ? OR lower({p}dst_domain) = ?)")
            params += [self.domain.strip().lower()] * 2
        if self.method is not None:
            if "method" not in layout.column_names:
                raise FilterError(f"--method does not apply to {table}: every row is a call")
            where.append(f"{p}method = ?")
            params.append(self.method.strip().upper())
        if self.code is not None:
            where.append(f"{p}sip_code LIKE ?")  # a class matches through LIKE's `_`
            params.append(self.code.lower().replace("x", "_"))
        if self.end_reason is not None:
            if table != CDR_TABLE:
                raise FilterError("--end-reason applies to CDRs (acc_cdrs) only")
            where.append(f"{p}end_reason = ?")
            params.append(self.end_reason)
        for value, op in ((self.min_mos, ">="), (self.max_mos, "<=")):
            if value is not None:
                if table != CDR_TABLE:
                    raise FilterError("--min-mos and --max-mos apply to calls, CDRs and quality")
                where.append(f"{p}mos_min {op} ?")
                params.append(float(value))
        return (" WHERE " + " AND ".join(where) if where else ""), params

    def _check_columns(self, table: str, layout: Table) -> None:
        """Each filter given needs its columns in the layout (OpenSIPS' acc and missed_calls
        have them all; rtcp_reports has no users)."""
        needed = {"callid": ("callid",), "user": USER_COLUMNS, "ip": IP_COLUMNS,
                  "domain": ("src_domain", "dst_domain"), "code": ("sip_code",)}
        for name, columns in needed.items():
            missing = [c for c in columns if c not in layout.column_names]
            if getattr(self, name) is not None and missing:
                raise FilterError(f"--{name} does not apply to {table}: it has no "
                                  f"{', '.join(missing)} column")


def user_condition(text: str, columns, like: str = "LIKE") -> tuple[str, list]:
    """A partial match of `text` in any of `columns`, letters in any case (`like`: the
    dialect's case-insensitive LIKE). A number (digits, with or without a leading +) is
    compared without its international or trunk prefix on both sides (`+`, `00`, `0`):
    97239287044, +97239287044 and 0097239287044 are one number."""
    text = text.strip()
    if not text:
        raise FilterError("empty --user: give a user name or a number, whole or in part")
    digits = text.lstrip("+")
    if digits.isdigit():
        core = digits.lstrip("0") or digits
        pattern = "%" + core + "%"
        return "(" + " OR ".join(f"ltrim({c}, '+0') LIKE ?" for c in columns) + ")", \
            [pattern] * len(columns)
    pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
    return "(" + " OR ".join(f"{c} {like} ? ESCAPE '\\'" for c in columns) + ")", \
        [pattern] * len(columns)


def parse_time(value, *, now: float | None = None) -> float:
    """Epoch seconds from a number, ISO 8601 text (naive = UTC), a relative time before now
    (`90s`, `30m`, `2h`, `7d`, `1w`, `2h ago`) or a day (`today`, `yesterday`: 00:00 UTC)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    if text in ("now", "today", "yesterday"):
        if text == "now":
            return now
        midnight = datetime.fromtimestamp(now, timezone.utc).replace(
            hour=0, minute=0, second=0, microsecond=0)
        return (midnight - timedelta(days=1 if text == "yesterday" else 0)).timestamp()
    m = _RELATIVE.fullmatch(text.removesuffix("ago").strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise FilterError(f"bad time {value!r}: give a date (2026-11-23, 2026-11-23T10:57:25Z, "
                          "2026-11-23 10:57:25+01:00), epoch seconds, a time ago (30m, 2h, "
                          "7d) or today / yesterday") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def layout_of(db, table: str) -> Table:
    """The layout of `table` in the open sipprobe SQLite file `db` (a connection or an
    sqlite_utils.Database), by the flavour the file records: the one place a report learns
    whose columns it reads. StoreError when the reports do not read that table there."""
    flavour = file_flavour(db)
    if flavour == "kamailio":
        return BY_NAME[table]
    if table not in ROW_REPORTS.get(flavour, ()):
        raise StoreError(refusal(flavour))
    return next(t for t in FLAVOURS[flavour] if table in t.names)


def refusal(flavour: str) -> str:
    """What a report that needs Kamailio's tables says of a file of another flavour."""
    return (f"holds {flavour}'s tables (--flavour {flavour}): `report acc` and `report missed` "
            "read them; the others need Kamailio's tables (acc_cdrs, the INVITE and BYE rows "
            "of acc): docs/opensips.md")


def open_table(db_path: str, table: str):
    """(sqlite_utils.Database, the table's columns in that file); StoreError if the file has no
    such table, is not sipprobe's or not Kamailio-flavour. The caller closes the database."""
    return _open_layout(db_path, table, any_flavour=False)[:2]


def _open_layout(db_path: str, table: str, any_flavour: bool):
    """(database, columns, layout) of open_table; `any_flavour`: an OpenSIPS-flavour file's
    acc and missed_calls too (layout_of)."""
    db = connect(db_path, create=False)
    try:
        flavour = file_flavour(db)
        if flavour != "kamailio" and not any_flavour:
            raise StoreError(f"{db_path} {refusal(flavour)}")
        try:
            layout = layout_of(db, table)
        except StoreError as exc:
            raise StoreError(f"{db_path} {exc}") from None
        if not db[table].exists():
            if table == CDR_TABLE and db["acc"].exists():
                raise StoreError(f"{db_path} has no {table} table: it was written by an older "
                                 "sipprobe; a replay or live run into it adds the table "
                                 f"(sipprobe replay CAPTURE --db {db_path})")
            raise StoreError(f"{db_path} has no {table} table: it was not written by sipprobe; "
                             f"run `sipprobe replay CAPTURE --db {db_path}` first")
        return db, check_columns(db, db_path, table, layout), layout
    except BaseException as exc:
        db.close()
        if isinstance(exc, sqlite3.Error):
            raise database_error(db_path, exc) from None
        raise


def flavour_of(db_path: str) -> str:
    """The flavour of the sipprobe file at `db_path` (a PostgreSQL database: kamailio)."""
    if is_url(db_path):
        return "kamailio"
    db = connect(db_path, create=False)
    try:
        return file_flavour(db)
    finally:
        db.close()


def file_layout(db_path: str, table: str) -> Table:
    """The layout the row reports print for `table` of the file or database at `db_path`
    (layout_of; a PostgreSQL database holds Kamailio's)."""
    if is_url(db_path):
        return BY_NAME[table]
    db, _, layout = _open_layout(db_path, table, any_flavour=True)
    db.close()
    return layout


def open_report(db_path: str, table: str):
    """A store.dialect.ReportDb on the SQLite file or PostgreSQL URL `db_path`, checked to hold
    sipprobe's `table`; StoreError if it cannot be used."""
    if is_url(db_path):
        import psycopg

        from store import postgres
        conn, have = postgres.open_table(db_path, table)
        return ReportDb(conn, POSTGRES, have, (psycopg.Error,),
                        lambda exc: StoreError(f"{postgres.shown(db_path)}: {str(exc).strip()}"))
    db, have = open_table(db_path, table)
    return ReportDb(db.conn, SQLITE, have, (sqlite3.Error,),
                    lambda exc: database_error(db_path, exc))


def stream(table: str, db_path: str, filters: Filters = Filters(), *, columns=None,
           limit: int | None = None) -> Iterator[tuple]:
    """Rows of `table` as tuples of `columns` (default: every report column), in packet-time
    order, read from the cursor one at a time. Opening the database and checking it happen
    at the call; the rows come as the caller iterates. A column the file does not have yet
    (written before it was added) reads as NULL. An OpenSIPS-flavour file's acc and
    missed_calls are read in OpenSIPS' layout (layout_of)."""
    if limit is not None and limit < 1:
        raise FilterError(f"bad limit {limit}: give a positive number of rows")
    if is_url(db_path):  # PostgreSQL: the same query in its parameter style, timestamps as text
        from store import postgres
        layout = BY_NAME[table]
        columns = tuple(columns or layout.report_columns)
        where, params = filters.where(table, dialect=POSTGRES)
        db, have = postgres.open_table(db_path, table)
        select = postgres.select_list(table, columns, have)
    else:
        db, have, layout = _open_layout(db_path, table, any_flavour=True)
        columns = tuple(columns or layout.report_columns)
        try:
            where, params = filters.where(table, layout=layout)
        except FilterError:
            db.close()
            raise
        select = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in columns)
    sql = f'SELECT {select} FROM "{table}"{where} ORDER BY {layout.clock}, id'
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    if is_url(db_path):
        return postgres.stream_query(db, db_path, sql, params)
    return stream_sqlite(db, db_path, sql, params)


def stream_sqlite(db, db_path: str, sql: str, params: list) -> Iterator[tuple]:
    """The rows of `sql` on the open sqlite_utils database `db`, one at a time; the database
    is closed when they end (or at once, with a StoreError, if the query fails)."""
    try:
        cursor = db.conn.execute(sql, params)
    except sqlite3.Error as exc:
        db.close()
        raise database_error(db_path, exc) from None
    return _rows(cursor, db, db_path)


def _rows(cursor, db, db_path: str) -> Iterator[tuple]:
    try:
        while True:
            batch = cursor.fetchmany(256)
            if not batch:
                return
            yield from batch
    except sqlite3.Error as exc:
        raise database_error(db_path, exc) from None
    finally:
        db.close()


def time_column_clock(db_path: str) -> str:
    """'UTC' or 'local': the clock of the text time columns (sipprobe_meta.time_column)."""
    if is_url(db_path):
        from store import postgres
        return postgres.time_column_clock(db_path)
    try:
        db = connect(db_path, create=False)
    except StoreError:
        return "UTC"
    try:
        row = db.conn.execute("SELECT value FROM sipprobe_meta WHERE key = 'time_column'")\
            .fetchone()
        return "local" if row and row[0] == "local" else "UTC"
    except sqlite3.Error:
        return "UTC"
    finally:
        db.close()


# `report quality`: call_quality's columns, then who called whom (from the call's CDR)
QUALITY_EXTRA = ("src_user", "dst_user")


def quality_stream(db_path: str, filters: Filters = Filters(), *, max_mos: float | None = None,
                   columns=None, limit: int | None = None) -> Iterator[tuple]:
    """Rows of call_quality (a call's MOS and its inputs per side) as tuples of `columns`
    (call_quality's, or QUALITY_EXTRA's from the call's CDR), worst first: by mos_min, sides
    without a MOS last. since / until compare the call's start; user and ip the call's CDR;
    max_mos keeps sides whose lowest MOS is at most this."""
    table = CALL_QUALITY.name
    columns = tuple(columns or CALL_QUALITY.report_columns + QUALITY_EXTRA)
    where, params = [], []
    if filters.since is not None:
        where.append("q.start_epoch >= ?")
        params.append(filters.since)
    if filters.until is not None:
        where.append("q.start_epoch < ?")
        params.append(filters.until)
    if filters.callid is not None:
        where.append("q.callid = ?")
        params.append(filters.callid)
    more_where, more_params = filters.party("c.", POSTGRES if is_url(db_path) else SQLITE)
    where += more_where
    params += more_params
    max_mos = filters.max_mos if max_mos is None else max_mos
    for value, op in ((filters.min_mos, ">="), (max_mos, "<=")):
        if value is not None:
            where.append(f"q.mos_min {op} ?")
            params.append(float(value))
    if limit is not None and limit < 1:
        raise FilterError(f"bad limit {limit}: give a positive number of rows")
    select = ", ".join(f"c.{c}" if c in QUALITY_EXTRA else f"q.{c}" for c in columns)
    sql = (f'SELECT {select} FROM "{table}" q LEFT JOIN "{CDR_TABLE}" c '
           "ON c.callid = q.callid AND c.from_tag = q.from_tag")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY q.mos_min IS NULL, q.mos_min, q.start_epoch, q.id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    if is_url(db_path):
        from store import postgres
        return postgres.stream_query(postgres.open_table(db_path, table)[0], db_path, sql, params)
    db, _ = open_table(db_path, table)
    try:
        cursor = db.conn.execute(sql, params)
    except sqlite3.Error as exc:
        db.close()
        raise database_error(db_path, exc) from None
    return _rows(cursor, db, db_path)
