"""The media lab for real: lab/run_media_lab.py runs baresip calls through Kamailio 5.6 and
rtpengine 10.5 with iptables loss, one network namespace per scenario, all in parallel, and the
fresh outputs get the same checks as the kept captures. Needs root and the Debian packages
kamailio, kamailio-sqlite-modules, rtpengine-daemon, baresip-core, tcpdump, tshark, iptables
(tests/run.sh installs them). Bounded: the runner gives each scenario 60 s, the test 120 s."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from media_lab import REPO, check_mos_order, check_scenario

RUNNER = REPO / "lab" / "run_media_lab.py"
TOOLS = ("kamailio", "rtpengine", "baresip", "tcpdump", "tshark", "iptables", "unshare")
NAMES = ("clean", "loss-5", "loss-20")


@pytest.fixture(scope="module")
def fresh_media_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the media lab needs root (network namespaces and iptables inside them)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"media lab tools missing: {missing} (bash tests/run.sh installs them)")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare --net failed)")
    out = tmp_path_factory.mktemp("media-lab")
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, str(RUNNER), "--out", str(out)], capture_output=True,
                         text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {n: out / f"lab-media-{n}" for n in NAMES}, elapsed


def test_all_scenarios_ran_within_budget(fresh_media_lab):
    dirs, elapsed = fresh_media_lab
    assert all((d / "capture.pcap").exists() for d in dirs.values())
    assert elapsed < 90, f"media lab took {elapsed:.0f} s"


@pytest.mark.parametrize("name", NAMES)
def test_fresh_scenario(fresh_media_lab, name):
    """SIP dialog, SR/RR both ways on both legs, MOS for both sides (also in rtpengine's log),
    loss in the callee's reports within what iptables dropped."""
    check_scenario(fresh_media_lab[0][name])


def test_fresh_mos_falls_with_loss(fresh_media_lab):
    check_mos_order(fresh_media_lab[0])
