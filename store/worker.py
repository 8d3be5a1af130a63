"""The writer process behind store.writer.AccStore: it turns records into rows and commits them.

The probe's process parses SIP; SQLite's work (a few microseconds of CPU per index per row) and
the time texts run here, on another core. The parent sends chunks of records as pickled tuples
over a pipe, numbered in order, and commit requests; this process inserts each chunk into the
open transaction as it arrives and commits on request, answering every request with what the
commit inserted, or with the error that rolled the transaction back. After an error it ignores
rows until the parent says "reset" and sends again everything it had not seen committed.

The process ignores SIGINT, SIGTERM and SIGHUP (Ctrl-C, service stops and hang-ups reach the
whole process group; the parent decides when to stop), and ends when the parent closes the store, when the pipe
reaches end of file, or when the parent is gone: then it commits what it received and exits,
so that a killed probe loses only the rows it had not handed over yet.

Wire format (store.writer builds it): a 4-byte big-endian length, then a pickle of
  ("rows", seq, acc, cdrs, media, carry)  tuples in record field order (store/tables.py: ACC,
      CDR); media: (table, tuple) pairs of rtcp_reports and call_quality; carry: None, or
      (Call-IDs taken up, [(callid, time_epoch, state)]) for the open_calls table
  ("commit", commit_id, seq)  commit every chunk up to seq
  ("reset",)  leave the failed state: the parent sends the rolled back chunks again
  ("close",)  commit, stamp the run's clean end (store/runs.py), close the database (its
      checkpoint), answer ("closed",), exit
Answers: ("ok", commit_id, seq, counts, rejected) or ("error", commit_id, message).
"""
from __future__ import annotations

# _signal, _json and _pickle: the C halves of signal, json and pickle, whose Python modules
# pulled in re and enum, a third of this process's start-up
import _signal
import gc
import os
import select
import sqlite3
import struct
import sys
import time
from itertools import chain
from operator import itemgetter

from store.rows import ACC_ROWS, CDR_ROWS, MEDIA_ROWS, TimeTexts, acc_rows, cdr_rows
from store.schema import (BUSY_TIMEOUT, CDR_TABLE, OPEN_CALLS_TABLE, TABLES, database_error,
                          sql_literal)
from store.runs import STAMP_COMMIT, STAMP_END
from store.tables import CALL_QUALITY, CDR, GENERIC, MEDIA_TABLES, OPEN, QUALITY_SUMMARY

try:
    from _pickle import dumps as _dumps
    from _pickle import loads as _loads
except ImportError:  # an interpreter without the C accelerators
    from pickle import dumps as _dumps
    from pickle import loads as _loads

# the database file is shared with readers: these only change this connection
PRAGMAS = (
    "PRAGMA synchronous=NORMAL",  # WAL: commits do not fsync, checkpoints do
    # Debian's SQLite zeroes the space of every cell it moves (SECURE_DELETE), and page splits
    # of the random-key indexes move many; rows are never deleted here
    "PRAGMA secure_delete=OFF",
    "PRAGMA cache_size=-32768",  # 32 MiB: the identity index (random order) stays in memory
)
WAL_CHECKPOINT_BYTES = 16 << 20  # fewer checkpoints (each fsyncs twice) than SQLite's 1000 pages

# Ctrl-C, service stops and hang-ups reach the whole process group (or cgroup): the parent
# decides when its writer stops
IGNORED_SIGNALS = {_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP}
PICKLE_PROTOCOL = 5  # pickle.HIGHEST_PROTOCOL of Python 3.8 to 3.13
_HEAD = struct.Struct("!I")


# --- framing ------------------------------------------------------------------------------

def send(fd: int, message) -> None:
    payload = _dumps(message, protocol=PICKLE_PROTOCOL)
    send_bytes(fd, payload)


def send_bytes(fd: int, payload: bytes) -> None:
    view = memoryview(_HEAD.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def recv(fd: int):
    """The next message, or None at end of file."""
    head = _read(fd, _HEAD.size)
    if head is None:
        return None
    payload = _read(fd, _HEAD.unpack(head)[0])
    if payload is None:
        return None
    return _loads(payload)


def _read(fd: int, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            return None
        got += k
    return buf


def readable(fd: int, timeout: float | None) -> bool:
    """Whether a message (or end of file) waits on `fd`; poll(), not select(): any fd number."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else int(timeout * 1000)))


# --- the writer ---------------------------------------------------------------------------

# Rows per statement: one statement's start and end (cursors opened and closed, the Python
# call) for many rows; 55.6 k instructions per row at 1 row a statement, 52.2 k at 32, no
# fewer at 100.
GROUP_ROWS = 32
_CDR_SET = tuple(c.name for c in CDR.columns if c.source is not None)  # all but id
_PARAMS = {CDR_TABLE: CDR_ROWS.params, **{t: ACC_ROWS.params for t in TABLES},
           **{t: b.params for t, b in MEDIA_ROWS.items()}}


def insert_sql(table: str, rows: int) -> str:
    """INSERT of `rows` rows of `table` (a table name, or a GENERIC key): a row already there
    (the same identity) is ignored, and so is a row breaking another constraint (a NULL), as
    before."""
    params = _PARAMS[table]
    name = GENERIC[table].name if table in GENERIC else table
    return (f"INSERT OR IGNORE INTO [{name}] ({', '.join(params)}) VALUES "
            + ", ".join(["(" + ", ".join("?" * len(params)) + ")"] * rows))


# per table: the statement of one row, and of GROUP_ROWS rows
INSERT = {t: (insert_sql(t, 1), insert_sql(t, GROUP_ROWS))
          for t in TABLES + (CDR_TABLE,) + tuple(GENERIC)}
# A call stored "open" is completed in place by a finished record; anything else changes
# nothing. One CDR a statement: an upsert of many rows may abort halfway, and SQLite keeps a
# statement journal for it, in a temporary file (three times the bytes written).
COMPLETE_CDR = (insert_sql(CDR_TABLE, 1)
                + f" ON CONFLICT({', '.join(CDR.identity)}) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _CDR_SET)
                + f" WHERE [{CDR_TABLE}].end_reason = {sql_literal(OPEN)}"
                f" AND excluded.end_reason != {sql_literal(OPEN)}")
_TABLE = itemgetter(0)  # an AccRecord's route field (tables.ACC.route): field 0
DROP_CARRIED = f"DELETE FROM [{OPEN_CALLS_TABLE}] WHERE callid = ?"
# a group is replaced only by a later one: a rerun of an earlier capture never sets back the
# state of a call that a later capture carried on
KEEP_CARRIED = (f"INSERT INTO [{OPEN_CALLS_TABLE}] (callid, time_epoch, state) VALUES (?, ?, ?)"
                " ON CONFLICT(callid) DO UPDATE SET time_epoch = excluded.time_epoch,"
                f" state = excluded.state WHERE excluded.time_epoch >= [{OPEN_CALLS_TABLE}].time_epoch")


def _summary_sql() -> str:
    """acc_cdrs' quality summary (tables.QUALITY_SUMMARY) of one call, from its call_quality
    rows: the worst side's lowest MOS and that side, each side's average, rtpengine's lowest."""
    q = (f"FROM [{CALL_QUALITY.name}] q WHERE q.callid = [{CDR_TABLE}].callid "
         f"AND q.from_tag = [{CDR_TABLE}].from_tag")
    values = {"mos_min": f"(SELECT min(q.mos_min) {q})",
              "mos_side": f"(SELECT q.side {q} AND q.mos_min IS NOT NULL "
                          "ORDER BY q.mos_min, q.side LIMIT 1)",
              "mos_avg_a": f"(SELECT q.mos_avg {q} AND q.side = 'A')",
              "mos_avg_b": f"(SELECT q.mos_avg {q} AND q.side = 'B')",
              "mos_rtpengine_min": f"(SELECT min(q.mos_rtpengine_min) {q})"}
    assert set(values) == {c.name for c in QUALITY_SUMMARY}
    return (f"UPDATE [{CDR_TABLE}] SET "
            + ", ".join(f"{name} = {sql}" for name, sql in values.items())
            + " WHERE callid = ? AND from_tag = ?")


# completes a CDR in place whenever its call's quality rows arrive (after the CDR, by design)
CDR_QUALITY = _summary_sql()
_CALL_KEY = itemgetter(0, 1)  # a CallQualityRecord's callid, from_tag


def by_table(acc: list) -> dict[str, list]:
    """Records of acc and missed_calls apart, each in its order; KeyError: another table."""
    tables = set(map(_TABLE, acc))
    if tables - set(TABLES):
        raise KeyError(f"not an acc table: {tables - set(TABLES)}")
    if len(tables) == 1:
        return {tables.pop(): acc}
    return {t: [rec for rec in acc if rec[0] == t] for t in TABLES if t in tables}


class Writer:
    def __init__(self, path: str, shown: str, local_time: bool, run_id: int = 0):
        self.shown = shown  # the path as the user gave it, for messages
        self.run_id = run_id  # the run's row in sipprobe_runs (store/runs.py); 0: none
        self.times = TimeTexts(local_time)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                  timeout=BUSY_TIMEOUT)
        for pragma in PRAGMAS:
            self.db.execute(pragma)
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page}")
        self.in_txn = False
        self.failed: str | None = None
        # an OpenSIPS-flavour file has no acc_cdrs to hold a call's quality summary
        self.has_cdrs = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                        "name = ?", [CDR_TABLE]).fetchone() is not None
        self._reset_counts()

    def _reset_counts(self):
        self.received = 0  # acc and missed_calls rows in the transaction
        self.inserted = dict.fromkeys(TABLES + MEDIA_TABLES, 0)  # and GENERIC keys as they come
        self.cdr_changes = 0  # inserted + completed
        self.cdr_max_id = None  # max(id) of acc_cdrs when the transaction began
        self.rejected: list[str] = []

    def begin(self):
        if not self.in_txn:
            # IMMEDIATE: the write lock from the start, so that max(id) read in the transaction
            # stays the table's (and no snapshot goes stale before the first write)
            self.db.execute("BEGIN IMMEDIATE")
            self.in_txn = True

    def rows(self, acc, cdrs, media=(), carry=None) -> None:
        if self.failed:
            return
        try:
            self.begin()
            if acc:
                self._insert_acc(acc)
            if cdrs:
                if self.cdr_max_id is None:
                    self.cdr_max_id = self._max_cdr_id()
                rows = self._cdr_rows(cdrs)
                changed = self._insert(CDR_TABLE, rows)
                if changed < len(rows):  # calls already stored: complete those still open,
                    # record after record (an open and a finished record of one call may both
                    # be in the chunk, in either order)
                    changed += self.db.executemany(COMPLETE_CDR, rows).rowcount
                self.cdr_changes += changed
            if media:
                self._insert_media(media)
            if carry is not None:  # the signalling state this run leaves (sip_dissect/carry.py)
                taken, groups = carry
                self.db.executemany(DROP_CARRIED, [(c,) for c in taken])
                self.db.executemany(KEEP_CARRIED, groups)
        except sqlite3.Error as exc:
            self._fail(exc)

    def _insert_media(self, media) -> None:
        """rtcp_reports and call_quality rows; then the quality summary of the calls whose
        call_quality rows came, in their acc_cdrs row."""
        by_table: dict[str, list] = {}
        for table, rec in media:
            by_table.setdefault(table, []).append(rec)
        for table, recs in by_table.items():
            build = MEDIA_ROWS[table].build
            try:
                rows = build(recs, self.times)
            except Exception:  # a record that cannot become a row: keep the others
                rows = self._one_by_one(recs, lambda r, t=table: (
                    t, MEDIA_ROWS[t].build([tuple(r)], self.times)[0]), {table: []})[table]
            if rows:
                self.inserted[table] = self.inserted.get(table, 0) + self._insert(table, rows)
        calls = sorted(set(map(_CALL_KEY, by_table.get(CALL_QUALITY.name, ()))))
        if calls and self.has_cdrs:
            self.db.executemany(CDR_QUALITY, calls)

    def _insert_acc(self, acc) -> None:
        try:
            rows = {t: acc_rows(recs, self.times) for t, recs in by_table(acc).items()}
        except Exception:  # a record that cannot become a row: keep the others
            rows = self._one_by_one(acc, self._acc_row, {t: [] for t in TABLES})
        self.received += sum(len(r) for r in rows.values())
        for table, batch in rows.items():
            if batch:
                self.inserted[table] += self._insert(table, batch)

    def _insert(self, table: str, rows: list[tuple]) -> int:
        """Rows changed by inserting `rows` (parameter tuples) into `table`."""
        one, group = INSERT[table]
        whole = len(rows) - len(rows) % GROUP_ROWS
        changed = 0
        if whole:
            flat = list(chain.from_iterable(rows[:whole]))
            step = GROUP_ROWS * len(rows[0])
            changed = self.db.executemany(
                group, [flat[i:i + step] for i in range(0, len(flat), step)]).rowcount
        if whole < len(rows):
            changed += self.db.executemany(one, rows[whole:]).rowcount
        return changed

    def _acc_row(self, rec):
        rec = tuple(rec)
        return rec[0], acc_rows([rec], self.times)[0]

    def _cdr_rows(self, cdrs) -> list[tuple]:
        try:
            return cdr_rows(cdrs, self.times)
        except Exception:
            return self._one_by_one(cdrs, self._cdr_row, {CDR_TABLE: []})[CDR_TABLE]

    def _cdr_row(self, rec):
        return CDR_TABLE, cdr_rows([tuple(rec)], self.times)[0]

    def _one_by_one(self, records, build, rows: dict) -> dict:
        for rec in records:
            try:
                table, row = build(rec)
                rows[table].append(row)
            except Exception as exc:
                self.rejected.append(f"{exc.__class__.__name__}: {exc} ({rec!r:.200})")
        return rows

    def _max_cdr_id(self) -> int:
        return self.db.execute(f"SELECT max(id) FROM [{CDR_TABLE}]").fetchone()[0] or 0

    def commit(self):
        """Counts of the committed transaction, or an error message."""
        if self.failed:
            return None
        counts = {}
        try:
            if self.in_txn:
                # every new acc_cdrs row took max(id) + 1 (INTEGER PRIMARY KEY, no deletes
                # while this transaction holds the write lock): the rest of the changes were
                # completions
                added = (self._max_cdr_id() - self.cdr_max_id) if self.cdr_max_id is not None \
                    else 0
                if self.run_id:  # in the commit's own transaction: true if and only if it is
                    self.db.execute(STAMP_COMMIT, (time.time(), self.run_id))
                self.db.execute("COMMIT")
                self.in_txn = False
                counts = {**self.inserted, CDR_TABLE: added,
                          "cdrs_completed": self.cdr_changes - added,
                          "duplicates": self.received - sum(self.inserted[t] for t in TABLES)}
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        rejected = self.rejected
        self._reset_counts()
        return counts, rejected

    def _fail(self, exc: sqlite3.Error) -> None:
        self.failed = str(database_error(self.shown, exc))
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.in_txn = False
        self._reset_counts()

    def end(self) -> None:
        """The probe closed the store: its run ended cleanly (store/runs.py)."""
        if self.run_id:
            try:
                self.db.execute(STAMP_END, (time.time(), self.run_id))
            except sqlite3.Error:  # a full disk, a read-only file: its error was reported
                pass

    def close(self):
        self.db.close()


def serve(rx: int, tx: int, path: str, shown: str, local_time: bool, parent: int,
          run_id: int = 0) -> None:
    try:
        writer, opening = Writer(path, shown, local_time, run_id), None
    except sqlite3.Error as exc:
        writer, opening = None, str(database_error(shown, exc))
    serve_requests(rx, tx, writer, opening, parent)


def serve_requests(rx: int, tx: int, writer, opening: str | None, parent: int) -> None:
    """The requests of the pipe (the module's wire format) to `writer` (a Writer here, a
    PgWriter for PostgreSQL: rows, commit, end, close and `failed`) until the parent closes the
    store or is gone; `writer` None: the database could not be opened (`opening` says why)."""
    answers = _Answers(tx)
    while True:
        if not readable(rx, 1.0):
            if os.getppid() != parent:  # the parent is gone, a forked copy holds the pipe
                break
            continue
        message = recv(rx)
        if message is None:  # the parent closed the pipe or died: keep what it handed over
            break
        kind = message[0]
        if writer is None:  # the database could not be opened: every request fails
            if kind == "commit":
                answers.send(("error", message[1], opening))
            elif kind == "close":
                answers.send(("closed",))
                return
            continue
        if kind == "rows":
            writer.rows(message[2], message[3], *message[4:6])
        elif kind == "commit":
            done = writer.commit()
            if done is None:
                answers.send(("error", message[1], writer.failed))
            else:
                answers.send(("ok", message[1], message[2], *done))
            gc.collect()
        elif kind == "reset":
            writer.failed = None
        elif kind == "close":
            writer.commit()
            writer.end()  # only here: a parent gone without closing is an unclean end
            writer.close()  # the last connection checkpoints the WAL into the file
            answers.send(("closed",))
            return
    if writer is not None:
        writer.commit()
        writer.close()


class _Answers:
    """The answer pipe. A parent that died after handing over rows and commit requests has
    closed it: those rows are still committed (the rest of the pipe is read), nobody told."""

    def __init__(self, tx: int):
        self.tx = tx
        self.open = True

    def send(self, message) -> None:
        if self.open:
            try:
                send(self.tx, message)
            except BrokenPipeError:
                self.open = False


def single_threaded_sqlite() -> bool:
    """Turn off SQLite's mutexes in this process (one thread, one connection): its malloc and
    connection locks took a tenth of the writer's CPU. Done through the very libsqlite3 the
    sqlite3 module uses, before any connection; False (nothing changed) when it is linked in
    statically or cannot be found."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if "libsqlite3" in line}
        if len(paths) != 1:
            return False
        import ctypes

        lib = ctypes.CDLL(paths.pop())  # already loaded: the same copy, not a second one
        if lib.sqlite3_libversion_number() != sqlite3.sqlite_version_info[0] * 1_000_000 \
                + sqlite3.sqlite_version_info[1] * 1000 + sqlite3.sqlite_version_info[2]:
            return False
        if lib.sqlite3_shutdown() != 0:  # sqlite3_config works only on an uninitialised library
            return False
        ok = lib.sqlite3_config(_SQLITE_CONFIG_SINGLETHREAD) == 0
        ok = lib.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0 and ok
        return lib.sqlite3_initialize() == 0 and ok
    except (OSError, AttributeError, ImportError, IndexError, ValueError):
        return False


_SQLITE_CONFIG_SINGLETHREAD = 1  # sqlite3.h
_SQLITE_CONFIG_MEMSTATUS = 9


def run(tx: int, shown: str, serve_now) -> None:
    """A writer process's life around `serve_now()`: the signals the parent decides on
    ignored, the collector run once per commit, a failure answered down the pipe."""
    for signum in IGNORED_SIGNALS:  # blocked by the parent until now
        _signal.signal(signum, _signal.SIG_IGN)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, IGNORED_SIGNALS)
    # The rows make no reference cycles, but their tuples triggered a collection every 700:
    # collect once per commit instead, past the start-up's objects (frozen)
    gc.disable()
    gc.freeze()
    try:
        serve_now()
    except BrokenPipeError:  # the parent is gone: nobody to answer
        pass
    except BaseException:
        import traceback
        message = f"the writer process of {shown} failed: {traceback.format_exc()}"
        try:
            send(tx, ("error", None, message))
        except OSError:
            print(message, file=sys.stderr)
        sys.exit(1)


def main(argv: list[str]) -> None:
    rx, tx, path, shown, clock, parent, run_id = argv

    def serve_now():
        single_threaded_sqlite()  # before the first connection
        serve(int(rx), int(tx), path, shown, clock == "local", int(parent), int(run_id))
    run(int(tx), shown, serve_now)
