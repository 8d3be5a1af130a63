"""store/: the writer process behind AccStore (store/worker.py), and the row's identity."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from store import StoreError, worker, writer
from store.writer import open_store, time_text
from tests.test_store import (BUSY, CDR, CDR_OPEN, CHILD_PRELUDE, INVITE, NO_CDRS, ROOT,
                              eventually, gone, select, utc_plus_2)  # noqa: F401  (a fixture)


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "sipprobe.db")


def numbered(i: int):
    return INVITE._replace(callid=f"{i}-writer@127.0.0.1", time=INVITE.time + i / 7)


# --- the row's identity and times --------------------------------------------------------

ODD_TEXT = ["", "plain", 'quo"te', "back\\slash", "tab\there", "new\nline", "del\x7f", "\x00",
            "é", "日本", "emoji \U0001f600", "</script>", "a/b", "\u2028"]


@pytest.mark.parametrize("field", ["callid", "method", "from_tag", "to_tag", "sip_code"])
def test_odd_text_in_the_identity_is_a_row_of_its_own_once(db, field):
    """Each text is its own row, kept byte for byte, and seen again it adds nothing."""
    records = [INVITE._replace(**{field: text}) for text in ODD_TEXT]
    cdrs = [CDR._replace(callid=text, from_tag=text[::-1]) for text in ODD_TEXT]
    for _ in range(2):
        with open_store(db) as store:
            for rec in records:
                store.add(rec)
            for rec in cdrs:
                store.add_cdr(rec)
    assert [r[field] for r in select(db, "acc")] == ODD_TEXT
    assert [(r["callid"], r["from_tag"]) for r in select(db, "acc_cdrs")] == [
        (rec.callid, rec.from_tag) for rec in cdrs]
    assert store.counts()["duplicates"] == len(ODD_TEXT)


def test_the_identity_is_what_is_stored(db):
    """A value of another type that SQLite stores as the same value is the same row (sip_code
    as an int, a cseq as a float); a record that breaks NOT NULL is left out."""
    with open_store(db) as store:
        store.add(INVITE)
        store.add(INVITE._replace(cseq=1.0))
        store.add(INVITE._replace(sip_code=200))
        store.add(INVITE._replace(to_tag=None))
        store.add(INVITE._replace(cseq=2))
    assert store.counts() == {"acc": 2, "missed_calls": 0, "duplicates": 3, **NO_CDRS}


def test_time_texts_remembered_per_second_are_time_text(utc_plus_2):  # noqa: F811
    for local in (False, True):
        texts = worker.TimeTexts(local)
        for epoch in (1795431445.0, 1795431445.999999, 1795431446.5, -0.5, 0.25):
            assert texts[int(epoch // 1)] == time_text(epoch, local)
    assert worker.TimeTexts(True)[1795431445] == "2026-11-23 12:57:25"


# --- the writer process -------------------------------------------------------------------

def test_rows_and_counts_over_many_commits(db):
    with open_store(db, batch_rows=7) as store:
        for i in range(200):
            store.add(numbered(i))
            if i % 3 == 0:
                store.add_cdr(CDR_OPEN._replace(callid=f"{i}-cdr"))
            if i % 5 == 0:
                store.add(numbered(i // 2))  # a duplicate
    assert store.counts() == {"acc": 200, "missed_calls": 0, "duplicates": 40, "acc_cdrs": 67,
                              "cdrs_completed": 0}
    assert [r["callid"] for r in select(db, "acc")][:3] == [f"{i}-writer@127.0.0.1"
                                                            for i in range(3)]
    with open_store(db, batch_rows=11) as store:  # the replay of the call ends
        for i in range(0, 200, 3):
            store.add_cdr(CDR._replace(callid=f"{i}-cdr"))
        for i in range(200):
            store.add(numbered(i))
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 200, "acc_cdrs": 0,
                              "cdrs_completed": 67}
    assert {r["end_reason"] for r in select(db, "acc_cdrs")} == {"completed"}


def test_a_file_of_an_earlier_version_keeps_its_time_index(db):
    open_store(db).close()
    con = sqlite3.connect(db)
    con.execute("CREATE INDEX acc_time_idx ON acc (time)")  # as sipprobe made them before
    con.close()
    with open_store(db) as store:
        store.add(INVITE)
    assert store.counts()["acc"] == 1
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM acc WHERE time = '2026-11-23 10:57:25'"
                       ).fetchone() == (1,)
    assert "acc_time_idx" in {r[1] for r in con.execute("PRAGMA index_list(acc)")}


FAIL_TRIGGER = ("CREATE TRIGGER fail BEFORE INSERT ON acc "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error (a test)'); END")


def test_a_database_error_in_the_writer_is_a_store_error_and_keeps_the_rows(db):
    store = open_store(db, batch_rows=5, batch_seconds=3600)
    for i in range(5):
        store.add(numbered(i))
    store.flush()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute(FAIL_TRIGGER)
    i, deadline = 5, time.monotonic() + 60
    with pytest.raises(StoreError) as info:  # the failure of a commit made without waiting
        while time.monotonic() < deadline:  # surfaces in a later add()
            store.add(numbered(i))
            i += 1
            time.sleep(0.005)
    assert str(info.value).startswith(f"cannot write {db} (disk I/O error (a test)): "
                                      "free some disk space")
    assert len(select(db, "acc")) == 5
    with pytest.raises(StoreError, match="disk I/O error"):
        store.flush()  # still failing: still kept
    con.execute("DROP TRIGGER fail")
    store.flush()  # sent again, committed once
    assert store.pending == 0
    n = len(select(db, "acc"))
    assert [r["callid"] for r in select(db, "acc")] == [numbered(i).callid for i in range(n)]
    store.close()
    assert store.counts() == {"acc": n, "missed_calls": 0, "duplicates": 0, **NO_CDRS}


def test_an_error_at_close_is_raised_and_the_writer_ends(db):
    store = open_store(db)
    store.add(INVITE)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute(FAIL_TRIGGER)
    writer_pid = store._proc.pid
    with pytest.raises(StoreError, match="disk I/O error"):
        store.close()
    assert gone(writer_pid)
    store.close()  # a second close does nothing
    with pytest.raises(ValueError, match="closed"):
        store.add(BUSY)


def test_a_killed_writer_process_is_a_store_error_and_the_next_flush_starts_another(db):
    store = open_store(db, batch_rows=10, batch_seconds=3600)
    for i in range(10):
        store.add(numbered(i))
    store.flush()
    first = store._proc.pid
    os.kill(first, signal.SIGKILL)
    added, deadline = 10, time.monotonic() + 60
    with pytest.raises(StoreError) as info:
        while time.monotonic() < deadline:  # the next commit finds the pipe broken
            added += 1
            store.add(numbered(added - 1))
    assert str(info.value).startswith(f"{db}: the writer process was killed by signal 9; the ")
    assert str(info.value).endswith("rows it had not committed are kept and written again at "
                                    "the next flush")
    store.flush()
    assert store._proc.pid != first
    store.close()
    assert [r["callid"] for r in select(db, "acc")] == [numbered(i).callid for i in range(added)]
    assert store.counts() == {"acc": added, "missed_calls": 0, "duplicates": 0, **NO_CDRS}


def test_an_interrupt_inside_a_message_loses_no_row(db, monkeypatch):
    store = open_store(db, batch_rows=4, batch_seconds=3600)
    real = writer.send_bytes

    def half_then_ctrl_c(fd, payload):
        monkeypatch.setattr(writer, "send_bytes", real)
        os.write(fd, worker._HEAD.pack(len(payload)) + payload[:len(payload) // 2])
        raise KeyboardInterrupt

    for i in range(4):
        store.add(numbered(i))
    store.flush()
    monkeypatch.setattr(writer, "send_bytes", half_then_ctrl_c)
    for i in range(4, 7):
        store.add(numbered(i))
    with pytest.raises(KeyboardInterrupt):
        store.add(numbered(7))  # the batch is full: its chunk is cut by Ctrl-C
    store.add(numbered(8))
    store.close()  # what the replay's `with` block does after Ctrl-C
    assert [r["callid"] for r in select(db, "acc")] == [numbered(i).callid for i in range(9)]
    assert store.counts() == {"acc": 9, "missed_calls": 0, "duplicates": 0, **NO_CDRS}


def test_the_writer_ignores_ctrl_c_and_sigterm_sent_to_the_process_group(db):
    with open_store(db) as store:
        store.add(INVITE)
        os.kill(store._proc.pid, signal.SIGINT)
        os.kill(store._proc.pid, signal.SIGTERM)
        store.flush()
        store.add(BUSY)
    assert store.counts()["acc"] + store.counts()["missed_calls"] == 2


def test_a_record_that_cannot_become_a_row_is_left_out_and_said(db):
    store = open_store(db)
    store.add(INVITE)
    store.add(BUSY._replace(time=None))
    with pytest.raises(ValueError, match=r"1 record\(s\) could not become rows of .* were left "
                                         r"out: TypeError"):
        store.flush()
    store.close()
    assert len(select(db, "acc")) == 1


SIGKILLED = CHILD_PRELUDE + """
store = open_store(sys.argv[1], batch_rows=300, batch_seconds=0.05)
i = 0
while True:  # until SIGKILL
    store.add(rec._replace(callid=f"kill-{i}", time=rec.time + i))
    i += 1
    if i % 500 == 0:
        store.flush()
        print(store._proc.pid, store.counts()["acc"], flush=True)
"""


def test_rows_committed_before_a_sigkill_survive_and_the_writer_ends_too(db):
    proc = subprocess.Popen([sys.executable, "-c", SIGKILLED, db], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for line in proc.stdout:
            writer_pid, flushed = map(int, line.split())
            if flushed >= 2000:
                break
        proc.send_signal(signal.SIGKILL)  # in the middle of adding rows
        assert proc.wait() == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    eventually(lambda: gone(writer_pid))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    callids = [r[0] for r in con.execute("SELECT callid FROM acc ORDER BY id")]
    con.close()
    assert len(callids) >= flushed  # what was committed, and what the writer had been handed
    assert callids == [f"kill-{i}" for i in range(len(callids))]


def test_a_writer_that_cannot_start_is_a_store_error_at_the_flush(db, monkeypatch):
    monkeypatch.setattr(writer, "_BOOT", "import sys; sys.exit(3)")
    store = open_store(db)
    store.add(INVITE)
    with pytest.raises(StoreError, match=r"the writer process exited with status 3; the 1 rows "
                                         r"it had not committed are kept"):
        store.flush()
    monkeypatch.undo()
    store.close()  # a new writer process
    assert store.counts()["acc"] == 1
    assert len(select(db, "acc")) == 1


def test_a_memory_database_takes_rows_and_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store(":memory:") as store:
        store.add(INVITE)
        store.add(BUSY)
        scratch = store._scratch
    assert store.counts()["acc"] + store.counts()["missed_calls"] == 2
    assert not os.path.exists(scratch)
    assert os.listdir(tmp_path) == []


def test_a_writer_whose_parent_died_commits_every_row_it_was_handed(db):
    """The parent exits before reading the answers: the writer, its answers refused (EPIPE),
    still commits everything still in the pipe."""
    open_store(db).close()
    child_rx, tx = os.pipe()
    rx, child_tx = os.pipe()
    os.close(rx)  # the parent is gone before the first answer
    proc = subprocess.Popen([sys.executable, "-S", "-c", writer._BOOT, writer._ROOT,
                             str(child_rx), str(child_tx), db, db, "utc", str(os.getpid()), "0"],
                            pass_fds=(child_rx, child_tx))
    os.close(child_rx)
    os.close(child_tx)
    for seq, rec in enumerate((INVITE, BUSY), 1):
        worker.send(tx, ("rows", seq, [tuple(rec)], []))
        worker.send(tx, ("commit", seq, seq))
    os.close(tx)
    assert proc.wait(timeout=60) == 0
    assert [r["callid"] for r in select(db, "acc") + select(db, "missed_calls")] == \
        [INVITE.callid, BUSY.callid]


SINGLE_THREADED = """
import sqlite3, sys
sys.path.insert(0, sys.argv[1])
from store import worker
with open("/proc/self/maps") as maps:
    shared = any("libsqlite3" in line for line in maps)
done = worker.single_threaded_sqlite()
con = sqlite3.connect(":memory:")
con.execute("CREATE TABLE t (x)")
con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
print(shared, done, con.execute("SELECT sum(x) FROM t").fetchone()[0])
"""


def test_the_writer_process_turns_sqlite_s_mutexes_off():
    """Where the sqlite3 module uses a shared libsqlite3 (Debian's python3), the writer
    configures that library single-threaded; SQLite works the same afterwards."""
    done = subprocess.run([sys.executable, "-S", "-c", SINGLE_THREADED, str(ROOT)],
                          capture_output=True, text=True)
    shared, configured, total = done.stdout.split()
    assert (configured, total) == (shared, "499500"), done.stderr


def test_add_media_checks_each_record_class_once_and_refuses_after_close(db):
    """add_media remembers the table of a record class it checked (the per-row path of an RTCP
    replay), still refuses what is not a voice quality record, and refuses every record once
    the store is closed."""
    from collections import namedtuple

    from rtcp_mos.records import CallQualityRecord
    from store.tables import CALL_QUALITY

    rec = CallQualityRecord(*[None] * len(CALL_QUALITY.field_names))._replace(
        callid="q@127.0.0.1", from_tag="t", side="A", start_epoch=INVITE.time, reports=1)
    lookalike = namedtuple("CallQualityRecord", CALL_QUALITY.field_names[:-1])(
        *rec[:-1])  # the class name of a record, one field short
    store = open_store(db)
    store.add_media(rec)
    store.add_media(rec._replace(side="B"))
    with pytest.raises(ValueError, match="not a record of"):
        store.add_media(lookalike)
    with pytest.raises(ValueError, match="not a record of"):
        store.add_media(("call_quality", *rec))
    store.close()
    assert store.media_counts()["call_quality"] == 2
    assert [r["side"] for r in select(db, "call_quality")] == ["A", "B"]
    with pytest.raises(ValueError, match="is closed"):
        store.add_media(rec)
