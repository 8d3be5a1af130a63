"""`sipprobe sniff --metrics-port`: Prometheus metrics of a live run, scraped over HTTP and
parsed with prometheus_client's own parser, equal the run's summary and the rows it stored.

Three lab captures go live through a veth pair in a network namespace of the test's own
(tests/veth_replay.py: nothing else on the wire, so the kernel's counters are the replay's): an
answered call with RTCP and 5% loss, a call refused 486, and, once the first call's grace
period (rtcp_mos/binding.py MEDIA_GRACE) has passed, a second answered call whose RTCP makes
the media layer write the first call's quality rows. Then the endpoint is scraped, and the
probe stopped: every figure must equal the summary it prints; the MOS histogram must hold the
first call's call_quality rows, read back from the database.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from veth_replay import SIPPROBE, SEND, SNIFF, veth_namespace

ROOT = Path(__file__).resolve().parents[1]
PORT = 9464  # Prometheus' customary exporter port: free, the namespace is the test's own
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="netns and live capture need root")

SCRAPE = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
          f"'http://127.0.0.1:{PORT}/metrics', timeout=10).read().decode())")


def _replay(ns, scenario: str, multiplier: str) -> None:
    subprocess.run([*ns, "tcpreplay", "-q", "-i", SEND, "--multiplier", multiplier,
                    str(ROOT / "pcaps" / scenario / "capture.pcap")], check=True,
                   capture_output=True, timeout=120)


def _scrape(ns) -> dict:
    """{(name, labels as a sorted tuple): value} of every sample on /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = subprocess.run([*ns, sys.executable, "-c", SCRAPE], capture_output=True, text=True,
                          check=True, timeout=30).stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_equal_the_summary(tmp_path):
    if shutil.which("tcpreplay") is None:
        pytest.skip("tcpreplay not installed (tests/run.sh installs the Debian package)")
    pytest.importorskip("prometheus_client")
    db = tmp_path / "live.db"
    err_path = tmp_path / "sniff.err"
    with veth_namespace() as ns, open(err_path, "w") as err:
        proc = subprocess.Popen([*ns, SIPPROBE, "sniff", "-i", SNIFF, "--db", str(db), "-f",
                                 "json", "--metrics-port", str(PORT)], stdout=subprocess.PIPE,
                                stderr=err, text=True)
        try:
            deadline = time.monotonic() + 15
            while b"listening on" not in err_path.read_bytes():
                assert proc.poll() is None and time.monotonic() < deadline, \
                    err_path.read_text()
                time.sleep(0.05)
            time.sleep(0.3)
            _replay(ns, "lab-media-loss-5", "5")  # 25 s of capture in 5
            _replay(ns, "lab-busy-486", "1")
            time.sleep(11)  # past MEDIA_GRACE (10 s) after the first call's BYE
            _replay(ns, "lab-media-clean", "25")
            time.sleep(2.5)  # commits (every second) and a snapshot (every 0.5 s)
            scraped = _scrape(ns)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err_path.read_text()
    summary = json.loads(out)

    def value(name, **labels):
        return scraped[(name, tuple(sorted(labels.items())))]

    assert (summary["calls"], summary["answered"], summary["failed"]) == (3, 2, 1)
    assert value("sipprobe_calls_total") == summary["calls"]
    assert value("sipprobe_calls_answered_total") == summary["answered"]
    failed = {dict(k[1])["code"]: v for k, v in scraped.items()
              if k[0] == "sipprobe_calls_failed_total"}
    assert failed == {"486": 1.0}
    assert value("sipprobe_calls_open") == 0
    assert value("sipprobe_packets_total") == summary["frames_matched"] == 39 + 10 + 39
    assert value("sipprobe_sip_messages_total") == summary["sip_messages"]
    cap = summary["capture"]
    assert value("sipprobe_kernel_received_total") == cap["kernel_received"]
    assert value("sipprobe_kernel_dropped_total") == cap["kernel_dropped"] == 0
    assert value("sipprobe_interface_dropped_total") == cap["interface_dropped"]
    for table, key in (("acc", "acc_inserted"), ("missed_calls", "missed_inserted"),
                       ("acc_cdrs", "cdrs_inserted"), ("rtcp_reports", "rtcp_reports_inserted")):
        assert value("sipprobe_rows_written_total", table=table) == summary[key], table
    events = {dict(k[1])["reason"]: v for k, v in scraped.items()
              if k[0] == "sipprobe_input_events_total"}
    assert events == summary["counters"]

    # the histogram: the first call's sides, as call_quality stored them; the second call's
    # rows are written at the end of the run, after the scrape
    with sqlite3.connect(db) as conn:
        first = conn.execute("SELECT mos_avg FROM call_quality WHERE mos_avg IS NOT NULL "
                             "ORDER BY start_epoch LIMIT 2").fetchall()
        stored = conn.execute("SELECT count(*) FROM call_quality").fetchone()[0]
    mos = [m for (m,) in first]
    assert len(mos) == 2 and stored == summary["call_quality_inserted"] == 4
    assert value("sipprobe_rows_written_total", table="call_quality") == 2
    assert value("sipprobe_call_mos_count") == 2
    assert value("sipprobe_call_mos_sum") == pytest.approx(sum(mos))
    assert value("sipprobe_call_mos_bucket", le="+Inf") == 2
    assert value("sipprobe_call_mos_bucket", le="3.1") == sum(m <= 3.1 for m in mos)
    assert value("sipprobe_call_mos_bucket", le="4.5") == sum(m <= 4.5 for m in mos)


def test_a_port_in_use_is_one_line_before_capture(tmp_path):
    """The endpoint starts before capture and before the database: a busy port is exit 2."""
    import socket

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([SIPPROBE, "sniff", "-i", "lo", "--db", str(tmp_path / "x.db"),
                            "--duration", "1", "--metrics-port", str(port)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"sipprobe: cannot serve metrics on port {port}: Address already in use\n"
    assert not (tmp_path / "x.db").exists()
