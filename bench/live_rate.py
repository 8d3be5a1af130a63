#!/usr/bin/env python3
"""The highest tcpreplay rate at which `sipprobe sniff` loses nothing: each capture of
bench/gen_captures.py (RTP-heavy, signalling only) is replayed into a veth pair of a network
namespace of its own (tests/veth_replay.py) at rising --pps steps, then --topspeed, until the
kernel reports a drop. Needs root and tcpreplay; about 1.5 minutes.

    sudo .venv/bin/python bench/live_rate.py [--dir /tmp/sipprobe-bench]

Each step sends the capture's first LIMIT packets (enough to overflow sniff's 32 MiB ring
many times over if it falls behind) and prints tcpreplay's achieved rate and the kernel's
received/dropped counters from sniff's summary.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from veth_replay import replay_live, veth_namespace  # noqa: E402

# capture, packets sent per step, --pps steps (then --topspeed)
PLAN = {"rtp-heavy.pcap": (1_000_000, [100_000, 200_000, 400_000]),
        "sig-only.pcap": (350_000, [20_000, 40_000, 80_000, 120_000, 160_000, 240_000,
                                    320_000])}


def steps(capture: Path, limit: int, rates: list[int]) -> list[dict]:
    """Rising rates until the first step with a kernel drop (that step included)."""
    out = []
    with veth_namespace() as ns, tempfile.TemporaryDirectory() as tmp:
        for n, rate in enumerate([*rates, None]):
            option = ["--topspeed"] if rate is None else ["--pps", str(rate)]
            summary, sent = replay_live(ns, capture, Path(tmp) / f"{n}.db",
                                        [*option, "--limit", str(limit)])
            row = {"asked": rate or "top speed", **sent, **summary["capture"],
                   "sip_messages": summary["sip_messages"]}
            print(f"{capture.name}: {row}", flush=True)
            out.append(row)
            if summary["capture"]["kernel_dropped"]:
                break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sipprobe-bench"),
                    help="where gen_captures.py wrote the full-size captures")
    a = ap.parse_args()
    for name, (limit, rates) in PLAN.items():
        capture = a.dir / name
        if not capture.exists():
            print(f"{capture} missing: python bench/gen_captures.py --out {a.dir}")
            return 2
        rows = steps(capture, limit, rates)
        clean = [r for r in rows if not r["kernel_dropped"]]
        best = clean[-1] if clean else None
        print(f"{name}: highest rate without drops: "
              + (f"{best['pps']:,.0f} packets/s ({best['mbps']:,.0f} Mbit/s, asked "
                 f"{best['asked']})" if best else "none of the steps"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
