"""How long a report takes to show its first line, and its whole run and peak memory, on a
database of N calls (2 acc rows and 1 CDR each, synthetic, written through store.writer).

    .venv/bin/python bench/reports.py                 # 20 000 calls, this checkout's sipprobe
    .venv/bin/python bench/reports.py --sipprobe /work/main/.venv/bin/sipprobe --db /tmp/r.db

Each command runs with stdout on a pipe (as `| less` would) and the table forced by COLUMNS;
first line = time until the first byte reaches the pipe. Peak RSS from wait4().
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_db(path: str, calls: int) -> None:
    from store.writer import open_store
    from sip_dissect.records import AccRecord, CdrRecord

    t0 = 1795431445.0
    with open_store(path) as store:
        for i in range(calls):
            start = t0 + i * 3.7
            callid = f"{i:08d}-bench-{'x' * 20}@198.51.100.7"
            user = f"00972{39287044 + i}"
            for method, cseq, at in (("INVITE", 1, start + 1.2), ("BYE", 2, start + 31.0)):
                store.add(AccRecord(table="acc", method=method, from_tag=f"f{i}", to_tag=f"t{i}",
                                    callid=callid, sip_code="200", sip_reason="OK", time=at,
                                    src_user="alice", src_domain="example.net",
                                    src_ip="192.0.2.10", dst_ouser=user, dst_user=user,
                                    dst_domain="198.51.100.7", cseq=cseq))
            store.add_cdr(CdrRecord(
                start_time=start, end_time=start + 31.0, duration=31.0, callid=callid,
                from_tag=f"f{i}", to_tag=f"t{i}", src_user="alice", src_domain="example.net",
                src_ip="192.0.2.10", dst_ouser=user, dst_user=user, dst_domain="198.51.100.7",
                sip_code="200", sip_reason="OK", created=start, ring_time=start + 0.2,
                answer_time=start + 1.2, setuptime=1.2, pdd=0.2, ended_by="caller",
                end_reason="completed", ring_duration=1.2, talk_time=29.8))


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """(seconds to the first byte, seconds in all, peak RSS MiB)."""
    env = {**os.environ, "COLUMNS": "120"}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    p.stdout.read(1)
    first = time.perf_counter() - t0
    while p.stdout.read(1 << 16):
        pass
    _, _, usage = os.wait4(p.pid, 0)
    return first, time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--db", default="/tmp/sipprobe-bench-reports.db")
    ap.add_argument("--sipprobe", default=str(ROOT / ".venv/bin/sipprobe"))
    args = ap.parse_args()
    if not os.path.exists(args.db):
        make_db(args.db, args.calls)
    for words in (["cdrs"], ["acc"], ["acc", "--limit", "100000"], ["acc", "--format", "csv"],
                  ["summary"], ["pairs"], ["pairs", "--format", "csv"]):
        cmd = [args.sipprobe, "report", *words, "--db", args.db]
        first, total, rss = measure(cmd)
        print(f"report {' '.join(words):<28} first line {first:6.3f} s  all {total:6.3f} s  "
              f"peak {rss:6.1f} MiB")


if __name__ == "__main__":
    main()
