#!/usr/bin/env python3
"""Every row that `sipprobe replay` writes for every bundled and public capture, as one JSON
document: for checking that a refactoring changes no row (dump before, dump after, diff).

    python tests/rows_dump.py /tmp/before.json              # this checkout
    python tests/rows_dump.py /tmp/old.json --src /tmp/old  # another checkout (its .so built)
    python tests/rows_dump.py /tmp/b.json --also big.pcap   # and more captures
    diff <(jq -S . /tmp/old.json) <(jq -S . /tmp/before.json)

Each capture is replayed with default options into a new SQLite file; the rows of acc,
missed_calls and acc_cdrs are listed in id order with every column, and the replay summary's
counters beside them. The voice quality tables (rtcp_reports, call_quality) are listed too where
the checkout has them.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TABLES = ("acc", "missed_calls", "acc_cdrs", "rtcp_reports", "call_quality")

REPLAY = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import pipeline
s = pipeline.replay_files([sys.argv[2]], sys.argv[3])
print(json.dumps({"sip_messages": s["sip_messages"], "calls": s["calls"],
                  "counters": s["counters"]}))
"""


def captures() -> list[Path]:
    own = sorted(ROOT.glob("pcaps/*/capture.pcap*"))
    public = sorted(p for p in SHARED.glob("*") if p.suffix in (".pcap", ".pcapng"))
    return own + public


def dump_one(src: Path, capture: Path, workdir: Path) -> dict:
    db = workdir / (capture.parent.name + "-" + capture.name + ".db")
    res = subprocess.run([sys.executable, "-c", REPLAY, str(src), str(capture), str(db)],
                         capture_output=True, text=True, env={**os.environ, "SIPPROBE_STRICT": "0"})
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1:]}
    out = {"summary": json.loads(res.stdout.strip().splitlines()[-1])}
    con = sqlite3.connect(db)
    present = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in TABLES:
        if table not in present:  # an older checkout, before voice quality
            continue
        cur = con.execute(f'SELECT * FROM "{table}" ORDER BY id')
        names = [d[0] for d in cur.description]
        out[table] = [dict(zip(names, row)) for row in cur.fetchall()]
    con.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="JSON file to write")
    ap.add_argument("--src", type=Path, default=ROOT, help="checkout to run (default: this one)")
    ap.add_argument("--also", type=Path, nargs="*", default=[],
                    help="more captures, e.g. the RTCP of bench/gen_captures.py's rtp-heavy.pcap")
    a = ap.parse_args()
    doc = {}
    with tempfile.TemporaryDirectory() as tmp:
        for capture in captures() + a.also:
            name = str(capture.relative_to(ROOT) if capture.is_relative_to(ROOT) else capture.name)
            doc[name] = dump_one(a.src, capture, Path(tmp))
    a.out.write_text(json.dumps(doc, indent=1, sort_keys=True))
    rows = sum(len(v.get(t, [])) for v in doc.values() for t in TABLES)
    print(f"{len(doc)} captures, {rows} rows -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
