"""Real processes: `sipprobe sniff` killed with SIGKILL while SIPp calls go on (a network
namespace of the test's own) loses at most the rows of the last commit interval (one second):
what the database holds is rows of an offline replay of tcpdump's capture of the same traffic,
and every one of that replay's rows older than a second before the kill is there
(docs/reliability.md, "Crashes"). The next run says so: the killed run's start, pid and last
commit, which is after the newest row it committed and within the commit interval of the kill
(store/runs.py)."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline
from store import runs
from test_restarts_live import capture_and_callee, netns  # noqa: F401  (netns: the fixture)

SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or "sipprobe"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
COMMIT_INTERVAL = 1.0  # the live loop's batch_seconds
SLACK = 0.5  # scheduling on a shared 2-core machine: packet read, hand-over, commit


def acc_rows(db: Path) -> dict[tuple, float]:
    """acc and missed_calls rows: (table, callid, method, sip_code, from_tag, to_tag) -> the
    packet time of the reply."""
    con = sqlite3.connect(db)
    try:
        return {(t, *r[:5]): r[5] for t in ("acc", "missed_calls") for r in con.execute(
            f"SELECT callid, method, sip_code, from_tag, to_tag, time_epoch FROM {t}")}
    finally:
        con.close()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_sigkill_of_a_live_sniff_loses_at_most_the_last_commit_interval(
        netns, tmp_path):  # noqa: F811
    ns = netns
    full, db = tmp_path / "full.pcap", tmp_path / "live.db"
    dump, uas = capture_and_callee(ns, full, tmp_path)
    with open(tmp_path / "sniff.err", "w") as err:
        sniff = subprocess.Popen([*ns, SIPPROBE, "sniff", "-i", "lo", "--db", str(db)],
                                 stdout=subprocess.DEVNULL, stderr=err)
    time.sleep(1.2)  # the capture is open
    uac = None
    try:
        # 20 calls a second of 300 ms each, for up to 10 s: an acc row every 25 ms
        uac = subprocess.Popen([*ns, "sipp", "-sn", "uac", "127.0.0.1:5090", "-i", "127.0.0.1",
                                "-p", "5070", "-m", "200", "-r", "20", "-d", "300",
                                "-timeout", "30", "-nostdin"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(4.3)
        writers = children(sniff.pid)
        assert len(writers) == 1  # the writer process (store/worker.py)
        killed_at = time.time()
        sniff.send_signal(signal.SIGKILL)
        assert sniff.wait(timeout=10) == -signal.SIGKILL
        # the writer commits what the dead parent had handed over, then exits
        deadline = time.monotonic() + 15
        while Path(f"/proc/{writers[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # traffic after the kill: in the capture, not in the database
    finally:
        for proc in (uac, uas, sniff):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        time.sleep(0.3)  # tcpdump writes each packet (-U): its last ones are in the file
        dump.terminate()
        dump.wait(timeout=10)
    offline = tmp_path / "offline.db"
    pipeline.replay_files([str(full)], str(offline))
    live, want = acc_rows(db), acc_rows(offline)
    before_kill = {k: t for k, t in want.items() if t <= killed_at}
    assert len(before_kill) > 100  # 4 s of calls
    # nothing the replay does not have, nothing after the kill, times to the 1.5 ms
    assert set(live) <= set(before_kill)
    assert all(abs(live[k] - want[k]) <= 0.0015 for k in live)
    missing = sorted(t for k, t in before_kill.items() if k not in live)
    lost = killed_at - missing[0] if missing else 0.0
    print(f"rows before the kill {len(before_kill)}, in the database {len(live)}, lost "
          f"{len(missing)}, the oldest lost {lost:.3f} s before the kill")
    assert len(live) > 0
    assert lost <= COMMIT_INTERVAL + SLACK, (lost, len(missing))
    # the next run (a short sniff) says what the killed one lost, on stderr and in its summary
    con = sqlite3.connect(db)
    (started, last_commit, ended), = con.execute(
        "SELECT started, last_commit, ended FROM sipprobe_runs WHERE pid = ?", (sniff.pid,))
    con.close()
    assert ended is None
    assert max(live.values()) <= last_commit <= killed_at + COMMIT_INTERVAL + SLACK
    assert killed_at - last_commit <= COMMIT_INTERVAL + SLACK  # what the notice promises
    after = subprocess.run([*ns, SIPPROBE, "sniff", "-i", "lo", "--db", str(db), "--duration",
                            "1", "-f", "json"], capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    want_line = "sipprobe: " + runs.notice("sniff", sniff.pid, started, last_commit, 1.0)
    assert want_line in after.stderr.splitlines()
    import json
    (noticed,) = json.loads(after.stdout)["unclean_runs"]
    assert (noticed["pid"], noticed["last_commit"]) == (sniff.pid, last_commit)
    print(f"last commit {killed_at - last_commit:.3f} s before the kill; {want_line}")
