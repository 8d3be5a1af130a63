"""Checks of one media lab scenario directory (lab/run_media_lab.py output), shared by the test
of the kept captures (pcaps/lab-media-*) and the live run. Independent views: tshark on the
capture, rtpengine's own log, the iptables drop counter, and the Kamailio pvs in rtpengine.json."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB_PCAPS = REPO / "pcaps"
sys.path.insert(0, str(REPO / "lab"))
from media_rtcp import by_leg, rtcp_packets  # noqa: E402  (lab/ is scripts, not a package)

SIDES = ("A", "B")
LOG_MOS = re.compile(r"Average MOS ([\d.]+), lowest MOS ([\d.]+) \(at ([\d:]+)\), "
                     r"highest MOS ([\d.]+) \(at ([\d:]+)\) lost:(\d+)")


def oracle(d: Path) -> dict:
    return json.loads((d / "rtpengine.json").read_text())


def the_call(d: Path) -> dict:
    calls = oracle(d)["calls"]
    assert len(calls) == 1, f"{d.name}: {len(calls)} calls in rtpengine.json"
    return calls[0]


def side(d: Path, name: str) -> dict:
    return the_call(d)["kamailio_pvs"][name]


def sip_dialog(d: Path) -> list[tuple[str, str]]:
    """(Call-ID, method or status) of every SIP message tshark finds."""
    out = subprocess.run(["tshark", "-r", str(d / "capture.pcap"), "-Y", "sip", "-T", "fields",
                          "-e", "sip.Call-ID", "-e", "sip.Method", "-e", "sip.Status-Code"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [(cid, method or status) for cid, method, status in
            (line.split("\t") for line in out.splitlines())]


def check_sip_dialog(d: Path) -> None:
    callid = the_call(d)["callid"]
    msgs = [m for cid, m in sip_dialog(d) if cid == callid]
    for want in ("INVITE", "200", "ACK", "BYE"):
        assert want in msgs, f"{d.name}: no {want} of {callid} in the capture ({msgs})"
    # both legs: every request and reply relayed by the proxy appears twice
    assert msgs.count("INVITE") == 2 and msgs.count("BYE") == 2, msgs


def check_rtcp_both_legs(d: Path) -> dict:
    """SRs with report blocks in both directions on leg A (caller-rtpengine) and leg B
    (rtpengine-callee): at least 3 rounds in a 25 s call (baresip: every 5 s)."""
    legs = by_leg(rtcp_packets(d / "capture.pcap"))
    for leg in ("A", "B"):
        for direction in ("from_agent", "to_agent"):
            got = legs.get(leg, {}).get(direction, {})
            assert got.get("SR", 0) >= 3, f"{d.name} leg {leg} {direction}: {got}"
            assert got["report_blocks"] >= 3, f"{d.name} leg {leg} {direction}: {got}"
    return legs


def check_mos_per_side(d: Path) -> None:
    """rtpengine gave a MOS for both sides, with min <= average <= max, and its own log's
    "Final packet stats" say the same (a second view of the same figures)."""
    pvs = [side(d, s) for s in SIDES]
    for s, v in zip(SIDES, pvs):
        assert v["min"] and v["average"] and v["max"], f"{d.name} side {s}: {v}"
        assert 1.0 <= float(v["min"]) <= float(v["average"]) <= float(v["max"]) <= 5.0
        assert re.fullmatch(r"\d+:\d\d", v["min_at"]), v["min_at"]
        assert int(v["average_samples"]) >= 1
    from_log = sorted(m[:5] for m in LOG_MOS.findall((d / "rtpengine.log").read_text()))
    from_pvs = sorted((v["average"], v["min"], v["min_at"], v["max"], v["max_at"]) for v in pvs)
    # the same MOS figures; the times of the min and max (call-relative m:ss) within a second,
    # as the log and the pvs count the call's start each in whole seconds of their own
    assert [(a, lo, hi) for a, lo, _, hi, _ in from_log] == \
        [(a, lo, hi) for a, lo, _, hi, _ in from_pvs], f"{d.name}: log {from_log} vs pvs {from_pvs}"
    for log, pv in zip(from_log, from_pvs):
        for i in (2, 4):
            assert abs(_seconds(log[i]) - _seconds(pv[i])) <= 1, f"{d.name}: {log} vs {pv}"


def _seconds(m_ss: str) -> int:
    minutes, seconds = m_ss.split(":")
    return 60 * int(minutes) + int(seconds)


def check_loss(d: Path, legs: dict) -> None:
    """Loss is made on the callee's RTP input: the callee's reports (leg B from the agent,
    relayed to the caller on leg A) carry it, the caller's do not. The last cumulative loss
    reported cannot exceed what iptables dropped and covers most of it (the last report is
    up to 5 s before the hang-up)."""
    data = oracle(d)
    dropped, p = data["iptables_dropped_packets"], data["drop_probability"]
    reported = legs["B"]["from_agent"]["max_cumulative_lost"]
    assert legs["A"]["to_agent"]["max_cumulative_lost"] == reported   # rtpengine relays it
    assert legs["A"]["from_agent"]["max_cumulative_lost"] == 0
    if p == 0:
        assert dropped == 0 and reported == 0
        return
    assert 0 < reported <= dropped
    assert reported >= 0.6 * dropped, (reported, dropped)
    # 25 s of 20 ms packets = 1250 sent to the callee; random drops stay near p
    assert 0.4 * p * 1250 <= dropped <= 1.6 * p * 1250, (dropped, p)
    b = side(d, "B")
    assert float(b["min_packetloss"]) > 0 and float(b["average_packetloss"]) > 0
    assert float(side(d, "A")["max_packetloss"]) == 0


def check_mos_order(dirs: dict[str, Path]) -> None:
    """No loss: both sides at rtpengine's ceiling for G.711 (4.4 here); the lossy side (B,
    what the callee receives) lower and lower with more loss; side A untouched."""
    avg = {name: {s: float(side(d, s)["average"]) for s in SIDES} for name, d in dirs.items()}
    assert avg["clean"]["A"] >= 4.3 and avg["clean"]["B"] >= 4.3, avg
    assert avg["loss-5"]["B"] < avg["clean"]["B"], avg
    assert avg["loss-20"]["B"] < avg["loss-5"]["B"], avg
    assert float(side(dirs["loss-20"], "B")["min"]) < float(side(dirs["clean"], "B")["min"])
    for name in dirs:
        assert avg[name]["A"] >= 4.3, avg


def check_scenario(d: Path) -> None:
    check_sip_dialog(d)
    legs = check_rtcp_both_legs(d)
    check_mos_per_side(d)
    check_loss(d, legs)
