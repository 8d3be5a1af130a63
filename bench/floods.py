#!/usr/bin/env python3
"""Flood benchmark: `sipprobe replay` through each flood of bench/gen_floods.py, next to the
normal signalling capture, and the memory each open call and transaction holds.

    python bench/floods.py                     # every kind, 1,000,000 packets (~3 min)
    python bench/floods.py --n 200000 --kind invite --kind register
    python bench/floods.py --json /tmp/floods.json

For each flood: packets/s of the whole replay process (start, writer process and all), its
peak RSS, the counters that show what was dropped or evicted, and the rows written. Then
bytes per open call and per open transaction: tracemalloc over the signalling layers fed
N INVITEs (or REGISTERs) that are all still open, divided by the open count.
Baseline: the quick sig-only capture of bench/gen_captures.py (`--quick --only sig`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gen_floods  # noqa: E402

SIG = Path("/tmp/sipprobe-bench/sig-only.pcap")
RUN = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import pipeline
t = time.perf_counter()
s = pipeline.replay_files([sys.argv[2]], sys.argv[3])
s["seconds"] = time.perf_counter() - t
s["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(s))
"""


def replay(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", RUN, str(ROOT), str(path), f"{tmp}/f.db"],
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def per_entry(kind: str, n: int) -> float:
    """Bytes of signalling state per open entry: n requests, none answered, all within their
    timers (2,000 a second: 5 s of packet time for 10,000), traced by tracemalloc."""
    import tracemalloc

    import pipeline
    from probe.counters import Counters
    from probe.sources import CaptureStats, read_batches
    from sip_dissect.events import Publisher
    from sip_dissect.signalling import Signalling

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/f.pcap"
        gen_floods.write(kind, n, path)
        opts = pipeline.ProbeOptions()
        counters = Counters()
        datagrams = [d for b in pipeline.datagram_batches(
            read_batches([path], opts.filters(), CaptureStats()), opts, counters) for d in b]
    sig = Signalling(counters, Publisher())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for d in datagrams:
        sig.add(d)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    open_now = len(sig.dialogs.calls) if kind == "invite" else len(sig.transactions.by_key)
    assert open_now == n, (kind, open_now)
    return used / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="packets per flood")
    ap.add_argument("--kind", action="append", choices=gen_floods.KINDS)
    ap.add_argument("--rate", type=int, default=2000, help="packets per second of packet time")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="sipprobe-floods-") as tmp:
        if SIG.exists():
            s = replay(SIG)
            results.append({"kind": "normal signalling (sig-only)", "packets": s["frames_matched"],
                            "seconds": s["seconds"], "peak_rss": s["peak_rss"],
                            "rows": s["acc_inserted"] + s["missed_inserted"] + s["cdrs_inserted"],
                            "counters": {}})
        for kind in a.kind or gen_floods.KINDS:
            path = Path(tmp) / f"{kind}.pcap"
            gen_floods.write(kind, a.n, str(path), a.rate)
            s = replay(path)
            path.unlink()
            keep = ("evicted", "timeout", "unanswered", "expired", "incomplete", "overflow")
            results.append({"kind": f"{kind} at {a.rate}/s", "packets": s["frames_matched"],
                            "seconds": s["seconds"], "peak_rss": s["peak_rss"],
                            "rows": s["acc_inserted"] + s["missed_inserted"] + s["cdrs_inserted"],
                            "counters": {k: v for k, v in s["counters"].items()
                                         if any(w in k for w in keep)}})
            print(f"{kind}: {results[-1]}", file=sys.stderr)
    entries = {"open call (INVITE, its transaction, its call)": per_entry("invite", 10_000),
               "open transaction (REGISTER)": per_entry("register", 10_000)}
    print("| flood | packets | seconds | packets/s | peak RSS | rows | counters |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        print(f"| {r['kind']} | {r['packets']:,} | {r['seconds']:.2f} | "
              f"{r['packets'] / r['seconds'] / 1000:.0f} k | {r['peak_rss'] / 2**20:.0f} MiB | "
              f"{r['rows']:,} | {', '.join(f'{k} {v:,}' for k, v in sorted(r['counters'].items()))} |")
    print()
    for what, b in entries.items():
        print(f"bytes per {what}: {b:,.0f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"floods": results, "bytes_per_entry": entries},
                                           indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
