"""The busy timeout (store/schema.py BUSY_TIMEOUT): a report or a second writer that finds the
database locked waits for the lock instead of failing with "database is locked"."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from store.schema import BUSY_TIMEOUT, connect, open_connection
from store.worker import Writer

ROOT = Path(__file__).resolve().parent.parent
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or "sipprobe"
CALL = ROOT / "pcaps/lab-basic-call/capture.pcap"
OTHER = ROOT / "pcaps/lab-cancel-487/capture.pcap"
HOLD = 1.5  # seconds the other connection keeps its lock


def sipprobe(*args) -> subprocess.CompletedProcess:
    return subprocess.run([SIPPROBE, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "busy.db"
    assert sipprobe("replay", str(CALL), "--db", str(path)).returncode == 0
    return path


def hold_lock(path: Path, *statements: str) -> threading.Event:
    """Another connection takes a lock with `statements`, keeps it HOLD seconds, lets go.
    Returns an event set once the lock is held."""
    held = threading.Event()

    def run():
        con = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            for s in statements:
                con.execute(s).fetchall()
            held.set()
            time.sleep(HOLD)
            con.execute("COMMIT")
        finally:
            con.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert held.wait(5)
    hold_lock.thread = thread
    return held


def test_every_connection_has_the_busy_timeout(db):
    """The replay's start-up and the reports (open_connection, connect) and the writer process
    (Writer) all wait BUSY_TIMEOUT seconds."""
    assert BUSY_TIMEOUT == 10.0
    want = int(BUSY_TIMEOUT * 1000)
    con = open_connection(str(db), create=False)
    assert con.execute("PRAGMA busy_timeout").fetchone() == (want,)
    con.close()
    report_db = connect(str(db), create=False)
    assert report_db.conn.execute("PRAGMA busy_timeout").fetchone() == (want,)
    report_db.close()
    writer = Writer(str(db), str(db), False)
    assert writer.db.execute("PRAGMA busy_timeout").fetchone() == (want,)
    writer.close()


def test_a_report_waits_for_an_exclusive_lock_and_succeeds(db):
    """WAL readers never wait for a writer's transaction (BEGIN IMMEDIATE: the report runs at
    once); they do wait for a connection that holds the file exclusively (as SQLite does while
    it recovers a WAL or the last connection checkpoints it): the report waits, then prints
    the same rows as without the lock."""
    before = sipprobe("report", "acc", "--db", str(db), "-f", "csv")
    assert before.returncode == 0 and before.stdout.count("\n") == 3  # header, INVITE, BYE

    hold_lock(db, "BEGIN IMMEDIATE", "UPDATE sipprobe_meta SET value = value")
    start = time.monotonic()
    during = sipprobe("report", "acc", "--db", str(db), "-f", "csv")
    assert time.monotonic() - start < HOLD  # did not wait
    assert (during.returncode, during.stdout, during.stderr) == (0, before.stdout, "")
    hold_lock.thread.join()

    hold_lock(db, "PRAGMA locking_mode=EXCLUSIVE", "BEGIN EXCLUSIVE",
              "UPDATE sipprobe_meta SET value = value")
    start = time.monotonic()
    waited = sipprobe("report", "acc", "--db", str(db), "-f", "csv")
    assert time.monotonic() - start >= HOLD - 0.2  # waited for the lock
    assert (waited.returncode, waited.stdout, waited.stderr) == (0, before.stdout, "")
    hold_lock.thread.join()


def test_a_replay_waits_for_another_writer_and_succeeds(db):
    """A second writer (a replay into the file another replay or a sniff writes) waits for the
    other's transaction (BEGIN IMMEDIATE, held 1.5 s) and writes its rows."""
    hold_lock(db, "BEGIN IMMEDIATE", "UPDATE sipprobe_meta SET value = value")
    start = time.monotonic()
    out = sipprobe("replay", str(OTHER), "--db", str(db))
    assert time.monotonic() - start >= HOLD - 0.2
    assert out.returncode == 0, out.stderr
    assert "locked" not in out.stderr
    hold_lock.thread.join()
    con = sqlite3.connect(db)
    # the basic call's 2 acc rows, and the CANCELed call's 487 in missed_calls
    assert con.execute("SELECT count(*) FROM acc").fetchone()[0] == 2
    assert con.execute("SELECT sip_code FROM missed_calls").fetchall() == [("487",)]
    con.close()
