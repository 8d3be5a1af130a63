#!/usr/bin/env python3
"""sipprobe throughput benchmark: sipprobe stats and replay vs bare libpcap (tcpdump) vs tshark.

In one run, on the same files, with a warm page cache:

* ``tcpdump -r F -w /dev/null FILTER``: bare libpcap pass with the BPF filter that
  ``sipprobe filter`` prints: the floor cost of reading the file and running the filter.
* ``pcapy-ng`` + the same filter in a Python loop that only counts the frames kept
  (informational: libpcap from Python, what sipprobe pays before decoding anything; it
  also checks that the filter keeps exactly the SIP + RTCP frames of generated files).
* ``sipprobe stats F --format json``: the whole process, startup and imports included.
* ``sipprobe replay F --db DIR/bench-N.db``: the accounting replay, whole process, into a
  NEW SQLite file every run (the db and its -wal/-shm/-journal are deleted before each run,
  outside the timed region; DIR is a mkdtemp() in the bench output dir, on disk, not
  /dev/shm).  After each run the db's acc / missed_calls / acc_cdrs row counts are checked
  against the calls the generator wrote (mismatch: loud error, exit 1).
* ``tshark -q -z sip,stat -r F``: the reference dissector; its SIP counts are
  cross-checked with sipprobe's and with the generator's (mismatch: loud error, exit 1).
* ``python -c pass`` and ``python -c "import typer, rich, dpkt, pcapy, sqlite_utils"``.

Before timing, the checkout's own modules are byte-compiled (``compileall`` into __pycache__;
``--no-byte-compile`` leaves them alone): an installed sipprobe has its .pyc files, while with
PYTHONDONTWRITEBYTECODE set (as on the bench VM) a checkout would be compiled again by every run,
some 60 ms that no operator pays.

Each command is timed with time.perf_counter around the child process, best of N
(``--repeat``, default 3, rounds interleaved).  Peak RSS is per process, from GNU
``/usr/bin/time -f %M`` (getrusage(RUSAGE_CHILDREN) is a max over *all* children so far,
so it cannot show a smaller process after a bigger one, and a child's own ru_maxrss
starts at this script's RSS because Linux keeps the pre-exec high-water mark).  Targets are printed as PASS/FAIL
lines and do not change the exit status; count mismatches and tool failures do.

Usage:
    python bench/run.py                 # full captures (generated on first use, ~25 s)
    python bench/run.py --quick         # 1/20-size captures, smoke run (~30 s)
    python bench/run.py --files a.pcap b.pcapng   # arbitrary captures
    python bench/run.py --json /tmp/bench.json --repeat 5
    python bench/run.py --bpf-variants  # also time alternative BPF expressions
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import gen_captures as gen  # noqa: E402

PLACEHOLDER_FILTER = "udp port 5060 or (udp[8] & 0xc0 = 0x80 and udp[9] >= 200 and udp[9] <= 207)"
IMPORTS = "import typer, rich, dpkt, pcapy, sqlite_utils"
PCAPY_COUNT = r"""
import sys, pcapy
r = pcapy.open_offline(sys.argv[1])
if sys.argv[2]:
    r.setfilter(sys.argv[2])
n = 0
def cb(h, d):
    global n
    n += 1
r.loop(0, cb)
print(n)
"""
TARGET_VS_LIBPCAP = 0.7
TARGET_SIP_MSGS = 100_000
TARGET_REPLAY_SIP_MSGS = 100_000  # accounting issue: replay >= 100 k SIP msgs/s, whole process, into SQLite
SKIPPABLE = ("tcpdump", "pcapy", "sipprobe", "replay", "tshark", "python")
# A line of `sipprobe replay` stdout that says which engine runs (e.g. native accelerators on/off).
ENGINE_NOTE = re.compile(r"\b(engine|native|accelerat\w*|fast ?path|pure[- ]python)\b", re.I)

RED, GREEN, YELLOW, BOLD, RESET = ("\033[31m", "\033[32m", "\033[33m", "\033[1m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"{RED}{bar}\n!! {msg}\n{bar}{RESET}", flush=True)


def warn(msg: str) -> None:
    print(f"{YELLOW}WARNING: {msg}{RESET}", flush=True)


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    seconds: float
    rc: int
    stdout: str
    stderr: str
    maxrss_kb: int


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_timed(cmd: list[str], cwd: Path | None = None) -> Run:
    """Run cmd to completion: wall time (perf_counter around the child) and its peak RSS.

    Peak RSS comes from GNU time's %M when /usr/bin/time exists.  os.wait4's ru_maxrss of
    a direct child is no good here: Linux carries the pre-exec high-water mark over exec
    (exec_mmap -> setmax_mm_hiwater_rss), and Python forks (vfork) from this process,
    so every child would show at least this script's own RSS (~45 MiB).  GNU time is
    small, so its child's figure starts from ~1.5 MiB.  The extra fork+exec costs ~1 ms.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as tf:
        full = [GNU_TIME, "-o", tf.name, "-f", "%M", "--"] + cmd if GNU_TIME else cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting
        maxrss = ru.ru_maxrss
        if GNU_TIME:
            last = [x for x in tf.read().split() if x.isdigit()]
            maxrss = int(last[-1]) if last else 0
        out.seek(0)
        err.seek(0)
        return Run(dt, p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), maxrss)


@dataclass
class Row:
    tool: str
    file: str
    packets: int | None = None
    sip_messages: int | None = None
    seconds: float | None = None
    all_seconds: list = field(default_factory=list)
    maxrss_kb: int = 0
    rc: int = 0
    error: str = ""
    parsed: dict | None = None
    kept: int | None = None
    note: str = ""

    @property
    def pps(self):
        return self.packets / self.seconds if self.packets and self.seconds else None

    @property
    def spread(self):
        """(slowest - fastest) / fastest over the repeats: > 20 % means a noisy machine."""
        return (max(self.all_seconds) - min(self.all_seconds)) / min(self.all_seconds) if self.all_seconds else 0.0

    @property
    def sip_rate(self):
        return self.sip_messages / self.seconds if self.sip_messages and self.seconds else None


# --------------------------------------------------------------------------- discovery


# --------------------------------------------------------------------------- replay db


def fs_type(path: Path) -> str:
    """File system type of path, from /proc/mounts (longest mount point prefix)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace("\\040", " ")
            if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def db_files(db: Path) -> list[Path]:
    return [db] + [db.with_name(db.name + suf) for suf in ("-wal", "-shm", "-journal")]


def remove_db(db: Path) -> None:
    for f in db_files(db):
        try:
            f.unlink()
        except FileNotFoundError:
            pass


def replay_db_counts(db: Path) -> dict:
    """Row counts of the accounting tables (a missing table counts as None)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for t in ("acc", "missed_calls", "acc_cdrs"):
            try:
                out[t] = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            except sqlite3.Error:
                out[t] = None
        return out
    finally:
        con.close()


def replay_expected(meta: dict | None) -> dict | None:
    """acc / missed_calls / acc_cdrs rows a replay of a generated capture must write.

    Every generated call (sig-only and rtp-heavy alike) is INVITE, 100, 180, 200, ACK, BYE,
    200 between two endpoints: answered and ended by BYE, so two acc rows (INVITE 200 and
    BYE 200), no missed call, one CDR.  None for captures the generator did not write."""
    if not meta or meta.get("kind") not in ("sig-only", "rtp-heavy") or "calls" not in meta.get("params", {}):
        return None
    calls = meta["params"]["calls"]
    if meta.get("sip", {}).get("requests", {}).get("INVITE") != calls:
        return None  # a sidecar this function does not understand: no claim
    return {"acc": 2 * calls, "missed_calls": 0, "acc_cdrs": calls}


def find_sipprobe() -> tuple[list[str] | None, Path | None, str]:
    """Command prefix for sipprobe, cwd for it, and how it was found."""
    venv_bin = str(Path(sys.executable).parent)
    exe = shutil.which("sipprobe", path=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    candidates = []
    if exe:
        candidates.append(([exe], None, exe))
    if (REPO / "cli.py").exists():
        candidates.append(([sys.executable, "-m", "cli"], REPO, f"{sys.executable} -m cli (cwd {REPO})"))
    for cmd, cwd, how in candidates:
        r = subprocess.run(cmd + ["stats", "--help"], capture_output=True, text=True, cwd=cwd)
        if r.returncode == 0:
            return cmd, cwd, how
    return None, None, "not found (no `sipprobe` console script, no working `python -m cli`)"


# what sipprobe imports from the checkout (tests, bench and lab are not part of the tool)
SOURCE_PACKAGES = ("probe", "sip_dissect", "rtcp_mos", "store")


def byte_compile() -> bool:
    """Write the .pyc files of the checkout's modules, as installing would; False if one failed.
    Reading them needs no write: PYTHONDONTWRITEBYTECODE only stops the children writing."""
    import compileall
    import io
    from contextlib import redirect_stdout

    ok = True
    with redirect_stdout(io.StringIO()):  # compileall lists what it compiles
        for path in sorted(REPO.glob("*.py")):
            ok = compileall.compile_file(path, quiet=2) and ok
        for package in SOURCE_PACKAGES:
            if (REPO / package).is_dir():
                ok = compileall.compile_dir(REPO / package, quiet=2) and ok
    return bool(ok)


def find_filter(sp_cmd, sp_cwd) -> tuple[str, str]:
    if sp_cmd:
        r = subprocess.run(sp_cmd + ["filter"], capture_output=True, text=True, cwd=sp_cwd)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip(), "`sipprobe filter`"
    r = subprocess.run([sys.executable, "-c", "from probe.bpf import default_filter; print(default_filter())"],
                       capture_output=True, text=True, cwd=REPO)
    if r.returncode == 0 and r.stdout.strip():
        return r.stdout.strip(), "probe.bpf.default_filter()"
    loud("neither `sipprobe filter` nor probe.bpf.default_filter() is available:\n"
         f"!! using the PLACEHOLDER filter {PLACEHOLDER_FILTER!r}\n!! (IPv4 only, no VLAN, no fragments): figures are NOT sipprobe's filter")
    return PLACEHOLDER_FILTER, "PLACEHOLDER"


def bpf_instructions(tcpdump: str, expr: str) -> tuple[int | None, str]:
    r = subprocess.run([tcpdump, "-y", "EN10MB", "-d", expr], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"
    return len([x for x in r.stdout.splitlines() if x.startswith("(")]), ""


def tool_version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return "?"
    lines = [x for x in (r.stdout + r.stderr).splitlines() if x.strip() and "Running as user" not in x]
    return " / ".join(lines[:2])


def count_packets(path: Path) -> int:
    if shutil.which("capinfos"):
        r = subprocess.run(["capinfos", "-c", "-M", "-T", "-r", str(path)], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return int(r.stdout.strip().splitlines()[-1].split("\t")[-1])
    r = subprocess.run([sys.executable, "-c", PCAPY_COUNT, str(path), ""], capture_output=True, text=True)
    return int(r.stdout.strip())


def warm(paths: list[Path]) -> None:
    total = sum(p.stat().st_size for p in paths)
    try:
        avail = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
        if total > 0.8 * avail:
            warn(f"captures ({total / 1e9:.1f} GB) may not fit in the page cache ({avail / 1e9:.1f} GB available): figures include disk reads")
    except (OSError, AttributeError):
        pass
    buf = bytearray(8 << 20)
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    dt = time.perf_counter() - t0
    print(f"page cache warmed: {total / 1e6:.0f} MB read in {dt:.1f} s")


# --------------------------------------------------------------------------- formatting


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def si(x, unit=""):
    if x is None:
        return "-"
    for div, suf in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{suf}{unit}"
    return f"{x:.0f}{unit}"


def ratio(a, b):
    return f"{a / b:.3f}x" if a and b else "-"


def print_table(rows: list[Row], base: dict, tshark: dict) -> None:
    hdr = ("tool", "file", "packets", "seconds", "spread", "packets/s", "SIP msg/s", "vs libpcap", "vs tshark", "peak RSS")
    data = []
    for r in rows:
        if r.seconds is None:
            data.append((r.tool, r.file, f"{r.packets:,}" if r.packets else "-", "-", "-", "-", "-", "-", "-", r.error or "skipped"))
            continue
        lp = base.get(r.file)
        ts = tshark.get(r.file)
        data.append((
            r.tool, r.file, f"{r.packets:,}" if r.packets else "-", f"{r.seconds:.3f}", f"{r.spread * 100:.0f}%", si(r.pps),
            si(r.sip_rate) if r.tool in ("sipprobe stats", "sipprobe replay", "tshark sip,stat") else "-",
            ratio(r.pps, lp.pps) if lp and r.packets else "-",
            ratio(r.pps, ts.pps) if ts and r.packets else "-",
            f"{r.maxrss_kb / 1024:.1f} MiB",
        ))
    widths = [max(len(str(x[i])) for x in data + [hdr]) for i in range(len(hdr))]
    line = "  ".join("{:<%d}" % w if i < 2 else "{:>%d}" % w for i, w in enumerate(widths))
    print(BOLD + line.format(*hdr) + RESET)
    print("  ".join("-" * w for w in widths))
    for d in data:
        print(line.format(*d))


# --------------------------------------------------------------------------- parsing


def sipprobe_counts(doc: dict) -> dict:
    sip = doc.get("sip", {})
    req = {k: int(v) for k, v in sip.get("requests", {}).items()}
    resp = {str(k): int(v) for k, v in sip.get("responses", {}).items()}
    rtcp = doc.get("rtcp", {})
    pk = rtcp.get("packets", 0)
    return {
        "requests": req,
        "responses": resp,
        "total": sum(req.values()) + sum(resp.values()),
        "rtcp_datagrams": rtcp.get("datagrams", pk if isinstance(pk, int) else None),
        "rtcp_packets": pk if isinstance(pk, int) else sum(pk.values()),
    }


def same_counts(a: dict, b: dict) -> bool:
    return a["requests"] == b["requests"] and a["responses"] == b["responses"]


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", type=Path, default=gen.DEFAULT_OUT, help="capture directory (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="1/20-size captures in OUT/quick: smoke run")
    ap.add_argument("--files", nargs="+", type=Path, help="bench these captures instead of the generated ones")
    ap.add_argument("--repeat", "-n", type=int, default=3, help="best of N (default %(default)s)")
    ap.add_argument("--tshark-repeat", type=int, help="repeats for tshark, the slow one (default: min(N, 3))")
    ap.add_argument("--json", type=Path, help="save all figures to this JSON file")
    ap.add_argument("--filter", help="BPF expression to use instead of `sipprobe filter`")
    ap.add_argument("--skip", default="", help="comma list of tools to skip: " + ", ".join(SKIPPABLE))
    ap.add_argument("--bpf-variants", action="store_true", help="also time alternative BPF expressions with tcpdump on the first file")
    ap.add_argument("--force-gen", action="store_true", help="regenerate the captures")
    ap.add_argument("--no-byte-compile", action="store_true",
                    help="do not write the checkout's .pyc files first (see above)")
    a = ap.parse_args(argv)
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    if skip - set(SKIPPABLE):
        ap.error(f"--skip: unknown {', '.join(sorted(skip - set(SKIPPABLE)))} (choose from {', '.join(SKIPPABLE)})")
    N = max(1, a.repeat)
    N_TSHARK = max(1, a.tshark_repeat if a.tshark_repeat else min(N, 3))
    problems: list[str] = []

    tcpdump = shutil.which("tcpdump")
    tshark = shutil.which("tshark")
    if not tcpdump:
        loud("tcpdump not found: the libpcap baseline is the reference of this benchmark")
        return 2
    if not tshark and "tshark" not in skip:
        warn("tshark not found: skipping tshark rows and the SIP cross-check")
        skip.add("tshark")

    # ---- captures
    files: dict[str, tuple[Path, dict | None]] = {}
    if a.files:
        for p in a.files:
            if not p.exists():
                loud(f"{p}: no such file")
                return 2
            meta = gen.load_meta(p)
            if not meta:
                meta = {"packets": count_packets(p)}
            names = [p.name, f"{p.parent.name}/{p.name}", str(p)]
            files[next((n for n in names if n not in files), str(p.resolve()))] = (p, meta)
    else:
        params, out = (gen.QUICK, a.out / "quick") if a.quick else (gen.FULL, a.out)
        t0 = time.perf_counter()
        for name, (path, meta) in gen.ensure_set(out, params, force=a.force_gen).items():
            files[path.name] = (path, meta)
        print(f"captures ready in {time.perf_counter() - t0:.1f} s")

    # ---- tools and filter
    if not a.no_byte_compile:
        ok = byte_compile()
        print(f"byte-compiled the checkout ({'ok' if ok else 'with errors'}): .pyc files as an "
              "installed sipprobe has them (--no-byte-compile: leave them)")
    sp_cmd, sp_cwd, sp_how = find_sipprobe() if not {"sipprobe", "replay"} <= skip else (None, None, "skipped (--skip)")
    replay_ok = ""
    if sp_cmd and "replay" not in skip:
        r = subprocess.run(sp_cmd + ["replay", "--help"], capture_output=True, text=True, cwd=sp_cwd)
        replay_ok = "" if r.returncode == 0 else f"`sipprobe replay --help` exit {r.returncode}"
    if a.filter:
        flt, flt_src = a.filter, "--filter"
    else:
        flt, flt_src = find_filter(sp_cmd, sp_cwd)
    ninsn, err = bpf_instructions(tcpdump, flt)
    if ninsn is None:
        loud(f"libpcap rejects the filter ({flt_src}): {err}\n!! filter: {flt}")
        return 1
    print(f"sipprobe: {sp_how}")
    if not sp_cmd:
        warn(f"sipprobe stats is not available: {sp_how}; its rows are skipped")
    elif replay_ok:
        warn(f"sipprobe replay is not available ({replay_ok}); its rows are skipped")
    short = flt if len(flt) <= 160 else flt[:100] + f" ... ({len(flt)} chars)"
    print(f"BPF filter from {flt_src}: {ninsn} BPF instructions: {short}")
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        # which build: a distribution's python3 (Debian's is built with PGO and LTO) replays
        # about 10 % faster than one compiled without --enable-optimizations (pyenv's default)
        "interpreter": os.path.realpath(sys.executable),
        "tcpdump": tool_version([tcpdump, "--version"]),
        "tshark": tool_version([tshark, "--version"]).split(" / ")[0] if tshark else None,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    print(f"machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']} ({machine['interpreter']}); {machine['tcpdump']}; {machine['tshark']}")

    warm([p for p, _ in files.values()])
    machine["loadavg_start"] = loadavg()
    if float(machine["loadavg_start"].split()[0] if machine["loadavg_start"] != "?" else 0) > 0.5 * (os.cpu_count() or 1):
        warn(f"load average {machine['loadavg_start']} on {os.cpu_count()} CPUs: something else is running, figures will be noisy")

    # ---- replay db directory: on disk (operators write to disk), never /dev/shm
    db_dir = None
    if "replay" not in skip and sp_cmd and not replay_ok:
        parent = a.out if a.out.is_dir() and os.access(a.out, os.W_OK) else Path("/tmp")
        db_dir = Path(tempfile.mkdtemp(prefix="replay-db-", dir=parent))
        kind = fs_type(db_dir)
        print(f"replay db: {db_dir}/bench-N.db ({kind}), new file every run")
        if kind in ("tmpfs", "ramfs"):
            warn(f"{db_dir} is on {kind}: replay figures leave out the disk writes an operator pays")
    try:
        return _bench(a, skip, N, N_TSHARK, problems, files, tcpdump, tshark, sp_cmd, sp_cwd, sp_how, replay_ok,
                      flt, flt_src, ninsn, machine, db_dir)
    finally:
        if db_dir:
            shutil.rmtree(db_dir, ignore_errors=True)


def _bench(a, skip, N, N_TSHARK, problems, files, tcpdump, tshark, sp_cmd, sp_cwd, sp_how, replay_ok,
           flt, flt_src, ninsn, machine, db_dir) -> int:
    # ---- plan
    py = sys.executable
    plan: list[tuple[Row, list[str], Path | None]] = []
    dbs: dict[int, Path] = {}  # id(row) -> its db (replay rows)
    if "python" not in skip:
        plan.append((Row("python -c pass", "-"), [py, "-c", "pass"], None))
        plan.append((Row("python imports", "-"), [py, "-c", IMPORTS], None))
    for fidx, (fname, (path, meta)) in enumerate(files.items()):
        pk = meta.get("packets") if meta else None
        sipn = meta["sip"]["total"] if meta and "sip" in meta else None
        if "tcpdump" not in skip:
            plan.append((Row("tcpdump+BPF", fname, pk, sipn), [tcpdump, "-r", str(path), "-w", "/dev/null", flt], None))
        if "pcapy" not in skip:
            plan.append((Row("pcapy-ng+BPF", fname, pk, sipn), [py, "-c", PCAPY_COUNT, str(path), flt], None))
        if "sipprobe" not in skip:
            row = Row("sipprobe stats", fname, pk, sipn)
            if sp_cmd:
                plan.append((row, sp_cmd + ["stats", str(path), "--format", "json"], sp_cwd))
            else:
                row.error = "sipprobe absent"
                plan.append((row, [], None))
        if "replay" not in skip:
            row = Row("sipprobe replay", fname, pk, sipn)
            if db_dir:
                db = db_dir / f"bench-{fidx}.db"
                dbs[id(row)] = db
                plan.append((row, sp_cmd + ["replay", str(path), "--db", str(db)], sp_cwd))
            else:
                row.error = "sipprobe absent" if not sp_cmd else "replay absent"
                plan.append((row, [], None))
        if "tshark" not in skip:
            plan.append((Row("tshark sip,stat", fname, pk, sipn), [tshark, "-q", "-z", "sip,stat", "-r", str(path)], None))

    # ---- run: N interleaved rounds, best of N
    for rnd in range(N):
        t_round = time.perf_counter()
        for row, cmd, cwd in plan:
            if not cmd or row.rc:
                continue
            if row.tool == "tshark sip,stat" and rnd >= N_TSHARK:
                continue
            db = dbs.get(id(row))
            if db:
                remove_db(db)  # a NEW database every run, deleted outside the timed region
            r = run_timed(cmd, cwd)
            row.all_seconds.append(round(r.seconds, 4))
            row.maxrss_kb = max(row.maxrss_kb, r.maxrss_kb)
            if r.rc != 0:
                row.rc, row.error = r.rc, f"exit {r.rc}"
                loud(f"{row.tool} on {row.file} failed with exit {r.rc}: {' '.join(cmd)[:200]}\n{r.stderr[-2000:]}")
                problems.append(f"{row.tool} {row.file}: exit {r.rc}")
                continue
            row.seconds = min(row.all_seconds)
            if row.tool == "sipprobe stats":
                try:
                    doc = json.loads(r.stdout)
                except ValueError as exc:
                    row.rc, row.error = 1, "bad JSON"
                    loud(f"sipprobe stats {row.file}: output is not JSON ({exc}): {r.stdout[:300]!r}")
                    problems.append(f"sipprobe {row.file}: bad JSON")
                    continue
                row.parsed = sipprobe_counts(doc)
                row.parsed["raw"] = doc
                row.sip_messages = row.parsed["total"]
            elif row.tool == "tshark sip,stat":
                row.parsed = gen.parse_sip_stat(r.stdout)
                row.sip_messages = row.parsed["total"]
            elif row.tool == "pcapy-ng+BPF":
                row.kept = int(r.stdout.strip() or -1)
            elif row.tool == "sipprobe replay":
                try:
                    got = replay_db_counts(db)
                except Exception as exc:  # noqa: BLE001 (no db, not SQLite, ...): a failure like a bad exit
                    row.rc, row.error = 1, "no db"
                    loud(f"sipprobe replay {row.file}: cannot read {db}: {exc}")
                    problems.append(f"sipprobe replay {row.file}: cannot read its db")
                    continue
                m = re.search(r"SIP messages:\s*([\d,]+)", r.stdout)
                if m:
                    got["sip_messages_reported"] = int(m.group(1).replace(",", ""))
                if row.parsed is not None and row.parsed != got:
                    loud(f"sipprobe replay {row.file}: counts differ between runs on a fresh db: {row.parsed} then {got}")
                    problems.append(f"sipprobe replay {row.file}: counts differ between runs")
                row.parsed = got
                note = next((x.strip() for x in r.stdout.splitlines() if ENGINE_NOTE.search(x)), "")
                if note and not row.note:
                    row.note = note
                    print(f"  sipprobe replay engine note: {note}")
            print(f"  round {rnd + 1}/{N}  {row.tool:16s} {row.file:22s} {r.seconds:8.3f} s  {r.maxrss_kb / 1024:7.1f} MiB", flush=True)
        print(f"round {rnd + 1} done in {time.perf_counter() - t_round:.1f} s (load average {loadavg()})", flush=True)
    machine["loadavg_end"] = loadavg()

    rows = [row for row, _, _ in plan]
    for db in dbs.values():
        remove_db(db)
    base = {r.file: r for r in rows if r.tool == "tcpdump+BPF" and r.seconds}
    tsh = {r.file: r for r in rows if r.tool == "tshark sip,stat" and r.seconds}
    sp = {r.file: r for r in rows if r.tool == "sipprobe stats" and r.seconds}
    pc = {r.file: r for r in rows if r.tool == "pcapy-ng+BPF" and r.seconds}
    rp = {r.file: r for r in rows if r.tool == "sipprobe replay" and r.seconds and r.parsed}

    # ---- cross-checks
    print()
    checks = []

    def check(ok: bool, msg: str):
        checks.append({"ok": ok, "check": msg})
        if ok:
            print(f"{GREEN}[ok]{RESET} {msg}")
        else:
            loud("COUNT MISMATCH: " + msg)
            problems.append(msg)

    for fname, (path, meta) in files.items():
        exp = meta.get("sip") if meta else None
        t, s, p = tsh.get(fname), sp.get(fname), pc.get(fname)
        fmt = lambda c: f"{c['total']:,} SIP msgs {dict(sorted(c['requests'].items()))} {dict(sorted(c['responses'].items()))}"  # noqa: E731
        if t and exp:
            check(same_counts(t.parsed, exp), f"{fname}: tshark {fmt(t.parsed)} vs generated {fmt(exp)}")
        if t and s:
            check(same_counts(t.parsed, s.parsed), f"{fname}: sipprobe {fmt(s.parsed)} vs tshark {fmt(t.parsed)}")
        elif s and exp:
            check(same_counts(s.parsed, exp), f"{fname}: sipprobe {fmt(s.parsed)} vs generated {fmt(exp)}")
        if s and meta and "rtcp_packets" in meta:
            got = s.parsed["rtcp_datagrams"]
            check(got == meta["rtcp_packets"], f"{fname}: sipprobe RTCP datagrams {got:,} vs generated {meta['rtcp_packets']:,}")
        if p and meta and "rtcp_packets" in meta:
            want = meta["rtcp_packets"] + meta["sip"]["total"]
            check(p.kept == want, f"{fname}: BPF keeps {p.kept:,} frames vs generated SIP+RTCP {want:,}")
        elif p:
            print(f"     {fname}: BPF keeps {p.kept:,} of {p.packets or 0:,} frames")
        r = rp.get(fname)
        if r:
            want = replay_expected(meta)
            have = {k: r.parsed.get(k) for k in ("acc", "missed_calls", "acc_cdrs")}
            if want:
                check(have == want, f"{fname}: sipprobe replay db rows {have} vs generated calls {want}")
            else:
                print(f"     {fname}: sipprobe replay db rows {have} (no generator sidecar: not checked)")
            rep_n = r.parsed.get("sip_messages_reported")
            if rep_n is not None and exp:
                check(rep_n == exp["total"], f"{fname}: sipprobe replay reports {rep_n:,} SIP messages vs generated {exp['total']:,}")

    # ---- table
    print()
    print_table(rows, base, tsh)
    noisy = [r for r in rows if r.seconds and r.seconds > 0.2 and r.spread > 0.2]
    if noisy:
        warn(f"{len(noisy)} rows vary by more than 20 % between repeats (load average now {loadavg()}): "
             "another process shares the CPUs; compare ratios from the same run only, or rerun with a larger --repeat")
    pass_t = next((r for r in rows if r.tool == "python -c pass" and r.seconds), None)
    imp_t = next((r for r in rows if r.tool == "python imports" and r.seconds), None)
    if pass_t and imp_t:
        print(f"\nimport cost ({IMPORTS}): {imp_t.seconds - pass_t.seconds:.3f} s over a bare interpreter start of {pass_t.seconds:.3f} s")

    # ---- targets
    print()
    targets = []

    def target(name: str, ok: bool | None, detail: str):
        state = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        colour = YELLOW if ok is None else (GREEN if ok else RED)
        targets.append({"target": name, "result": state, "detail": detail})
        print(f"{colour}{BOLD}{state}{RESET} {name}: {detail}")

    if a.quick:
        print("(quick captures are 1/20 size: interpreter start and imports dominate, so the targets are indicative only)")
    rtp_name = next((n for n, (_, m) in files.items() if m and m.get("kind") == "rtp-heavy" and not n.startswith("rtp-heavy-half")), None)
    half_name = next((n for n in files if n.startswith("rtp-heavy-half")), None)
    sig_name = next((n for n, (_, m) in files.items() if m and m.get("kind") == "sig-only"), None)
    if rtp_name:
        s, b = sp.get(rtp_name), base.get(rtp_name)
        if s and b:
            r = s.pps / b.pps
            target(f"sipprobe stats >= {TARGET_VS_LIBPCAP} x bare libpcap on {rtp_name}", r >= TARGET_VS_LIBPCAP,
                   f"{si(s.pps)} vs {si(b.pps)} packets/s = {r:.3f}x")
        else:
            target(f"sipprobe stats >= {TARGET_VS_LIBPCAP} x bare libpcap on {rtp_name}", None, "sipprobe or tcpdump figure missing")
    if sig_name:
        s = sp.get(sig_name)
        if s:
            target(f"sipprobe stats >= {TARGET_SIP_MSGS / 1000:.0f} k SIP messages/s on {sig_name}", s.sip_rate >= TARGET_SIP_MSGS,
                   f"{si(s.sip_rate)} SIP msg/s ({s.sip_messages:,} in {s.seconds:.3f} s)")
        else:
            target(f"sipprobe stats >= {TARGET_SIP_MSGS / 1000:.0f} k SIP messages/s on {sig_name}", None, "no sipprobe figure")
    if sig_name and "replay" not in skip:
        s = next((r for r in rows if r.tool == "sipprobe replay" and r.file == sig_name and r.seconds), None)
        name = f"sipprobe replay >= {TARGET_REPLAY_SIP_MSGS / 1000:.0f} k SIP messages/s on {sig_name}"
        if s and s.sip_rate:
            t, b = tsh.get(sig_name), base.get(sig_name)
            vs = "".join(f", {ratio(s.pps, x.pps)} {lbl}" for lbl, x in (("tshark", t), ("bare libpcap", b)) if x)
            target(name, s.sip_rate >= TARGET_REPLAY_SIP_MSGS,
                   f"{si(s.sip_rate)} SIP msg/s ({s.sip_messages:,} in {s.seconds:.3f} s, whole process into a new SQLite db{vs})")
        else:
            target(name, None, "no sipprobe replay figure")
    if rtp_name and half_name:
        s, h = sp.get(rtp_name), sp.get(half_name)
        if s and h:
            grow = s.maxrss_kb - h.maxrss_kb
            ok = s.maxrss_kb <= 1.10 * h.maxrss_kb + 8 * 1024
            target("sipprobe peak RSS flat in file size (full <= 1.1 x half + 8 MiB)", ok,
                   f"{h.maxrss_kb / 1024:.1f} MiB on {half_name}, {s.maxrss_kb / 1024:.1f} MiB on {rtp_name} ({grow / 1024:+.1f} MiB for 2x the packets)")
        else:
            target("sipprobe peak RSS flat in file size", None, "no sipprobe figure")
        t, th = tsh.get(rtp_name), tsh.get(half_name)
        if t and th:
            print(f"     (for contrast, tshark: {th.maxrss_kb / 1024:.0f} MiB on {half_name}, {t.maxrss_kb / 1024:.0f} MiB on {rtp_name})")

    # ---- BPF variants
    variants = []
    if a.bpf_variants and files:
        vfile = files[rtp_name][0] if rtp_name else next(iter(files.values()))[0]
        vpk = (gen.load_meta(vfile) or {}).get("packets") or count_packets(vfile)
        print(f"\nBPF variants with tcpdump -r {vfile.name} -w /dev/null EXPR (best of {N}); kept = tcpdump --count")
        cands = [("sipprobe default" if flt_src != "PLACEHOLDER" else "placeholder", flt)]
        if sp_cmd:
            r = subprocess.run(sp_cmd + ["filter", "--no-vlan"], capture_output=True, text=True, cwd=sp_cwd)
            if r.returncode == 0 and r.stdout.strip():
                cands.append(("sipprobe --no-vlan", r.stdout.strip()))
        if flt_src != "PLACEHOLDER":
            # Same filter, but an IPv4 UDP datagram that looks like RTP v2 and is not RTCP is
            # rejected by the first few instructions instead of walking the whole expression.
            fast = "(udp and udp[8] & 0xc0 = 0x80 and udp[9] >= 200 and udp[9] <= 207)"
            cands.append(("sipprobe default, RTP rejected first", f"{fast} or (not (udp and udp[8] & 0xc0 = 0x80) and ({flt}))"))
        cands += [
            ("placeholder", PLACEHOLDER_FILTER),
            ("compact RTCP test", "udp port 5060 or udp[8:2] & 0xc0f8 = 0x80c8"),
            ("SIP port only", "udp port 5060"),
            ("placeholder + IPv6 + frags + VLAN",
             f"({PLACEHOLDER_FILTER} or ip[6:2] & 0x3fff != 0 or (ip6 and ip6[6] = 17 and ip6[48] & 0xc0 = 0x80 and ip6[49] >= 200 and ip6[49] <= 207))"
             f" or (vlan and ({PLACEHOLDER_FILTER}))"),
            ("WRONG vlan order", f"(vlan and ({PLACEHOLDER_FILTER})) or {PLACEHOLDER_FILTER}"),
            ("all UDP", "udp"),
            ("no filter", ""),
        ]
        seen = set()
        for label, expr in cands:
            if expr in seen:
                continue
            seen.add(expr)
            n, err = bpf_instructions(tcpdump, expr) if expr else (0, "")
            if n is None:
                print(f"  {label:38s} REJECTED by libpcap: {err}")
                variants.append({"label": label, "expr": expr, "rejected": err})
                continue
            cmd = [tcpdump, "-r", str(vfile), "-w", "/dev/null"] + ([expr] if expr else [])
            best = min(run_timed(cmd).seconds for _ in range(N))
            c = subprocess.run([tcpdump, "--count", "-r", str(vfile)] + ([expr] if expr else []), capture_output=True, text=True)
            m = re.search(r"(\d+) packets?", c.stdout + c.stderr)
            kept = int(m.group(1)) if m else None
            print(f"  {label:38s} {n:4d} insns  {best:7.3f} s  {si(vpk / best):>8s} packets/s  kept {kept if kept is not None else '?':>9}")
            variants.append({"label": label, "expr": expr, "instructions": n, "seconds": round(best, 4), "packets_per_s": round(vpk / best), "kept": kept})

    # ---- JSON
    if a.json:
        doc = {
            "machine": machine,
            "filter": {"source": flt_src, "expression": flt, "instructions": ninsn},
            "sipprobe": sp_how,
            "repeat": N,
            "files": {n: {"path": str(p), **({k: v for k, v in (m or {}).items()})} for n, (p, m) in files.items()},
            "results": [{
                "tool": r.tool, "file": r.file, "packets": r.packets, "sip_messages": r.sip_messages,
                "seconds": r.seconds, "all_seconds": r.all_seconds, "spread": round(r.spread, 3),
                "packets_per_s": round(r.pps) if r.pps else None, "sip_msgs_per_s": round(r.sip_rate) if r.sip_rate else None,
                "ratio_vs_libpcap": round(r.pps / base[r.file].pps, 4) if r.pps and r.file in base else None,
                "ratio_vs_tshark": round(r.pps / tsh[r.file].pps, 4) if r.pps and r.file in tsh else None,
                "peak_rss_kib": r.maxrss_kb, "error": r.error, "bpf_kept": r.kept,
                **({"engine_note": r.note} if r.tool == "sipprobe replay" else {}),
                **({"expected_db_rows": replay_expected(files[r.file][1])} if r.tool == "sipprobe replay" else {}),
                "counts": {k: v for k, v in (r.parsed or {}).items() if k != "raw"} or None,
            } for r in rows],
            "import_cost_s": round(imp_t.seconds - pass_t.seconds, 4) if pass_t and imp_t else None,
            "targets": targets,
            "checks": checks,
            "bpf_variants": variants,
            "problems": problems,
        }
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nfigures saved to {a.json}")

    if problems:
        loud(f"{len(problems)} problem(s): " + "; ".join(problems))
        return 1
    print("\nall counts consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
