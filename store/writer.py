"""Commits AccRecords to the acc and missed_calls tables in batches.

A batch is one transaction: `batch_rows` rows or `batch_seconds` of wall time, whichever comes
first, and whatever is buffered at flush(), close() or the end of a `with` block. The database is
in WAL mode with synchronous=NORMAL: a killed process loses at most the batch it had not
committed yet, never a committed row (a power cut may also undo the last commits, never corrupt).
Rows are keyed on their content (row_key, INSERT OR IGNORE), so replaying a capture again adds
nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from typing import TYPE_CHECKING

from store.schema import COLUMN_NAMES, TABLES, connect, database_error, ensure_schema

if TYPE_CHECKING:
    from sip_dissect.records import AccRecord

_now = time.monotonic  # batch age is wall time: a replay runs far faster than packet time


def open_store(path: str, *, local_time: bool = False, batch_rows: int = 500,
               batch_seconds: float = 1.0) -> AccStore:
    """Open (creating the file and tables if absent) the database at `path` for writing.

    `local_time` writes the `time` column in this machine's time zone instead of UTC; the choice
    is recorded in the file, and reopening it with the other one is a StoreError.
    """
    if batch_rows < 1 or batch_seconds < 0:
        raise ValueError("batch_rows must be at least 1 and batch_seconds not negative")
    db = connect(path, create=True)
    try:
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        ensure_schema(db, path, local_time=local_time)
    except sqlite3.Error as exc:
        db.close()
        raise database_error(path, exc) from None
    except BaseException:
        db.close()
        raise
    return AccStore(db, path, local_time=local_time, batch_rows=batch_rows,
                    batch_seconds=batch_seconds)


def time_text(epoch: float, local_time: bool = False) -> str:
    """Kamailio's `time`: whole seconds, truncated (floor) as the proxy's time_t is."""
    second = math.floor(epoch)
    parts = time.localtime(second) if local_time else time.gmtime(second)
    return time.strftime("%Y-%m-%d %H:%M:%S", parts)


def row_key(rec: AccRecord) -> str:
    """What makes a row the same row: the transaction and its final reply, not the time."""
    ident = [rec.table, rec.callid, rec.method, rec.cseq, rec.from_tag, rec.to_tag, rec.sip_code]
    return hashlib.sha1(json.dumps(ident).encode()).hexdigest()


class AccStore:
    """Buffered writer of AccRecords; use open_store() to get one."""

    def __init__(self, db, path: str, *, local_time: bool, batch_rows: int,
                 batch_seconds: float):
        self.path = path
        self.local_time = local_time
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self._db = db
        self._pending: dict[str, list[tuple]] = {t: [] for t in TABLES}
        self._pending_rows = 0
        self._batch_started = 0.0
        self._counts = {"acc": 0, "missed_calls": 0, "duplicates": 0}

    def add(self, rec: AccRecord) -> None:
        """Buffer one row; commits the batch when it is full or old enough."""
        if self._db is None:
            raise ValueError(f"store {self.path} is closed")
        if rec.table not in self._pending:
            raise ValueError(f"AccRecord.table must be one of {TABLES}, not {rec.table!r}")
        row = (rec.method, rec.from_tag, rec.to_tag, rec.callid, rec.sip_code, rec.sip_reason,
               time_text(rec.time, self.local_time), rec.src_user, rec.src_domain, rec.src_ip,
               rec.dst_ouser, rec.dst_user, rec.dst_domain, rec.time, rec.cseq, row_key(rec))
        if not self._pending_rows:
            self._batch_started = _now()
        self._pending[rec.table].append(row)
        self._pending_rows += 1
        if self._pending_rows >= self.batch_rows:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        """Commit the batch if it is batch_seconds old. add() calls it; a live capture loop
        calls it when idle, so that rows do not wait for the next call to be committed."""
        if self._pending_rows and _now() - self._batch_started >= self.batch_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered rows in one transaction. On a database error they stay buffered
        and StoreError is raised."""
        if not self._pending_rows:
            return
        db = self._db
        added = {}
        try:
            with db.atomic():
                for table, rows in self._pending.items():
                    if rows:
                        # plain executemany: sqlite-utils' insert_all costs 5x more per row here
                        added[table] = db.conn.executemany(_INSERT[table], rows).rowcount
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from None
        for table, n in added.items():
            self._counts[table] += n
        self._counts["duplicates"] += self._pending_rows - sum(added.values())
        self._pending = {t: [] for t in TABLES}
        self._pending_rows = 0

    def counts(self) -> dict[str, int]:
        """Rows this store committed per table, and rows ignored as already present."""
        return dict(self._counts)

    @property
    def pending(self) -> int:
        """Rows buffered and not committed yet."""
        return self._pending_rows

    def close(self) -> None:
        """Commit what is buffered and close the database (a second close does nothing)."""
        if self._db is None:
            return
        try:
            self.flush()
        finally:
            self._db.close()
            self._db = None

    def __enter__(self) -> AccStore:
        return self

    def __exit__(self, *exc_info) -> None:
        # rows buffered before an exception are complete records: commit them too
        self.close()


# every column but id, in COLUMN_NAMES order: add() builds its tuples in this order
_INSERT = {t: f"INSERT OR IGNORE INTO [{t}] ({', '.join(COLUMN_NAMES[1:])}) "
              f"VALUES ({', '.join('?' * (len(COLUMN_NAMES) - 1))})" for t in TABLES}
