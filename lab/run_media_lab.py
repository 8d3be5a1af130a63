#!/usr/bin/env python3
"""sipprobe media lab: real baresip calls through Kamailio and a real rtpengine,
with real packet loss, captured (SIP + RTCP only), with rtpengine's own MOS per
call and side saved as the oracle for sipprobe's RTCP voice quality.

Per scenario, in its own network namespace (scenarios run in parallel):
rtpengine (userspace) -> kamailio -A WITH_RTPENGINE -> iptables loss rule ->
tcpdump -> baresip callee + caller -> dial, talk, hang up -> stop all.
Output in OUT/lab-media-<scenario>/: capture.pcap, rtpengine.json,
kamailio-acc.json, rtpengine.log, kamailio.log, README.md.

Python 3.11 standard library only. Exit status: 0 all scenarios as expected,
1 a scenario failed, 2 a tool is missing / bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from accdb import create_db, dump_tables
from labkit import (NETNS_ENV, LabError, Proc, bring_lo_up, log, netns_prefix,
                    start_tcpdump, tmp_parent, wait_kamailio, wait_tcp_port, wait_udp_port)
from media_rtcp import CALLEE_RTP, CALLER_RTP, by_leg, rtcp_packets
from mediakit import (BaresipCtrl, baresip_config, ng_command, parse_final_stats,
                      parse_mos_lines, write_wav)
from media_readme import write_readme

LAB_DIR = Path(__file__).resolve().parent
REPO_DIR = LAB_DIR.parent
KAMAILIO_CFG = LAB_DIR / "kamailio.cfg"
NG = ("127.0.0.1", 2223)
CALLER = {"user": "caller", "sip": 5090, "ctrl": 4444, "rtp": CALLER_RTP}
CALLEE = {"user": "media", "sip": 5092, "ctrl": 4445, "rtp": CALLEE_RTP}  # kamailio.cfg: "media" -> 5092
# Only SIP and RTCP are kept: RTP is ~50 packets/s per stream and not needed
# for RTCP-based MOS. udp[8] is the first payload byte (version 2: top bits 10),
# udp[9] the RTCP packet type (200 SR .. 207 XR; RTP PCMA with marker is 136).
KEEP_BPF = "port 5060 or (udp and udp[8] & 0xc0 = 0x80 and udp[9] >= 200 and udp[9] <= 207)"
SCENARIO_BUDGET_S = 40   # one scenario, every step included
NO_MOS = "no-mos"        # the quirk that earns a scenario one more try (README)
CALL_S = 25              # baresip sends SR every 5 s: 5 rounds, rtpengine needs 2


@dataclasses.dataclass(frozen=True)
class MediaScenario:
    name: str
    summary: str
    drop_probability: float = 0.0   # on INPUT, UDP to the callee's RTP port
    talk_s: float = CALL_S


SCENARIOS = [
    MediaScenario("clean", f"{CALL_S} s PCMA call through rtpengine, no impairment."),
    MediaScenario("loss-5", f"{CALL_S} s call; 5 % of the RTP towards the callee dropped "
                  "at random (iptables statistic on INPUT, after the capture point).",
                  drop_probability=0.05),
    MediaScenario("loss-20", f"{CALL_S} s call; 20 % of the RTP towards the callee "
                  "dropped at random.", drop_probability=0.20),
]


def tool_versions() -> dict[str, str]:
    def pkg(name: str) -> str:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or "unknown"
    return {"kamailio": pkg("kamailio"), "rtpengine-daemon": pkg("rtpengine-daemon"),
            "baresip-core": pkg("baresip-core"), "tcpdump": pkg("tcpdump"),
            "tshark": pkg("tshark"), "iptables": pkg("iptables")}


def check_tools() -> str | None:
    need = {"kamailio": "kamailio", "rtpengine": "rtpengine-daemon", "baresip": "baresip-core",
            "tcpdump": "tcpdump", "tshark": "tshark", "iptables": "iptables"}
    missing = sorted({pkg for tool, pkg in need.items() if shutil.which(tool) is None})
    if missing:
        return ("missing: " + ", ".join(missing) + ". Install with:\n  apt-get install -y "
                "kamailio kamailio-sqlite-modules rtpengine-daemon baresip-core tcpdump "
                "tshark iptables")
    return None


def iptables(*args: str) -> str:
    r = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, timeout=10)
    if r.returncode:
        raise LabError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def dropped_packets() -> int:
    """Packets the loss rule dropped (its counter in the namespace's INPUT chain)."""
    for line in iptables("-nvxL", "INPUT").splitlines():
        if "DROP" in line and f"dpt:{CALLEE['rtp']}" in line:
            return int(line.split()[0])
    return 0


def run_scenario(sc: MediaScenario, out_root: Path, keep_tmp: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"sipprobe-media-{sc.name}-", dir=tmp_parent()))
    procs: list[Proc] = []
    commands: list[str] = []
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    ok = False
    ctrl = None

    def start(name: str, argv: list[str], log_name: str) -> Proc:
        proc = Proc(name, argv, tmp, tmp / log_name)
        procs.append(proc)
        commands.append(shlex.join(argv))
        return proc

    try:
        wav = tmp / "speech-8k.wav"
        write_wav(wav, sc.talk_s + 5)
        start("rtpengine", ["rtpengine", "--config-file=none", "--foreground", "--log-stderr",
                            "--table=-1", "--delete-delay=0", "--interface=127.0.0.1",
                            f"--listen-ng={NG[0]}:{NG[1]}", "--port-min=30000",
                            "--port-max=30099", "--log-level=6"], "rtpengine.log")
        wait_udp_port(NG[1], 10)
        db = tmp / "acc.db"
        create_db(db)
        kam = start("kamailio", ["kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E",
                                 "-A", "WITH_RTPENGINE", "-A", f'DBURL="sqlite:///{db}"'],
                    "kamailio.log")
        wait_kamailio(kam)
        if sc.drop_probability:
            rule = ["INPUT", "-p", "udp", "--dport", str(CALLEE["rtp"]), "-m", "statistic",
                    "--mode", "random", "--probability", str(sc.drop_probability), "-j", "DROP"]
            iptables("-A", *rule)
            commands.append(shlex.join(["iptables", "-A", *rule]))
        td, td_lines, td_reader = start_tcpdump(tmp / "capture.pcap", tmp, KEEP_BPF)
        procs.append(td)
        commands.append(shlex.join(td.argv))
        for agent in (CALLEE, CALLER):
            home = tmp / f"baresip-{agent['user']}"
            baresip_config(home, agent["user"], agent["sip"], agent["ctrl"], agent["rtp"], wav)
            start(f"baresip-{agent['user']}", ["baresip", "-f", str(home)],
                  f"baresip-{agent['user']}.log")
            wait_tcp_port(agent["ctrl"], 10)

        ctrl = BaresipCtrl(CALLER["ctrl"])
        ctrl.send("dial", "sip:media@127.0.0.1:5060")
        est = ctrl.wait_event("CALL_ESTABLISHED", 10)
        callid = est["id"]
        time.sleep(sc.talk_s)
        # rtpengine's view just before the BYE (MOS progression per SSRC)
        try:
            query = ng_command(NG, {"command": "query", "call-id": callid})
        except (OSError, LabError) as e:
            query = {"error": str(e)}
        ctrl.send("hangup")
        ctrl.wait_event("CALL_CLOSED", 10)
        time.sleep(1.0)   # RTCP BYEs and the 200 to the BYE
        td.stop(signal.SIGINT)
        td_reader.join(5)
        drops = dropped_packets() if sc.drop_probability else 0
        for p in reversed(procs):
            p.stop()

        kam_log = (tmp / "kamailio.log").read_text(errors="replace")
        rtp_log = (tmp / "rtpengine.log").read_text(errors="replace")
        mos = parse_mos_lines(kam_log)
        problems = []
        if callid not in mos:
            problems.append("no RTPENGINE_MOS line in kamailio.log for the call")
        else:
            for s in ("A", "B"):
                if not (mos[callid].get(s) or {}).get("average"):
                    problems.append(f"{NO_MOS}: rtpengine reported no MOS for side {s}")
        kernel_drops = [l for l in td_lines if "dropped by kernel" in l]
        if kernel_drops and not kernel_drops[0].startswith("0 "):
            problems.append(f"tcpdump: {kernel_drops[0]}")
        legs = by_leg(rtcp_packets(tmp / "capture.pcap"))
        oracle = {
            "scenario": sc.name,
            "summary": sc.summary,
            "generated_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": VERSIONS,
            "units": {"mos": "MOS x1 (1.0-5.0, one decimal)", "at": "m:ss from call start",
                      "packetloss": "percent", "jitter": "ms",
                      "roundtrip": "microseconds (whole path)",
                      "roundtrip_leg": "microseconds (this side's leg)",
                      "samples": "number of MOS samples averaged"},
            "sides_note": ("Side A = monologue labelled 'caller' at the offer, side B = "
                           "'callee' at the answer; 'call' = the module's whole-call values. "
                           "Values are the strings Kamailio's rtpengine module put into the "
                           "mos_* pvs from rtpengine's delete reply; null = pv not set."),
            "drop_probability": sc.drop_probability,
            "iptables_dropped_packets": drops,
            "calls": [{"callid": cid, "kamailio_pvs": sides,
                       "rtpengine_final_stats": parse_final_stats(rtp_log).get(cid),
                       "ng_query_before_bye": query if cid == callid else None}
                      for cid, sides in mos.items()],
            "rtcp_in_capture": legs,
        }
        elapsed = time.monotonic() - t0
        d = out_root / f"lab-media-{sc.name}"
        d.mkdir(parents=True, exist_ok=True)
        for f in ("capture.pcap", "rtpengine.log", "kamailio.log"):
            shutil.copyfile(tmp / f, d / f)
        (d / "rtpengine.json").write_text(json.dumps(oracle, indent=2) + "\n")
        tables = dump_tables(db)
        if any(t["rows"] for t in tables.values()):
            (d / "kamailio-acc.json").write_text(json.dumps(
                {"scenario": sc.name, "tables": tables}, indent=2) + "\n")
        write_readme(d, sc, oracle, commands, started, elapsed, problems)
        ok = not problems
        return {"name": sc.name, "ok": ok, "problems": problems, "seconds": elapsed,
                "pcap_bytes": (d / "capture.pcap").stat().st_size}
    except LabError as e:
        return {"name": sc.name, "ok": False, "problems": [str(e), f"logs kept in {tmp}"],
                "seconds": time.monotonic() - t0, "pcap_bytes": None}
    finally:
        if ctrl:
            ctrl.close()
        for p in reversed(procs):
            p.stop(signal.SIGKILL if p.p.poll() is None else signal.SIGTERM, 2)
        if ok and not keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


VERSIONS: dict[str, str] = {}


def run_children(selected: list[MediaScenario], ns: list[str], env: dict, out: Path,
                 keep_tmp: bool) -> dict[str, str | None]:
    """Each scenario in its own namespace, all at once; name -> None (ok), "retry"
    (only the no-MOS quirk) or "failed"."""
    t0 = time.monotonic()
    children = {}
    for sc in selected:
        child_argv = [sys.executable, str(Path(__file__).resolve()), "--out", str(out),
                      "--only", sc.name] + (["--keep-tmp"] if keep_tmp else [])
        children[sc.name] = subprocess.Popen(ns + child_argv, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True,
                                             start_new_session=True)
    verdict: dict[str, str | None] = {}
    for name, child in children.items():
        left = max(1.0, SCENARIO_BUDGET_S - (time.monotonic() - t0))
        try:
            text, _ = child.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            text, _ = child.communicate()
            text += f"\nkilled after {SCENARIO_BUDGET_S} s"
        lines = text.strip().splitlines() or ["(no output)"]
        res = None
        try:
            res = json.loads(lines[-1])
            status = "ok" if res["ok"] else "FAILED: " + "; ".join(res["problems"])
            log(f"{name:8} {status} in {res['seconds']:.1f} s, pcap {res['pcap_bytes']} B",
                "media-lab")
        except (ValueError, KeyError):
            log(f"{name:8} FAILED: {' | '.join(lines[-5:])}", "media-lab")
        if child.returncode == 0:
            verdict[name] = None
        elif res and res["problems"] and all(p.startswith(NO_MOS) for p in res["problems"]):
            verdict[name] = "retry"
        else:
            verdict[name] = "failed"
    return verdict


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_DIR / "pcaps",
                    help="output root; each scenario goes to OUT/lab-media-<name>/")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this scenario (repeatable, or comma-separated)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--keep-tmp", action="store_true", help="keep each scenario's temp dir")
    args = ap.parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name:10} {sc.summary}")
        return 0
    names = [n.strip() for o in args.only or [] for n in o.split(",") if n.strip()]
    unknown = sorted(set(names) - {sc.name for sc in SCENARIOS})
    if unknown:
        print(f"run_media_lab: unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    selected = [sc for sc in SCENARIOS if not names or sc.name in names]
    err = check_tools()
    if err:
        print(f"run_media_lab: {err}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    VERSIONS.update(tool_versions())

    if os.environ.get(NETNS_ENV) == "1":    # a child: exactly one scenario, here
        err = bring_lo_up()
        if err:
            print(f"run_media_lab: cannot bring lo up: {err}", file=sys.stderr)
            return 2
        res = run_scenario(selected[0], out, args.keep_tmp)
        print(json.dumps(res))
        return 0 if res["ok"] else 1

    # The parent: one namespace per scenario, all at once (each call is ~25 s
    # of wall time but little CPU), so ports and iptables rules never clash.
    ns = netns_prefix()
    if ns is None:
        print("run_media_lab: needs a network namespace (root, or unshare "
              "--map-root-user) for its iptables loss rules", file=sys.stderr)
        return 2
    log(f"{len(selected)} scenario(s) in parallel -> {out}", "media-lab")
    t0 = time.monotonic()
    env = dict(os.environ, **{NETNS_ENV: "1"})
    failed = run_children(selected, ns, env, out, args.keep_tmp)
    retry = [sc for sc in selected if failed.get(sc.name) == "retry"]
    if retry:
        log(f"retrying once: {', '.join(sc.name for sc in retry)}", "media-lab")
        failed.update(run_children(retry, ns, env, out, args.keep_tmp))
    failed = [n for n, v in failed.items() if v]   # a second no-MOS is a failure
    log(f"total wall time {time.monotonic() - t0:.1f} s", "media-lab")
    if failed:
        print(f"run_media_lab: scenario(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
