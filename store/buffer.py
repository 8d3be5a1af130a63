"""The store's per-row path: a record kept in the chunk being filled, and the batch counted.

AccStore (store/writer.py) subclasses RowBuffer for its add(), add_cdr() and add_media(),
which run once per row of a replay: compiled (probe/native.py COMPILED), their fields are C
struct members and their bodies C, where the interpreted methods cost 0.55 us a row. The rarer
work (checking a new record class, a chunk or a commit due) stays in AccStore's own methods,
called by name: _acc_row, _cdr_row, _media_key and _added.
"""
from __future__ import annotations

import time

import cython

from store.schema import TABLES  # of AccRecords: acc, missed_calls

now = time.monotonic  # the batch clock, wall time: a replay runs far faster than packet time


class RowBuffer:
    """The chunk being filled and the batch's count and age; AccStore's base."""

    _acc: list  # the chunk being filled: acc and missed_calls rows as plain tuples
    _cdrs: list
    _media: list  # (GENERIC key, record tuple) of rtcp_reports, call_quality, OpenSIPS' rows
    # record class -> its GENERIC key, of the classes add_media checked (empty: closed)
    _media_keys: dict
    # the NamedTuple class of exactly ACC_FIELDS / CDR_FIELDS once one was added; None: closed
    _acc_class: object
    _cdr_class: object
    _batch: cython.Py_ssize_t  # rows added since the last commit request
    _check_at: cython.Py_ssize_t  # the add calls _added() at this batch size (1: start the clock)
    _batch_started: cython.double
    batch_seconds: cython.double
    __slots__ = ("_acc", "_cdrs", "_media", "_media_keys", "_acc_class", "_cdr_class", "_batch",
                 "_check_at", "_batch_started", "batch_seconds")

    def add(self, rec) -> None:
        """Buffer one AccRecord; commits the batch when it is full or old enough."""
        # a record of the class already seen is kept as a plain tuple by a slice (tuple() walks
        # a tuple subclass through its iterator: 2.5x the instructions), while its fields are
        # still in the cache; anything else, or a closed store, goes through _acc_row
        if type(rec) is not self._acc_class or rec[0] not in TABLES:
            self._acc.append(self._acc_row(rec))
        else:
            self._acc.append(rec[:])
        self._count()

    def add_cdr(self, rec) -> None:
        """Buffer one CDR, committed with the acc rows of its batch. A new call is inserted; a
        call stored as "open" is completed in place when `rec` is not open; anything else (a
        rerun, or an open record of a call already finished) changes nothing."""
        if type(rec) is not self._cdr_class:
            self._cdrs.append(self._cdr_row(rec))
        else:
            self._cdrs.append(rec[:])  # a plain tuple, as add()'s
        self._count()

    def add_media(self, rec) -> None:
        """Buffer one voice quality record (rtcp_mos.records: RtcpReportRecord or
        CallQualityRecord), committed with the rows of its batch; a row already stored (the
        same identity) is left as it is. A call_quality row also fills its call's acc_cdrs
        quality summary. OpenSIPS' acc and missed_calls records (add_row) take this path too."""
        keys: dict = self._media_keys
        key = keys.get(type(rec))
        if key is None:  # a class not checked yet, or a closed store
            self._media.append((self._media_key(rec), tuple(rec)))
        else:
            self._media.append((key, rec[:]))
        self._count()

    def _count(self) -> None:
        """One row more in the batch: _added() at the size it asked for, or when it is old."""
        n = self._batch = self._batch + 1
        if n >= self._check_at or now() - self._batch_started >= self.batch_seconds:
            self._added(n)
