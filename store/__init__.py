"""SQLite storage of acc, missed_calls and acc_cdrs rows.

tables.py declares the tables' columns (and the records that fill them), schema.py creates and
checks the tables, writer.py commits AccRecords and CdrRecords in batches, reports.py queries
them. sqlite_utils is imported only when a report opens a database (a replay creates and
checks the schema with plain sqlite3): importing this package costs nothing at CLI start-up.
"""
from __future__ import annotations


class StoreError(Exception):
    """A database that cannot be used as asked; the message says how to fix it."""


class FilterError(StoreError):
    """A report filter that cannot be understood (a time, a SIP code, a limit)."""


def is_url(db: str) -> bool:
    """Whether --db names a PostgreSQL database (store/postgres.py) rather than an SQLite file;
    here, so that the SQLite path imports nothing of PostgreSQL's."""
    return db.startswith(("postgresql://", "postgres://"))


def shown(url: str) -> str:
    """A database URL (postgresql://, mysql://) as messages show it: without its password,
    whether in the user part or a `password=` parameter."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a port that is not a number: nothing to trust but the host part
        return url.split("@")[-1]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
