"""The media lab's kept captures (pcaps/lab-media-*, made by lab/run_media_lab.py): each holds the
SIP dialog and RTCP both ways on both legs, and its rtpengine.json (rtpengine's MOS per side,
the oracle for sipprobe's MOS) agrees with the README, rtpengine's log and the capture."""
from __future__ import annotations

import re

import pytest

from media_lab import (LAB_PCAPS, SIDES, check_loss, check_mos_order, check_mos_per_side,
                       check_rtcp_both_legs, check_sip_dialog, oracle, side)

NAMES = ("clean", "loss-5", "loss-20")
DIRS = {n: LAB_PCAPS / f"lab-media-{n}" for n in NAMES}


def test_the_three_scenarios_are_kept_small():
    assert sorted(p.name for p in LAB_PCAPS.glob("lab-media-*")) == sorted(
        f"lab-media-{n}" for n in NAMES)
    for d in DIRS.values():
        files = {p.name: p.stat().st_size for p in d.iterdir()}
        assert {"capture.pcap", "rtpengine.json", "rtpengine.log", "kamailio.log",
                "README.md"} <= set(files)
        assert sum(files.values()) < 300_000, files


@pytest.mark.parametrize("name", NAMES)
def test_capture_has_the_sip_dialog(name):
    check_sip_dialog(DIRS[name])


@pytest.mark.parametrize("name", NAMES)
def test_capture_has_rtcp_both_ways_on_both_legs_and_the_loss(name):
    check_loss(DIRS[name], check_rtcp_both_legs(DIRS[name]))


@pytest.mark.parametrize("name", NAMES)
def test_rtpengine_mos_per_side_agrees_with_its_log(name):
    check_mos_per_side(DIRS[name])


def test_mos_falls_with_loss():
    check_mos_order(DIRS)


@pytest.mark.parametrize("name", NAMES)
def test_readme_figures_are_rtpengine_json(name):
    d = DIRS[name]
    text = (d / "README.md").read_text()
    section = text.split("## rtpengine's MOS")[1].split("\n## ")[0]
    rows = [l for l in section.splitlines() if re.match(r"\| (A|B|call) \|", l)]
    header = next(l for l in section.splitlines() if l.startswith("| side |"))
    cols = [c.strip() for c in header.strip("|").split("|")][1:]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        pvs = side(d, cells[0])
        assert dict(zip(cols, cells[1:])) == {c: pvs[c] or "null" for c in cols}
    dropped = oracle(d)["iptables_dropped_packets"]
    assert f"the rule's counter says {dropped} packets dropped" in (d / "README.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_ng_query_before_bye_matches_the_final_pvs(name):
    """rtpengine's ng `query` 0 s before the BYE (integers, MOS x10) already holds the final
    figures: each side's average MOS equals one SSRC's average MOS there."""
    call = oracle(DIRS[name])["calls"][0]
    ssrc = call["ng_query_before_bye"]["SSRC"]
    averages = sorted(v["average MOS"]["MOS"] / 10 for v in ssrc.values() if v.get("average MOS"))
    assert averages == sorted(float(side(DIRS[name], s)["average"]) for s in SIDES)
