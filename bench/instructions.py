#!/usr/bin/env python3
"""Instructions per SIP message of `sipprobe replay`, counted by valgrind (cachegrind): a
figure that does not move with the load of a shared VM, for comparing two versions of the code
where wall-clock repeats vary by 20 % or more.

The replay runs in-process (pipeline.replay_files, as `sipprobe replay` does) on a small
capture and on a larger one; the difference divided by the difference in SIP messages is the
per-message cost, start-up and imports cancelled out. The probe process and the SQLite writer
process are counted apart (valgrind follows the child with --trace-children).

Usage:
    python bench/instructions.py                  # quick sig-only capture vs the lab call
    python bench/instructions.py --src /tmp/old   # another checkout (with its built .so)
    python bench/instructions.py --big B.pcap --small S.pcap
    python bench/instructions.py --rtcp           # per RTCP datagram (see rtcp_pair)

Needs valgrind (apt-get install valgrind); under it the quick capture takes about 20 s.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_BIG = Path("/tmp/sipprobe-bench/quick/sig-only.pcap")
DEFAULT_SMALL = REPO / "pcaps" / "lab-basic-call" / "capture.pcap"
RTP_HEAVY = Path("/tmp/sipprobe-bench/rtp-heavy.pcap")
# what bench/gen_captures.py's RTCP looks like to BPF (its RTP has payload type 0)
RTCP_BPF = "udp[8] & 0xc0 = 0x80 and udp[9] >= 200 and udp[9] <= 207"


def rtcp_pair(workdir: Path) -> tuple[Path, Path]:
    """From rtp-heavy.pcap, its SIP and RTCP (big) and its SIP alone (small), with tcpdump: the
    same calls with and without their 23,714 RTCP datagrams. RTP is left out of both: libpcap's
    filter drops it before Python either way."""
    big, small = workdir / "sip-rtcp.pcap", workdir / "sip.pcap"
    for out, expr in ((big, f"udp port 5060 or ({RTCP_BPF})"), (small, "udp port 5060")):
        subprocess.run(["tcpdump", "-r", str(RTP_HEAVY), "-w", str(out), expr],
                       capture_output=True, check=True)
    return big, small

REPLAY = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import pipeline
carry = {"carry_calls": sys.argv[4] == "1"} if len(sys.argv) > 4 else {}
s = pipeline.replay_files([sys.argv[2]], sys.argv[3], **carry)
print(json.dumps({"sip_messages": s["sip_messages"], "acc": s["acc_inserted"],
                  "cdrs": s["cdrs_inserted"],
                  "rtcp": s["counters"].get("rtcp.datagrams", 0),
                  "media_rows": s.get("rtcp_reports_inserted", 0)
                  + s.get("call_quality_inserted", 0)}))
"""


def warm(src: Path, capture: Path, workdir: Path) -> None:
    """One replay outside valgrind, so that the .pyc of every module is written before the
    counted runs: the first run after an edit compiles each changed .py, and that run being
    the small one understated the per-message figure by up to 1.5 k."""
    subprocess.run([sys.executable, "-c", REPLAY, str(src), str(capture),
                    str(workdir / "warm.db")], capture_output=True, check=True)


def count(src: Path, capture: Path, workdir: Path, carry: bool | None = None) -> dict:
    """Instructions of the probe and of the writer process for one replay into a new db;
    `carry`: keep the calls going at the end for the next run (None: the checkout's default,
    for checkouts older than that option)."""
    db = workdir / "instr.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    out = workdir / "cg.%p"
    res = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
         f"--cachegrind-out-file={out}", sys.executable, "-c", REPLAY, str(src), str(capture),
         str(db), *([] if carry is None else [str(int(carry))])],
        capture_output=True, text=True, check=True)
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    totals = {}  # pid -> (instructions, command line)
    for path in workdir.glob("cg.*"):
        text = path.read_text(errors="replace")
        cmd = re.search(r"^cmd: (.*)$", text, re.M).group(1)
        ir = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
        totals[path.name] = (ir, cmd)
        path.unlink()
    writer = sum(ir for ir, cmd in totals.values() if "store.worker" in cmd)
    probe = sum(ir for ir, cmd in totals.values() if "store.worker" not in cmd)
    return {**summary, "probe": probe, "writer": writer}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=REPO, help="checkout to measure (default: this)")
    ap.add_argument("--big", type=Path, default=DEFAULT_BIG)
    ap.add_argument("--small", type=Path, default=DEFAULT_SMALL)
    ap.add_argument("--rtcp", action="store_true",
                    help=f"per RTCP datagram: {RTP_HEAVY.name}'s SIP and RTCP minus its SIP")
    args = ap.parse_args()
    if args.rtcp:
        return rtcp_main(args)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: apt-get install valgrind")
    if not args.big.exists():
        sys.exit(f"{args.big} missing: python bench/gen_captures.py --quick")
    carries = (args.src / "sip_dissect" / "carry.py").exists()
    with tempfile.TemporaryDirectory() as tmp:
        warm(args.src, args.small, Path(tmp))
        # per message without the end-of-run state (its cost grows with the calls still going
        # at the end, not with the messages: printed apart below)
        small = count(args.src, args.small, Path(tmp), False if carries else None)
        big = count(args.src, args.big, Path(tmp), False if carries else None)
        big_carry = count(args.src, args.big, Path(tmp), True) if carries else None
    n = big["sip_messages"] - small["sip_messages"]
    rows = (big["acc"] + big["cdrs"]) - (small["acc"] + small["cdrs"])
    print(f"checkout: {args.src}")
    print(f"captures: {args.big.name} ({big['sip_messages']:,} SIP messages) minus "
          f"{args.small.parent.name}/{args.small.name} ({small['sip_messages']:,})")
    for part in ("probe", "writer"):
        per_msg = (big[part] - small[part]) / n
        print(f"{part:>6}: {per_msg:10,.0f} instructions per SIP message "
              f"({(big[part] - small[part]) / rows:,.0f} per row written); "
              f"fixed start-up {small[part] / 1e6:,.0f} M")
    if big_carry is not None:
        print(f" carry: {(big_carry['probe'] - big['probe']) / 1e6:,.0f} M probe instructions "
              "at the end of the run, to keep the calls going (and transactions remembered) "
              "for the next run")


def rtcp_main(args) -> None:
    """Instructions per RTCP datagram: parse, bind, figures, records and their hand-off (probe),
    rows (writer), from two replays of the same calls with and without their RTCP."""
    if not RTP_HEAVY.exists():
        sys.exit(f"{RTP_HEAVY} missing: python bench/gen_captures.py --only rtp")
    with tempfile.TemporaryDirectory() as tmp:
        big, small = rtcp_pair(Path(tmp))
        warm(args.src, small, Path(tmp))
        without = count(args.src, small, Path(tmp))
        with_ = count(args.src, big, Path(tmp))
    n = with_["rtcp"] - without["rtcp"]
    rows = with_["media_rows"] - without["media_rows"]
    print(f"checkout: {args.src}")
    print(f"captures: {RTP_HEAVY.name}'s SIP and RTCP ({with_['rtcp']:,} RTCP datagrams, "
          f"{rows:,} voice quality rows) minus its SIP alone")
    for part in ("probe", "writer"):
        print(f"{part:>6}: {(with_[part] - without[part]) / n:10,.0f} instructions per RTCP "
              f"datagram")


if __name__ == "__main__":
    main()
