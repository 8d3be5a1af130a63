"""sipprobe_runs (store/runs.py): every run that writes a store is recorded; its last commit is
stamped in the commit's own transaction and its clean end at close; the next run reports,
once, an earlier run of this host whose process died without closing the store. Real
processes: a child opens a store, commits rows, and SIGKILLs itself."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline
from store import runs
from store.writer import open_store
from test_store import select

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "pcaps" / "lab-basic-call" / "capture.pcap"
# a replay into DB, its store flushed (a commit) and then the process killed before close()
KILLED_AFTER_A_COMMIT = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
import pipeline
from store.writer import open_store
store = open_store(sys.argv[1], kind="sniff")
pipeline.account_files([{str(CAPTURE)!r}], store.add)
store.flush()
print(store.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_rows(db: Path) -> list[dict]:
    return select(db, runs.RUNS_TABLE)


def newest_acc_time(db: Path) -> float:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT max(time_epoch) FROM acc").fetchone()[0]
    finally:
        con.close()


def killed_run(db: Path) -> tuple[int, int]:
    """(pid, run id) of a child that committed rows into `db` and was SIGKILLed."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_AFTER_A_COMMIT, str(db)],
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid, int(out)


def test_a_clean_replay_records_its_start_last_commit_and_end(tmp_path):
    db = tmp_path / "s.db"
    before = time.time()
    summary = pipeline.replay_files([str(CAPTURE)], str(db))
    (run,) = run_rows(db)
    assert "unclean_runs" not in summary
    assert (run["kind"], run["host"], run["pid"], run["commit_interval"]) == \
        ("replay", runs.host_name(), os.getpid(), 1.0)
    assert run["pid_start"] == runs.process_start(os.getpid()) > 0
    assert before <= run["started"] <= run["last_commit"] <= run["ended"] <= time.time()
    assert run["noticed_by"] is None


def test_the_run_after_a_killed_one_says_what_it_lost_once(tmp_path):
    db = tmp_path / "s.db"
    pid, run_id = killed_run(db)
    (dead,) = run_rows(db)
    assert (dead["id"], dead["pid"], dead["ended"]) == (run_id, pid, None)
    # the stamp rode in the commit of the rows: it is there, and later than their packets
    assert dead["last_commit"] >= dead["started"] and newest_acc_time(db) is not None
    told = []
    summary = pipeline.replay_files([str(CAPTURE)], str(db), notice=told.append)
    (line,) = told
    assert line == runs.notice("sniff", pid, dead["started"], dead["last_commit"], 1.0)
    assert line.startswith(f"the sniff started {runs.utc(dead['started'])} (pid {pid}) ended "
                           "without a clean stop; nothing after its last commit at "
                           f"{runs.utc(dead['last_commit'])} was recorded (at most the commit "
                           "interval, 1 s, of traffic)")
    assert summary["unclean_runs"] == [{"kind": "sniff", "pid": pid, "started": dead["started"],
                                        "last_commit": dead["last_commit"],
                                        "commit_interval": 1.0, "message": line}]
    first, second = run_rows(db)
    assert first["noticed_by"] == second["id"] and second["ended"] is not None
    told.clear()
    assert "unclean_runs" not in pipeline.replay_files([str(CAPTURE)], str(db),
                                                       notice=told.append)
    assert told == []  # said once


def test_a_run_still_going_is_not_reported(tmp_path):
    db = tmp_path / "s.db"
    with open_store(str(db), kind="sniff") as going:  # this process: alive
        with open_store(str(db), kind="replay") as second:
            assert second.unclean_runs == []
        assert going.unclean_runs == []
    assert [r["noticed_by"] for r in run_rows(db)] == [None, None]


def test_a_reused_pid_is_another_process(tmp_path):
    """A run whose pid now belongs to another process (other start time) is over."""
    db = tmp_path / "s.db"
    open_store(str(db)).close()
    con = sqlite3.connect(db)
    with con:
        con.execute(f"INSERT INTO {runs.RUNS_TABLE} (kind, host, pid, pid_start, "
                    "commit_interval, started) VALUES ('sniff', ?, ?, ?, 1.0, 1796500000.0)",
                    (runs.host_name(), os.getpid(), runs.process_start(os.getpid()) - 1))
        con.execute(f"INSERT INTO {runs.RUNS_TABLE} (kind, host, pid, pid_start, "
                    "commit_interval, started) VALUES ('sniff', 'elsewhere', 1, 1, 1.0, 0)")
    con.close()
    with open_store(str(db)) as store:
        # the other host's run is not judged: its process cannot be looked up
        assert [r["started"] for r in store.unclean_runs] == [1796500000.0]
        assert "committed nothing" in store.unclean_runs[0]["message"]


def test_the_cli_says_it_on_stderr_and_in_the_json_summary(tmp_path):
    db = tmp_path / "s.db"
    pid, _ = killed_run(db)
    sipprobe = Path(sys.executable).with_name("sipprobe")
    out = subprocess.run([str(sipprobe), "replay", str(CAPTURE), "--db", str(db), "-f", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (line,) = [x for x in out.stderr.splitlines() if "without a clean stop" in x]
    assert line.startswith(f"sipprobe: the sniff started ") and f"(pid {pid})" in line
    import json
    assert json.loads(out.stdout)["unclean_runs"][0]["message"] == line[len("sipprobe: "):]


@pytest.mark.parametrize("text, field", [(b"1 (a b) S 0" + b" 0" * 17 + b" 777 9", 777),
                                         (b"1 (x)) y) R 0" + b" 0" * 17 + b" 12 9", 12)])
def test_process_start_reads_field_22_past_any_command_name(tmp_path, monkeypatch, text, field):
    stat = tmp_path / "stat"
    stat.write_bytes(text)
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(
        stat if p == "/proc/4242/stat" else p, *a, **k))
    assert runs.process_start(4242) == field


def test_report_runs_lists_each_run_and_how_it_ended(tmp_path):
    db = tmp_path / "s.db"
    pid, _ = killed_run(db)
    pipeline.replay_files([str(CAPTURE)], str(db))
    sipprobe = Path(sys.executable).with_name("sipprobe")
    import json
    out = subprocess.run([str(sipprobe), "report", "runs", "--db", str(db), "-f", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    killed, replay = json.loads(out.stdout)
    assert (killed["kind"], killed["pid"], killed["ended"]) == ("sniff", pid, None)
    assert killed["end"] == f"unclean (reported by run {replay['id']})"
    assert (replay["kind"], replay["pid"], replay["end"]) == ("replay", os.getpid(), "clean")
    assert replay["started"] <= replay["last_commit"] <= replay["ended"]
    table = subprocess.run([str(sipprobe), "report", "runs", "--db", str(db)],
                           capture_output=True, text=True).stdout
    assert f"unclean (reported by run {replay['id']})" in table and str(pid) in table


def test_while_closing_runs_once_in_a_thread_of_its_own(tmp_path):
    """replay_files' while_closing (the CLI imports its summary printer there) runs in a
    thread of its own while the store closes, once."""
    import threading

    calls, done = [], threading.Event()

    def record():
        calls.append(threading.current_thread())
        done.set()

    summary = pipeline.replay_files([str(CAPTURE)], str(tmp_path / "s.db"),
                                    while_closing=record)
    assert done.wait(10)
    assert summary["acc_rows"] == 2 and len(calls) == 1
    assert calls[0] is not threading.main_thread()
