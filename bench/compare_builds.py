#!/usr/bin/env python3
"""Two checkouts' `sipprobe replay` against tshark on one capture, interleaved round by round,
so that both see the same load: on a shared VM, figures from separate runs differ by 20 % and
more. Prints the best and the median of each, and each checkout's ratio to tshark by both
(a ratio of medians moves less between runs than one of bests). Each checkout needs its own
built venv (.venv/bin/sipprobe).

    python bench/compare_builds.py /work/old /work/main --rounds 5
    python bench/compare_builds.py OLD NEW --capture /tmp/sipprobe-bench/sig-only.pcap
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs=2, type=Path, help="two checkouts with a built .venv")
    ap.add_argument("--capture", type=Path, default=Path("/tmp/sipprobe-bench/sig-only.pcap"))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    names = [str(c) for c in args.checkouts] + ["tshark"]
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            for i, checkout in enumerate(args.checkouts):
                db = Path(tmp) / f"{i}-{n}.db"
                times[str(checkout)].append(_timed(
                    [str(checkout / ".venv/bin/sipprobe"), "replay", str(args.capture),
                     "--db", str(db)]))
            times["tshark"].append(_timed(
                ["tshark", "-q", "-n", "-r", str(args.capture), "-z", "sip,stat"]))
            print(f"round {n + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    print("   best  median")
    for name in names:
        ratio = "" if name == "tshark" else (f"  {best['tshark'] / best[name]:.2f}x tshark best, "
                                             f"{median['tshark'] / median[name]:.2f}x median")
        print(f"{best[name]:7.3f} {median[name]:7.3f} s  {name}{ratio}")


if __name__ == "__main__":
    main()
