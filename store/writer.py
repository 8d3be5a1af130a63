"""Commits AccRecords to the acc and missed_calls tables, CdrRecords to acc_cdrs, and the voice
quality records (add_media) to rtcp_reports and call_quality, in batches.

A batch is one transaction: `batch_rows` rows or `batch_seconds` of wall time, whichever comes
first, and whatever is buffered at flush(), close() or the end of a `with` block. The database is
in WAL mode with synchronous=NORMAL: a killed process loses at most the rows it had not
committed (or handed to its writer process) yet, never a committed row (a power cut may also
undo the last commits, never corrupt). Rows are keyed on their content (a unique index, INSERT OR
IGNORE), so replaying a capture again adds nothing. A CDR is keyed on its call (Call-ID and
caller's tag): a row stored with end_reason "open" is completed in place (same id) by a later
record of the call's end, while a finished row is never changed, least of all back to "open" by
a replay of an earlier capture.

The SQLite work runs in a writer process (store/worker.py), so that it costs the probe's main
thread only the hand-over: add() keeps the record; every CHUNK_ROWS rows a chunk of their
fields as plain tuples is pickled down a pipe, and the writer inserts it into its open
transaction at once. A batch that is full or old enough is committed without waiting for the
answer; flush() and close() wait for it, so that counts() is exact after them and an error is
raised there at the latest. Until the writer answers that a commit covered them, the chunks stay
in this process: after a database error (StoreError) or the writer's death the next flush()
sends them again (a new writer process if need be), so that no row is lost to a failed commit.
"""
from __future__ import annotations

import io
import operator
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from store import StoreError, is_url, runs
from store import buffer
from store.buffer import RowBuffer
from store.rows import ACC_FIELDS, CDR_FIELDS
from store.tables import GENERIC
from store.rows import time_text as time_text  # noqa: PLC0414  (public here)
from store.schema import (OPEN_CALLS_TABLE, PAGE_SIZE, TABLES, database_error, ensure_schema,
                          open_connection)
from store.worker import IGNORED_SIGNALS, readable, recv, send, send_bytes

if TYPE_CHECKING:
    from sip_dissect.records import AccRecord, CdrRecord

CHUNK_ROWS = 1000  # rows per message to the writer process
_ACC = operator.attrgetter(*ACC_FIELDS)
_CDR = operator.attrgetter(*CDR_FIELDS)
_AS_TUPLE: dict[type, object] = {}  # record class -> what makes its fields a plain tuple
# the records of the generic path by class name: their layout's key, their fields (the voice
# quality records of rtcp_mos/records.py; OpenSIPS' acc and missed_calls records)
GENERIC_RECORDS = {t.record: (key, t.field_names) for key, t in GENERIC.items()}


def _as_tuple(cls: type, fields: tuple[str, ...], getter) -> object:
    """tuple() for a NamedTuple of exactly these fields (2x faster), else the attrgetter."""
    fn = tuple if issubclass(cls, tuple) and getattr(cls, "_fields", None) == fields else getter
    _AS_TUPLE[cls] = fn
    return fn


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from store.worker import main; main(sys.argv[2:])")


def open_store(path: str, *, local_time: bool = False, batch_rows: int = 50_000,
               batch_seconds: float = 1.0, probe: str | None = None,
               flavour: str = "kamailio", kind: str = "") -> AccStore:
    """Open (creating the file and tables if absent) the database at `path` for writing.

    The run is recorded in sipprobe_runs (`kind`: store.runs.REPLAY, SNIFF or ''); earlier
    runs of this host that ended without a clean stop are in the store's `unclean_runs`
    (store/runs.py), each with the line that says what it lost.

    A postgresql:// URL opens a PostgreSQL database instead (store/postgres.py), its rows
    marked with `probe` (default: the host name).

    `local_time` writes the `time` column in this machine's time zone instead of UTC; the choice
    is recorded in the file, and reopening it with the other one is a StoreError.
    `flavour`: whose tables the file holds (store/tables.py: FLAVOURS); recorded in the file
    too, and reopening it with the other one is a StoreError.
    """
    if is_url(path):
        if flavour != "kamailio":
            raise StoreError(f"--flavour {flavour} writes SQLite files only for now: give a "
                             "file name with --db, not a postgresql:// URL")
        from store.postgres import open_pg_store
        return open_pg_store(path, local_time=local_time, probe=probe, batch_rows=batch_rows,
                             batch_seconds=batch_seconds, kind=kind)
    if batch_rows < 1 or batch_seconds < 0:
        raise ValueError("batch_rows must be at least 1 and batch_seconds not negative")
    import sqlite3

    scratch = None
    if path == ":memory:":  # a throw-away database: a file of ours the writer process can open,
        scratch = tempfile.mkdtemp(prefix="sipprobe-memory-")  # removed at close
    db = open_connection(os.path.join(scratch, "memory.db") if scratch else path, create=True)
    try:
        db.isolation_level = None  # transactions are ensure_schema's own
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL; a file with tables: no-op
            db.execute("PRAGMA journal_mode=wal")
        db.execute("PRAGMA synchronous=NORMAL")
        ensure_schema(db, path, local_time=local_time, flavour=flavour)
        db.execute("BEGIN IMMEDIATE")
        try:
            run_id, unclean = runs.start(db, kind, batch_seconds)
        except BaseException:
            db.rollback()
            raise
        db.commit()
    except BaseException as exc:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(exc, sqlite3.Error):
            raise database_error(path, exc) from None
        raise
    finally:
        db.close()
    store = AccStore(path, local_time=local_time, batch_rows=batch_rows,
                     batch_seconds=batch_seconds)
    store._scratch = scratch
    store.run_id, store.unclean_runs = run_id, unclean
    try:
        store._spawn()
    except BaseException:
        store._remove_scratch()
        raise
    return store


def _pickle(message) -> bytes:
    """pickle.dumps without the memo: 40% faster on these flat tuples of str, float, int."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True  # no memo: nothing in a chunk refers to itself
    pickler.dump(message)
    return out.getvalue()


class AccStore(RowBuffer):
    """Buffered writer of AccRecords and CdrRecords; use open_store() to get one. add(),
    add_cdr() and add_media() are RowBuffer's (store/buffer.py, compiled)."""

    def __init__(self, path: str, *, local_time: bool, batch_rows: int, batch_seconds: float):
        self.path = path
        self.local_time = local_time
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self._chunk_rows = min(CHUNK_ROWS, batch_rows)
        self._acc, self._cdrs, self._media = [], [], []  # RowBuffer's fields
        self._media_keys = {}
        self._carry: tuple | None = None  # keep_carried()'s (taken, groups), for the next chunk
        # chunks sent and not known committed yet: (seq, rows, message), in seq order
        self._unacked: list[tuple[int, int, bytes]] = []
        self._seq = 0  # of the last chunk
        self._commit_id = 0  # of the last commit request
        self._resend_from = 1  # failures of commit requests before this one are known
        self._batch, self._batch_started, self._check_at = 0, 0.0, 1
        self._acc_class = self._cdr_class = None
        self._broken: str | None = None  # why _unacked must be sent again before going on
        self._rejected: list[str] = []  # records the writer could not turn into rows
        self._counts = {"acc": 0, "missed_calls": 0, "duplicates": 0, "acc_cdrs": 0,
                        "cdrs_completed": 0}
        self._media_counts = dict.fromkeys(GENERIC, 0)  # rtcp_reports, call_quality, opensips_*
        self._proc: subprocess.Popen | None = None
        self._tx = self._rx = -1
        self._closed = False
        self._pid = os.getpid()
        self._scratch: str | None = None  # the directory of a :memory: store's file
        self.run_id = 0  # this run's row in sipprobe_runs (store/runs.py)
        self.unclean_runs: list[dict] = []  # earlier runs found without a clean stop

    # --- the caller's side -----------------------------------------------------------------

    add_row = RowBuffer.add_media  # an OpenSIPS-flavour acc or missed_calls record (GENERIC)

    def _media_key(self, rec) -> str:
        """The GENERIC key of a record's table, checked; its class remembered (not closed)."""
        if self._closed:
            raise ValueError(f"store {self.path} is closed")
        table = GENERIC_RECORDS.get(rec.__class__.__name__)
        fields = getattr(rec.__class__, "_fields", None)
        if table is None or len(rec) != len(table[1]):
            raise ValueError(f"not a record of {', '.join(GENERIC)}: {rec!r:.200}")
        if fields == table[1]:  # a NamedTuple of exactly the layout's fields
            self._media_keys[rec.__class__] = table[0]
        return table[0]

    # --- the state carried to the next run (sip_dissect/carry.py describes the interface) ---

    def carried(self) -> list[tuple[str, float, str]]:
        """(callid, last packet time, state) of every group the last runs left in the
        open_calls table."""
        import sqlite3

        db = open_connection(self._file(), create=False)
        try:
            return db.execute(f"SELECT callid, time_epoch, state FROM [{OPEN_CALLS_TABLE}]"
                              ).fetchall()
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from None
        finally:
            db.close()

    def keep_carried(self, taken, groups) -> None:
        """Replace the groups of the Call-IDs in `taken` by `groups` [(callid, packet time,
        state)], in the transaction of the rows buffered with it (committed at the next
        commit, with them: a run killed before keeps the state it started from)."""
        if self._closed:
            raise ValueError(f"store {self.path} is closed")
        self._carry = (sorted(taken), list(groups))
        self._send_chunk()

    def _acc_row(self, rec: AccRecord) -> tuple:
        if self._closed:
            raise ValueError(f"store {self.path} is closed")
        convert = _AS_TUPLE.get(rec.__class__) or _as_tuple(rec.__class__, ACC_FIELDS, _ACC)
        row = convert(rec)
        if row[0] not in TABLES:
            raise ValueError(f"AccRecord.table must be one of {TABLES}, not {rec.table!r} "
                             "(a CdrRecord goes to add_cdr)")
        if convert is tuple:
            self._acc_class = rec.__class__
        return row

    def _cdr_row(self, rec: CdrRecord) -> tuple:
        if self._closed:
            raise ValueError(f"store {self.path} is closed")
        convert = _AS_TUPLE.get(rec.__class__) or _as_tuple(rec.__class__, CDR_FIELDS, _CDR)
        if convert is tuple:
            self._cdr_class = rec.__class__
        return convert(rec)

    def _added(self, n: int) -> None:
        """add()'s rarer work: the batch's start time, a commit, a full chunk; and the row
        count at which add() has to call here next (1 when the batch is empty)."""
        if n == 1:
            self._batch_started = buffer.now()
        if n >= self.batch_rows or buffer.now() - self._batch_started >= self.batch_seconds:
            self._commit()
            return
        buffered = len(self._acc) + len(self._cdrs) + len(self._media)
        if buffered >= self._chunk_rows:
            self._send_chunk()
            self._poll()
            buffered = 0
        self._check_at = min(self.batch_rows, n + self._chunk_rows - buffered)

    def flush_if_due(self) -> None:
        """Commit the batch if it is batch_seconds old. add() calls it; a live capture loop
        calls it when idle, so that rows do not wait for the next call to be committed."""
        if self._batch and buffer.now() - self._batch_started >= self.batch_seconds:
            self._commit()

    def flush(self) -> None:
        """Commit the buffered rows and wait for the commit. On a database error the rows stay
        buffered (the next flush sends them again) and StoreError is raised."""
        if self._closed or not (self._acc or self._cdrs or self._media or self._carry
                                or self._unacked):
            return
        if self._broken is not None:
            self._recover()
        self._send_chunk()
        commit = self._request_commit()
        while True:
            answer = self._recv()
            self._answer(answer)
            if answer[1] == commit:
                break
        self._raise_rejected()

    def counts(self) -> dict[str, int]:
        """Rows this store inserted per table (acc, missed_calls, acc_cdrs), acc and missed_calls
        rows ignored as already present (duplicates), and open CDRs it completed in place
        (cdrs_completed): exact after flush() and close(), before that as far as the writer
        process has answered."""
        if not self._closed and self._broken is None:
            self._poll(raise_errors=False)
        return dict(self._counts)

    def media_counts(self) -> dict[str, int]:
        """Rows this store inserted in rtcp_reports and call_quality (as counts())."""
        if not self._closed and self._broken is None:
            self._poll(raise_errors=False)
        return dict(self._media_counts)

    @property
    def pending(self) -> int:
        """Rows not known to be committed yet: buffered, or handed to the writer process."""
        if not self._closed and self._broken is None:
            self._poll(raise_errors=False)
        return len(self._acc) + len(self._cdrs) + len(self._media) \
            + sum(n for _, n, _ in self._unacked)

    def close(self) -> None:
        """Commit what is buffered, wait for the writer process to close the database and end
        (a second close does nothing)."""
        if self._closed:
            return
        if os.getpid() != self._pid:  # a forked copy: the writer belongs to the parent
            self._set_closed()
            return
        try:
            self.flush()
        finally:
            self._set_closed()
            try:
                self._stop()
            finally:
                self._remove_scratch()

    def _set_closed(self) -> None:
        self._closed = True
        self._acc_class = self._cdr_class = None  # add() and add_cdr() take the checking path
        self._media_keys = {}  # and add_media()

    def __enter__(self) -> AccStore:
        return self

    def __exit__(self, *exc_info) -> None:
        # rows buffered before an exception are complete records: commit them too
        self.close()

    # --- the writer process ----------------------------------------------------------------

    def _commit(self) -> None:
        """Commit the batch without waiting; after an error, as flush() (sent again, waited)."""
        if self._broken is not None:
            self.flush()
            return
        self._send_chunk()
        self._request_commit()
        self._poll()

    def _request_commit(self) -> int:
        self._commit_id += 1
        self._batch = 0
        self._check_at = 1
        self._send(pickle.dumps(("commit", self._commit_id, self._seq)))
        return self._commit_id

    def _send_chunk(self) -> None:
        if not (self._acc or self._cdrs or self._media or self._carry):
            return
        # plain tuples (add(), add_cdr()): the writer need not import the records' classes
        message = _pickle(("rows", self._seq + 1, self._acc, self._cdrs, self._media,
                           self._carry))
        self._seq += 1
        self._unacked.append((self._seq, len(self._acc) + len(self._cdrs) + len(self._media)
                              + (self._carry is not None), message))
        self._acc = []
        self._cdrs = []
        self._media = []
        self._carry = None
        if self._broken is None:
            self._send(message)

    def _send(self, message: bytes) -> None:
        try:
            send_bytes(self._tx, message)
        except OSError:
            self._lost()
        except BaseException:  # Ctrl-C inside a message: the pipe is out of step
            self._abandon()
            raise

    def _recv(self) -> tuple:
        try:
            answer = recv(self._rx)
        except BaseException:
            self._abandon()
            raise
        if answer is None:
            self._lost()
        return answer

    def _poll(self, raise_errors: bool = True) -> None:
        """Take the answers that have arrived, without waiting. A failure is raised here, or
        (counts(), pending) kept for the next flush, which sends the rows again."""
        try:
            while readable(self._rx, 0):
                self._answer(self._recv())
        except StoreError:
            if raise_errors:
                raise
        if raise_errors:
            self._raise_rejected()

    def _raise_rejected(self) -> None:
        if self._rejected:
            rejected, self._rejected = self._rejected, []
            raise ValueError(f"{len(rejected)} record(s) could not become rows of {self.path} "
                             f"and were left out: {rejected[0]}")

    def _answer(self, answer: tuple) -> None:
        if answer[0] == "ok":
            _, _, seq, counts, rejected = answer
            done = 0
            while done < len(self._unacked) and self._unacked[done][0] <= seq:
                done += 1
            del self._unacked[:done]
            for name, n in counts.items():
                (self._counts if name in self._counts else self._media_counts)[name] += n
            self._rejected += rejected
        elif answer[0] == "error":
            if answer[1] is not None and answer[1] < self._resend_from:
                return  # the failure of a request sent before the last reset: known
            self._broken = answer[2]
            raise StoreError(answer[2])

    def _lost(self) -> None:
        """The writer process is gone: say how; its rows stay here for a new one."""
        self._broken = "dead"
        code = self._proc.wait()
        self._take_last_answers()
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise StoreError(f"{self.path}: the writer process {how}; the {self.pending} rows it "
                         "had not committed are kept and written again at the next flush")

    def _abandon(self) -> None:
        """Interrupted halfway through a message: end this writer (its open transaction is
        lost, not committed) and let the next flush start another."""
        self._broken = "dead"
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
            self._take_last_answers()

    def _take_last_answers(self) -> None:
        """The commits a dead writer made: their whole answers are still in the pipe."""
        try:
            while readable(self._rx, 0) and (answer := recv(self._rx)) is not None:
                if answer[0] == "ok":
                    self._answer(answer)
        except Exception:  # a cut answer: its rows are sent again, counted as duplicates
            pass

    def _recover(self) -> None:
        """After an error: reset the writer (or start a new one) and send again every chunk
        it had not committed."""
        if self._broken == "dead" or self._proc.poll() is not None:
            self._stop()
            self._spawn()
        else:
            self._send(pickle.dumps(("reset",)))
        self._resend_from = self._commit_id + 1
        self._broken = None
        for _, _, message in self._unacked:
            self._send(message)

    def _spawn(self) -> None:
        child_rx, tx = os.pipe()
        rx, child_tx = os.pipe()
        try:
            import fcntl
            fcntl.fcntl(tx, fcntl.F_SETPIPE_SZ, 1 << 20)  # the writer may lag a few chunks
        except (ImportError, AttributeError, OSError):
            pass
        # the writer starts with these blocked, then ignores them (worker.main): a Ctrl-C
        # even during its start-up is the parent's to handle
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, IGNORED_SIGNALS)
        try:
            self._proc = subprocess.Popen(
                self._command(child_rx, child_tx), env=self._environment(),
                pass_fds=(child_rx, child_tx), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)
        except OSError as exc:
            os.close(tx)
            os.close(rx)
            raise StoreError(f"{self.path}: cannot start the writer process "
                             f"({sys.executable}): {exc}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(child_rx)
            os.close(child_tx)
        self._tx, self._rx = tx, rx

    def _command(self, child_rx: int, child_tx: int) -> list[str]:
        """The writer process's command line (store/postgres.py: another writer)."""
        return [sys.executable, "-S", "-c", _BOOT, _ROOT, str(child_rx), str(child_tx),
                self._file(), self.path, "local" if self.local_time else "utc",
                str(os.getpid()), str(self.run_id)]  # -S: no site-packages, the stdlib is enough

    def _environment(self) -> dict | None:
        return None  # the parent's

    def _file(self) -> str:
        if self._scratch:
            return os.path.join(self._scratch, "memory.db")
        return os.path.abspath(self.path)

    def _remove_scratch(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _stop(self) -> None:
        """Ask the writer to close the database (its final checkpoint) and wait for its end."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and self._broken != "dead":
                send(self._tx, ("close",))
                while (answer := recv(self._rx)) is not None and answer[0] != "closed":
                    pass
        except BaseException:
            proc.kill()
            raise
        finally:
            os.close(self._tx)
            os.close(self._rx)
            proc.wait()
