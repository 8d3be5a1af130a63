"""Real processes: `sipprobe sniff` stopped (SIGTERM), or killed (SIGKILL), and restarted while
SIPp calls are going on, in a network namespace of the test's own; the rows equal an offline replay of tcpdump's
capture of the same traffic, times included (to the 1.5 ms: two capture sockets stamp a packet
microseconds apart, and durations are rounded to the millisecond; docs/reliability.md)."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import pipeline
from test_carry import rows

SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or "sipprobe"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def netns():
    for tool in ("sipp", "tcpdump", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (tests/run.sh installs it)")
    name = f"sipprobe-rst-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def capture_and_callee(ns, pcap, tmp_path):
    """tcpdump writing the namespace's UDP to `pcap` (started once it listens) and a SIPp UAS
    on 127.0.0.1:5090: (tcpdump, sipp) processes, the caller's to stop."""
    dump_err = tmp_path / "tcpdump.err"
    with open(dump_err, "w") as err:
        dump = subprocess.Popen([*ns, "tcpdump", "-i", "lo", "-w", str(pcap), "-U", "udp"],
                                stderr=err)
    deadline = time.monotonic() + 10
    while b"listening on" not in dump_err.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    uas = subprocess.Popen([*ns, "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", "5090", "-nostdin"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return dump, uas


def _sniff(ns, db, tmp_path, n):
    err = open(tmp_path / f"sniff{n}.err", "w")
    proc = subprocess.Popen([*ns, SIPPROBE, "sniff", "-i", "lo", "--db", str(db), "-f", "json"],
                            stdout=subprocess.PIPE, stderr=err, text=True)
    time.sleep(1.2)  # the capture is open (its start-up: well under a second here)
    return proc


def _stop(proc) -> dict:
    import json

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return json.loads(out)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_sniff_restarted_during_calls_completes_them(netns, tmp_path, how):
    """SIGTERM: the first run writes the six calls as open CDRs, the second completes them in
    place. SIGKILL: the first run wrote no CDR, but it kept the calls' state every second
    (pipeline.KeptCalls), so the second takes them up and writes their CDRs whole."""
    ns = netns
    full, db = tmp_path / "full.pcap", tmp_path / "live.db"
    dump, uas = capture_and_callee(ns, full, tmp_path)
    first = _sniff(ns, db, tmp_path, 1)
    try:
        # 6 calls, 4 a second, each 4 s long: all six set up before the restart, none ended
        uac = subprocess.Popen([*ns, "sipp", "-sn", "uac", "127.0.0.1:5090", "-i", "127.0.0.1",
                                "-p", "5070", "-m", "6", "-r", "4", "-d", "4000",
                                "-timeout", "30", "-nostdin"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0 if how == "SIGTERM" else 2.6)  # SIGKILL: a keep after the last set-up
        if how == "SIGTERM":
            one = _stop(first)
        else:
            first.kill()
            first.wait(timeout=10)
        second = _sniff(ns, db, tmp_path, 2)
        assert uac.wait(timeout=30) == 0  # every call completed
        time.sleep(0.5)
        two = _stop(second)
    finally:
        time.sleep(0.3)  # tcpdump writes each packet (-U): its last ones are in the file
        for proc in (first, uas, dump):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    if how == "SIGTERM":
        assert one["calls"] == 6 and one["answered"] == 6 and one["cdrs_inserted"] == 6
        assert two["calls"] == 0 and two["cdrs_completed"] == 6
    else:
        assert two["calls"] == 0 and two["cdrs_inserted"] == 6 and two["cdrs_completed"] == 0
        assert len(two["unclean_runs"]) == 1
    assert two["counters"]["carry.calls_taken_up"] == 6
    offline = tmp_path / "offline.db"
    pipeline.replay_files([str(full)], str(offline))
    live, want = rows(db), rows(offline)
    for table in want:  # two capture sockets stamp a packet up to a few microseconds apart
        assert len(live[table]) == len(want[table]), table
        for got, row in zip(_by_text(live[table]), _by_text(want[table])):
            assert _texts(got) == _texts(row)
            assert all(abs(a - b) <= 0.0015 for (_, a), (_, b) in zip(got, row)
                       if isinstance(a, float)), (got, row)
    cdrs = sqlite3.connect(db).execute(
        "SELECT end_reason, ended_by, duration FROM acc_cdrs").fetchall()
    assert len(cdrs) == 6 and all(r[:2] == ("completed", "caller") and 4 <= r[2] < 5
                                  for r in cdrs)
    assert len(live["acc"]) == 12  # each call's INVITE and BYE


def _texts(row: tuple) -> tuple:
    """The row without its float columns (packet times, durations)."""
    return tuple(kv for kv in row if not isinstance(kv[1], float))


def _by_text(rows: list) -> list:
    return sorted(rows, key=lambda r: repr(_texts(r)))