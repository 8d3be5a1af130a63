"""The proxy's own accounting tables (Kamailio's acc, missed_calls and acc_cdrs, lab/schema.sql;
or OpenSIPS' acc and missed_calls, lab/opensips-acc-create.sql), for `sipprobe diff`: the SQLite
file its db_sqlite module writes, or its PostgreSQL or MySQL database (store/proxydb_server.py).

Time columns are decoded value by value, since the storage form depends on the backend and its
version: a REAL Julian day number (db_sqlite 5.6 stores JD(floor(t) - 0.5 s), LAB-NOTES), text
'YYYY-MM-DD HH:MM:SS', a timestamp the driver gives as a datetime (db_postgres' TIMESTAMP
WITHOUT TIME ZONE), or epoch seconds. Text and timestamps without a zone are read as UTC:
Kamailio writes its host's local time (srdb1/db_ut.c db_time2str_ex: localtime_r), so a proxy
compared this way runs on UTC. Opened read-only: the proxy may be writing it.
"""
from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

from store import StoreError

TABLES = ("acc", "missed_calls", "acc_cdrs")
# `created`: OpenSIPS' (the INVITE's second); Kamailio's tables have no such column
TIME_COLUMNS = {"acc": ("time", "created"), "missed_calls": ("time", "created"),
                "acc_cdrs": ("start_time", "end_time")}
JD_UNIX_EPOCH = 2440587.5  # the Julian day of 1970-01-01T00:00:00Z
# a number below this is a Julian day (year 4713 BC .. AD 22 666), above it epoch seconds
JD_LIMIT = 1e7
SERVER_SCHEMES = ("postgres://", "postgresql://", "mysql://", "mariadb://")  # proxydb_server.py


def epoch_of(value) -> float | None:
    """Epoch seconds of a stored time in any of its forms; None if it is none of them.
    A Julian day from db_sqlite reads back as round(86400 * (jd - 2440587.5) + 0.5): the
    proxy's clock in whole seconds (it stored JD(t - 0.5 s))."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, date):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 < value < JD_LIMIT:
            return float(round(86400.0 * (value - JD_UNIX_EPOCH) + 0.5))
        return float(value)
    return None


def decoded(table: str, columns, rows) -> list[dict]:
    """Rows as dicts, their time columns as epoch seconds (epoch_of)."""
    times = [c for c in TIME_COLUMNS[table] if c in columns]
    out = []
    for values in rows:
        row = dict(zip(columns, values))
        for col in times:
            row[col] = epoch_of(row[col])
        out.append(row)
    return out


def read_tables(location: str, tables=TABLES) -> dict[str, tuple[tuple[str, ...], list[dict]]]:
    """{table: (its columns, its rows as dicts with the time columns as epoch seconds)} of the
    proxy's database, an SQLite file or a PostgreSQL URL; a table it lacks is left out.
    StoreError for a database that cannot be read, or has none of the tables."""
    if location.lower().startswith(SERVER_SCHEMES):
        from store.proxydb_server import read_server
        return read_server(location, tables)
    if "://" in location:
        raise StoreError(f"{location.split('://')[0]} databases are not supported: give the "
                         "SQLite file Kamailio's db_sqlite writes (a copy of it will do), a "
                         "postgresql:// or a mysql:// URL")
    path = Path(location)
    if not path.is_file():
        raise StoreError(f"no such proxy database: {location}")
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open proxy database {location}: {exc}") from None
    try:
        out = {}
        for table in tables:
            columns = tuple(r[1] for r in con.execute(f'PRAGMA table_info("{table}")'))
            if not columns:
                continue
            out[table] = (columns, decoded(table, columns, con.execute(f'SELECT * FROM "{table}"')))
        if not out:
            raise StoreError(f"{location} has none of Kamailio's or OpenSIPS' "
                             f"accounting tables ({', '.join(tables)})")
        return out
    except sqlite3.Error as exc:
        if "not a database" in str(exc):
            raise StoreError(f"{location} is not a SQLite database") from None
        raise StoreError(f"proxy database {location}: {exc}") from None
    finally:
        con.close()
