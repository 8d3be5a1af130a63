"""The lab for real: Kamailio 5.6 and SIPp run every scenario in a private network namespace,
and the fresh captures are replayed through sipprobe and compared with the fresh rows
Kamailio wrote. Needs root and the Debian packages kamailio, kamailio-sqlite-modules,
sip-tester and tcpdump (tests/run.sh installs them)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab_oracle import assert_same_rows, replay
from pipeline import ProbeOptions, stats_files
from test_public_captures import tshark_sip_stat

LAB = Path(__file__).resolve().parents[1] / "lab" / "run_lab.py"
TOOLS = ("kamailio", "sipp", "tcpdump", "unshare")


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root for its network namespace")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"lab tools missing: {missing} (bash tests/run.sh installs them)")
    out = tmp_path_factory.mktemp("lab")
    run = subprocess.run([sys.executable, str(LAB), "--out", str(out)], capture_output=True,
                         text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return sorted(p for p in out.glob("lab-*") if (p / "capture.pcap").exists())


def test_every_scenario_ran(fresh_lab):
    assert len(fresh_lab) >= 12


def test_fresh_rows_equal_kamailio(fresh_lab):
    for scenario in fresh_lab:
        records, _ = replay(scenario)
        assert_same_rows(scenario, records)


def test_fresh_captures_counted_as_tshark_counts(fresh_lab):
    for scenario in fresh_lab:
        path = str(scenario / "capture.pcap")
        result = stats_files([path], ProbeOptions(strict=True))
        assert (result["sip"]["requests"], result["sip"]["responses"]) == tshark_sip_stat(path)


def test_fresh_cdrs_equal_kamailio(fresh_lab):
    """Dialog CDRs against the acc_cdrs rows this very Kamailio run wrote."""
    from test_cdr_lab import assert_same_cdrs, probe_cdrs

    for scenario in fresh_lab:
        assert_same_cdrs(scenario, probe_cdrs(scenario, kamailio_exact=True))
