"""README.md of one media lab scenario: what ran, versions, and rtpengine's
figures as they are in rtpengine.json (tests check the two agree)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

SIDES = ("A", "B", "call")
FIGURE_COLUMNS = ("min", "min_at", "average", "max", "max_at", "min_packetloss",
                  "min_jitter", "min_roundtrip", "min_roundtrip_leg", "average_packetloss",
                  "average_jitter", "average_roundtrip", "average_samples")


def figures_table(oracle: dict) -> list[str]:
    """One Markdown row per call and side; the exact strings of rtpengine.json."""
    lines = ["| side | " + " | ".join(FIGURE_COLUMNS) + " |",
             "|" + " --- |" * (len(FIGURE_COLUMNS) + 1)]
    for call in oracle["calls"]:
        for side in SIDES:
            vals = call["kamailio_pvs"].get(side)
            if vals is None:
                continue
            cells = ["null" if vals.get(c) is None else vals[c] for c in FIGURE_COLUMNS]
            lines.append(f"| {side} | " + " | ".join(cells) + " |")
    return lines


def rtcp_table(oracle: dict) -> list[str]:
    lines = ["| leg | direction | packets | SR | RR | BYE | report blocks | max cumulative lost |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for leg, dirs in sorted(oracle["rtcp_in_capture"].items()):
        for direction, d in sorted(dirs.items()):
            lines.append(f"| {leg} | {direction} | {d['packets']} | {d.get('SR', 0)} | "
                         f"{d.get('RR', 0)} | {d.get('BYE', 0)} | {d['report_blocks']} | "
                         f"{d['max_cumulative_lost']} |")
    return lines


def write_readme(d: Path, sc, oracle: dict, commands: list[str], started: dt.datetime,
                 elapsed: float, problems: list[str]) -> None:
    callids = ", ".join(f"`{c['callid']}`" for c in oracle["calls"]) or "none"
    lines = [
        f"# lab-media-{sc.name}",
        "",
        f"**What happens:** {sc.summary}",
        "",
        "baresip caller (127.0.0.1:5090, RTP 10000) -> Kamailio 127.0.0.1:5060 with "
        "rtpengine (ng 127.0.0.1:2223, media ports 30000-30099) -> baresip callee `media` "
        "(127.0.0.1:5092, RTP 10100); an 8 kHz WAV played as PCMA both ways; the caller "
        "hangs up.",
        "",
        f"- Generated: {started.strftime('%Y-%m-%d %H:%M:%S UTC')} in {elapsed:.1f} s, in a "
        "private network namespace",
        f"- Call-ID(s): {callids}",
        f"- Loss rule: drop probability {sc.drop_probability} on UDP to port 10100; "
        f"the rule's counter says {oracle['iptables_dropped_packets']} packets dropped",
        "",
        "## Produced by",
        "",
        "```",
        f"python3 lab/run_media_lab.py --only {sc.name}",
        "```",
        "",
        "which ran, in this order (temporary paths are per run):",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Versions (Debian packages)",
        "",
        *[f"- {k}: {v}" for k, v in oracle["versions"].items()],
        "",
        "## Files",
        "",
        "- `capture.pcap`: SIP (port 5060) and RTCP only (tcpdump filter above); no RTP",
        "- `rtpengine.json`: the oracle: per call, side A (caller), B (callee) and the whole "
        "call, the MOS pvs exactly as Kamailio's rtpengine module filled them at "
        "`rtpengine_delete()`, rtpengine's own final stats from its log, its ng `query` reply "
        "just before the BYE, and the RTCP tshark sees per leg",
        "- `kamailio-acc.json`: the acc / acc_cdrs rows of the call (as in the SIPp lab)",
        "- `rtpengine.log`, `kamailio.log`: the daemons' stderr (`Final packet stats` and "
        "`RTPENGINE_MOS` lines are a second view of the same figures)",
        "",
        "## rtpengine's MOS (Kamailio pvs)",
        "",
        "Units: MOS 1-5; `*_at` m:ss into the call; packetloss %; jitter ms; roundtrip us.",
        "",
        *figures_table(oracle),
        "",
        "## RTCP in the capture (tshark, heuristic RTCP)",
        "",
        "Leg A: caller <-> rtpengine; leg B: rtpengine <-> callee.",
        "",
        *rtcp_table(oracle),
        "",
    ]
    if problems:
        lines += ["## Problems in this run", "", *[f"- {p}" for p in problems], ""]
    (d / "README.md").write_text("\n".join(lines))
