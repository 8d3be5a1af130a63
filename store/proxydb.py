"""The proxy's own accounting tables (Kamailio's acc, missed_calls and acc_cdrs, lab/schema.sql),
read from the SQLite file its db_sqlite module writes, for `sipprobe diff`.

Time columns are decoded value by value, since the storage form depends on the backend and its
version: a REAL Julian day number (db_sqlite 5.6 stores JD(floor(t) - 0.5 s), LAB-NOTES), text
'YYYY-MM-DD HH:MM:SS' (UTC), or epoch seconds. Opened read-only: the proxy may be writing it.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from store import StoreError

TABLES = ("acc", "missed_calls", "acc_cdrs")
TIME_COLUMNS = {"acc": ("time",), "missed_calls": ("time",),
                "acc_cdrs": ("start_time", "end_time")}
JD_UNIX_EPOCH = 2440587.5  # the Julian day of 1970-01-01T00:00:00Z
# a number below this is a Julian day (year 4713 BC .. AD 22 666), above it epoch seconds
JD_LIMIT = 1e7
URL_SCHEMES = ("mysql://", "postgres://", "postgresql://")


def epoch_of(value) -> float | None:
    """Epoch seconds of a stored time in any of its forms; None if it is none of them.
    A Julian day from db_sqlite reads back as round(86400 * (jd - 2440587.5) + 0.5): the
    proxy's clock in whole seconds (it stored JD(t - 0.5 s))."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
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


def read_tables(location: str, tables=TABLES) -> dict[str, tuple[tuple[str, ...], list[dict]]]:
    """{table: (its columns, its rows as dicts with the time columns as epoch seconds)} of the
    proxy's database; a table the file lacks is left out. StoreError for a URL of a server
    database (not supported yet), a missing file or one that is not SQLite."""
    if location.lower().startswith(URL_SCHEMES):
        raise StoreError(f"{location.split('://')[0]} databases are not supported yet: give "
                         "the SQLite file Kamailio's db_sqlite writes (a copy of it will do)")
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
            rows = []
            for values in con.execute(f'SELECT * FROM "{table}"'):
                row = dict(zip(columns, values))
                for col in TIME_COLUMNS[table]:
                    if col in row:
                        row[col] = epoch_of(row[col])
                rows.append(row)
            out[table] = (columns, rows)
        if not out:
            raise StoreError(f"{location} has none of Kamailio's accounting tables "
                             f"({', '.join(tables)})")
        return out
    except sqlite3.Error as exc:
        if "not a database" in str(exc):
            raise StoreError(f"{location} is not a SQLite database") from None
        raise StoreError(f"proxy database {location}: {exc}") from None
    finally:
        con.close()
