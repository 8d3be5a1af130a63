"""Crash safety with real processes: `sipprobe replay` killed with SIGKILL halfway through a
large capture, then run again, leaves exactly the rows of one clean run; a `report` runs while
the replay writes into the same file (WAL) (docs/reliability.md, "Crashes")."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_carry import rows

ROOT = Path(__file__).resolve().parents[1]
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or "sipprobe"


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory) -> Path:
    """bench/gen_captures.py's signalling-only capture (350,000 SIP messages, 50,000 calls;
    a replay takes about 6 s here)."""
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, str(ROOT / "bench/gen_captures.py"), "--only", "sig",
                    "--out", str(out)], check=True, capture_output=True)
    return out / "sig-only.pcap"


def test_sigkill_halfway_then_a_rerun_leaves_the_rows_of_one_clean_run(big_capture, tmp_path):
    clean, killed = tmp_path / "clean.db", tmp_path / "killed.db"
    assert subprocess.run([SIPPROBE, "replay", str(big_capture), "--db", str(clean)],
                          capture_output=True).returncode == 0
    proc = subprocess.Popen([SIPPROBE, "replay", str(big_capture), "--db", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _committed_acc_rows(killed) and proc.poll() is None:  # the first commit
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = rows(killed)
    want = rows(clean)
    # what the killed run committed is a part of the clean run's rows, never another row
    for table in want:
        assert set(partial[table]) <= set(want[table]), table
    assert 0 < len(partial["acc"]) < len(want["acc"])
    rerun = subprocess.run([SIPPROBE, "replay", str(big_capture), "--db", str(killed)],
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rows(killed) == want
    # the rerun said what the killed run lost (store/runs.py), once
    (notice,) = [x for x in rerun.stderr.splitlines() if "without a clean stop" in x]
    assert notice.startswith("sipprobe: the replay started ") and f"(pid {proc.pid})" in notice
    assert "nothing after its last commit at " in notice
    again = subprocess.run([SIPPROBE, "replay", str(ROOT / "pcaps/lab-basic-call/capture.pcap"),
                            "--db", str(killed)], capture_output=True, text=True)
    assert again.returncode == 0 and "clean stop" not in again.stderr + again.stdout


def _committed_acc_rows(db: Path) -> int:
    """acc rows another connection sees committed (0 while the file or table is missing)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM acc").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_report_runs_while_a_replay_writes(big_capture, tmp_path):
    db = tmp_path / "busy.db"
    first = subprocess.run([SIPPROBE, "replay", str(ROOT / "pcaps/lab-basic-call/capture.pcap"),
                            "--db", str(db)], capture_output=True)
    assert first.returncode == 0
    proc = subprocess.Popen([SIPPROBE, "replay", str(big_capture), "--db", str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reports = 0
    try:
        while proc.poll() is None:
            out = subprocess.run([SIPPROBE, "report", "acc", "--db", str(db), "-f", "csv"],
                                 capture_output=True, text=True)
            assert out.returncode == 0 and "locked" not in out.stderr, out.stderr
            reports += 1
    finally:
        proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert reports >= 1
