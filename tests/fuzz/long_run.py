#!/usr/bin/env python3
"""The long fuzz run: the harnesses of harnesses.py on random mutations of the seed corpus,
as many inputs as asked, in one process per harness. An input that fails is written to
OUT/<harness>-<n>.bin with its traceback beside it; add each as a test of its own beside its
module's tests (e.g. test_pcapfile.py's times past 2038).

    python tests/fuzz/long_run.py scan --inputs 1000000 --out /tmp/fuzz
    python tests/fuzz/long_run.py all --inputs 1000000      # one harness after the other
    python tests/fuzz/long_run.py pcapfile --inputs 100000  # mapped reader = libpcap, per file

Prints one line per harness: inputs run, failures, seconds. docs/reliability.md ("Fuzzing") has the results.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from corpus import FILES, mutate, seeds  # noqa: E402
import harnesses as h  # noqa: E402

HARNESSES = {
    "scan": ("sip", h.scan_differential),
    "sdp": ("sdp", h.sdp_never_raises),
    "rtcp": ("rtcp", h.rtcp_never_raises),
    "decode": ("frame", lambda f: h.decode_differential([f])),
}
FILTERED_EVERY = 256  # files: one input in 256 with the built-in BPF filter (harnesses.py)


def run(name: str, inputs: int, seed: int, out: Path) -> tuple[int, int, float]:
    rnd = random.Random(seed)
    failures = 0
    t = time.perf_counter()
    if name in ("files", "pcapfile"):
        datas = [p.read_bytes() for p in FILES]
        check = h.file_never_crashes if name == "files" else h.pcapfile_differential
        for n in range(inputs):
            data = rnd.choice(datas)
            x = mutate(data, rnd, [data])
            filtered = n % FILTERED_EVERY == 0
            failures += _try(lambda: check(x, filtered), x, name, n, out)
    else:
        kind, check = HARNESSES[name]
        pool = seeds()[kind]
        for n in range(inputs):
            x = mutate(rnd.choice(pool), rnd, pool) if n % 8 else rnd.randbytes(rnd.randrange(256))
            failures += _try(lambda: check(x), x, name, n, out)
    return inputs, failures, time.perf_counter() - t


def _try(fn, x: bytes, name: str, n: int, out: Path) -> int:
    try:
        fn()
        return 0
    except Exception:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}-{n}.bin").write_bytes(x)
        (out / f"{name}-{n}.txt").write_text(traceback.format_exc())
        return 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("harness", choices=[*HARNESSES, "files", "pcapfile", "all"])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--out", type=Path, default=Path("/tmp/sipprobe-fuzz"))
    a = ap.parse_args()
    names = [*HARNESSES, "files", "pcapfile"] if a.harness == "all" else [a.harness]
    bad = 0
    for name in names:
        n, failures, secs = run(name, a.inputs, a.seed, a.out)
        bad += failures
        print(f"{name}: {n:,} inputs, {failures} failures, {secs:.0f} s ({n / secs:,.0f}/s)",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
