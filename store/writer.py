"""Commits AccRecords to the acc and missed_calls tables, and CdrRecords to acc_cdrs, in batches.

A batch is one transaction: `batch_rows` rows or `batch_seconds` of wall time, whichever comes
first, and whatever is buffered at flush(), close() or the end of a `with` block. The database is
in WAL mode with synchronous=NORMAL: a killed process loses at most the batch it had not
committed yet, never a committed row (a power cut may also undo the last commits, never corrupt).
Rows are keyed on their content (row_key, INSERT OR IGNORE), so replaying a capture again adds
nothing. A CDR is keyed on its call (Call-ID and caller's tag): a row stored with end_reason
"open" is completed in place (same id) by a later record of the call's end, while a finished row
is never changed, least of all back to "open" by a replay of an earlier capture.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from typing import TYPE_CHECKING

from store.schema import (CDR_COLUMN_NAMES, CDR_TABLE, COLUMN_NAMES, TABLES, connect,
                          database_error, ensure_schema)

if TYPE_CHECKING:
    from sip_dissect.cdr import CdrRecord
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


def cdr_key(rec: CdrRecord) -> str:
    """What makes a CDR the same row: the call (its Call-ID and the caller's tag), so that a
    later record of the call's end finds the row its open record wrote."""
    return hashlib.sha1(json.dumps([rec.callid, rec.from_tag]).encode()).hexdigest()


class AccStore:
    """Buffered writer of AccRecords and CdrRecords; use open_store() to get one."""

    def __init__(self, db, path: str, *, local_time: bool, batch_rows: int,
                 batch_seconds: float):
        self.path = path
        self.local_time = local_time
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self._db = db
        self._pending: dict[str, list[tuple]] = {t: [] for t in TABLES + (CDR_TABLE,)}
        self._pending_rows = 0
        self._batch_started = 0.0
        self._counts = {"acc": 0, "missed_calls": 0, "duplicates": 0, "acc_cdrs": 0,
                        "cdrs_completed": 0}

    def add(self, rec: AccRecord) -> None:
        """Buffer one row; commits the batch when it is full or old enough."""
        if self._db is None:
            raise ValueError(f"store {self.path} is closed")
        if rec.table not in TABLES:
            raise ValueError(f"AccRecord.table must be one of {TABLES}, not {rec.table!r} "
                             "(a CdrRecord goes to add_cdr)")
        row = (rec.method, rec.from_tag, rec.to_tag, rec.callid, rec.sip_code, rec.sip_reason,
               time_text(rec.time, self.local_time), rec.src_user, rec.src_domain, rec.src_ip,
               rec.dst_ouser, rec.dst_user, rec.dst_domain, rec.time, rec.cseq, row_key(rec))
        self._buffer(rec.table, row)

    def add_cdr(self, rec: CdrRecord) -> None:
        """Buffer one CDR, committed with the acc rows of its batch. A new call is inserted; a
        call stored as "open" is completed in place when `rec` is not open; anything else (a
        rerun, or an open record of a call already finished) changes nothing."""
        if self._db is None:
            raise ValueError(f"store {self.path} is closed")
        row = (time_text(rec.start_time, self.local_time),
               time_text(rec.end_time, self.local_time), round(rec.duration, 3), rec.callid,
               rec.from_tag, rec.to_tag, rec.src_user, rec.src_domain, rec.src_ip, rec.dst_ouser,
               rec.dst_user, rec.dst_domain, rec.sip_code, rec.sip_reason, rec.start_time,
               rec.end_time, rec.created, rec.ring_time, rec.answer_time, rec.setuptime, rec.pdd,
               rec.ended_by, rec.end_reason, cdr_key(rec))
        self._buffer(CDR_TABLE, row)

    def _buffer(self, table: str, row: tuple) -> None:
        if not self._pending_rows:
            self._batch_started = _now()
        self._pending[table].append(row)
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
        completed = 0
        cdrs = self._pending[CDR_TABLE]
        try:
            with db.atomic():
                for table in TABLES:
                    if self._pending[table]:
                        # plain executemany: sqlite-utils' insert_all costs 5x more per row here
                        added[table] = db.conn.executemany(_INSERT[table],
                                                           self._pending[table]).rowcount
                if cdrs:
                    added[CDR_TABLE] = db.conn.executemany(_INSERT_CDR, cdrs).rowcount
                    # then the finished records complete open rows, including one inserted
                    # from an open record earlier in this batch; a finished row matches nothing
                    completed = db.conn.executemany(
                        _COMPLETE_CDR, [row for row in cdrs if row[_END_REASON] != "open"]
                    ).rowcount
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from None
        for table, n in added.items():
            self._counts[table] += n
        self._counts["cdrs_completed"] += completed
        self._counts["duplicates"] += (self._pending_rows - len(cdrs)
                                       - sum(n for t, n in added.items() if t != CDR_TABLE))
        self._pending = {t: [] for t in TABLES + (CDR_TABLE,)}
        self._pending_rows = 0

    def counts(self) -> dict[str, int]:
        """Rows this store inserted per table (acc, missed_calls, acc_cdrs), acc and missed_calls
        rows ignored as already present (duplicates), and open CDRs it completed in place
        (cdrs_completed)."""
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

_CDR_SET = CDR_COLUMN_NAMES[1:-1]  # every column but id and row_key
_INSERT_CDR = (f"INSERT OR IGNORE INTO [{CDR_TABLE}] ({', '.join(CDR_COLUMN_NAMES[1:])}) "
               f"VALUES ({', '.join('?' * (len(CDR_COLUMN_NAMES) - 1))})")
# parameters: _CDR_SET's values, then row_key; only an open row, only by a finished record
_COMPLETE_CDR = (f"UPDATE [{CDR_TABLE}] SET {', '.join(f'{c} = ?' for c in _CDR_SET)} "
                 "WHERE row_key = ? AND end_reason = 'open'")
_END_REASON = CDR_COLUMN_NAMES.index("end_reason") - 1  # its place in an add_cdr() tuple

