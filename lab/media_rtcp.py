"""What tshark sees of the media lab's RTCP: every packet of every compound,
grouped by leg (A: caller <-> rtpengine, B: rtpengine <-> callee) and by
direction (from / to the agent). Used by run_media_lab.py for its README and
by the tests as their independent view of the captures. Stdlib + tshark."""

from __future__ import annotations

import subprocess
from pathlib import Path

# baresip's RTP/RTCP ports in the lab (run_media_lab.py configures them)
CALLER_RTP, CALLEE_RTP = 10000, 10100
AGENT_PORTS = {"A": (CALLER_RTP, CALLER_RTP + 1), "B": (CALLEE_RTP, CALLEE_RTP + 1)}
FIELDS = ("frame.number", "frame.time_epoch", "udp.srcport", "udp.dstport", "rtcp.pt",
          "rtcp.senderssrc", "rtcp.ssrc.identifier", "rtcp.ssrc.fraction",
          "rtcp.ssrc.cum_nr", "rtcp.ssrc.jitter", "rtcp.ssrc.lsr", "rtcp.ssrc.dlsr")
PT_NAMES = {"200": "SR", "201": "RR", "202": "SDES", "203": "BYE", "204": "APP"}


def rtcp_packets(pcap: Path) -> list[dict]:
    """One dict per RTCP compound packet as tshark 4.0 decodes it (heuristic
    RTCP on UDP, so no port table is needed)."""
    argv = ["tshark", "-r", str(pcap), "--enable-heuristic", "rtcp_udp", "-Y", "rtcp",
            "-T", "fields", "-E", "separator=\t", "-E", "aggregator=,"]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = []
    for line in out.splitlines():
        vals = dict(zip(FIELDS, line.split("\t")))
        sport, dport = int(vals["udp.srcport"]), int(vals["udp.dstport"])
        leg = next((name for name, ports in AGENT_PORTS.items()
                    if sport in ports or dport in ports), None)
        direction = None
        if leg:
            direction = "from_agent" if sport in AGENT_PORTS[leg] else "to_agent"
        rows.append({
            "frame": int(vals["frame.number"]), "time": float(vals["frame.time_epoch"]),
            "sport": sport, "dport": dport, "leg": leg, "direction": direction,
            "types": [PT_NAMES.get(pt, pt) for pt in vals["rtcp.pt"].split(",") if pt],
            "sender_ssrc": vals["rtcp.senderssrc"] or None,
            "fraction_lost": [int(x) for x in vals["rtcp.ssrc.fraction"].split(",") if x],
            "cumulative_lost": [int(x) for x in vals["rtcp.ssrc.cum_nr"].split(",") if x],
            "jitter": [int(x) for x in vals["rtcp.ssrc.jitter"].split(",") if x],
        })
    return rows


def by_leg(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """{leg: {direction: {"SR": n, "RR": n, ..., "report_blocks": n,
    "max_cumulative_lost": n}}} for legs A and B."""
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        if not r["leg"]:
            continue
        d = out.setdefault(r["leg"], {}).setdefault(
            r["direction"], {"packets": 0, "report_blocks": 0, "max_cumulative_lost": 0})
        d["packets"] += 1
        for t in r["types"]:
            d[t] = d.get(t, 0) + 1
        d["report_blocks"] += len(r["cumulative_lost"])
        d["max_cumulative_lost"] = max([d["max_cumulative_lost"], *r["cumulative_lost"]])
    return out
