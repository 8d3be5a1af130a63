#!/usr/bin/env python3
"""sipprobe lab: real Kamailio + SIPp calls, captured, with Kamailio's own
accounting tables saved as the oracle for sipprobe's rows.

For every scenario: fresh SQLite DB (WAL, tmpfs) -> kamailio -DD -E ->
tcpdump on lo -> SIPp UAS -> SIPp UAC -> stop all -> dump acc, missed_calls,
acc_cdrs. Output per scenario in OUT/lab-<scenario>/:
capture.pcap, kamailio-acc.json, kamailio.log, README.md.

By default the whole run happens in a private network namespace (the runner
re-executes itself under `unshare --net`), so no traffic touches the host and
no port can clash with anything else running; --no-netns uses the host's
loopback instead.

Python 3.11 standard library only. Exit status: 0 all scenarios as expected,
1 a scenario failed or wrote unexpected rows, 2 a tool is missing / bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from accdb import SCHEMA_SQL, TABLES, create_db, dump_tables, tshark_sip_stat
from labkit import (NETNS_ENV, PROXY, LabError, Proc, bring_lo_up, log, ports_free,
                    reexec_in_netns, start_tcpdump, tmp_parent, wait_kamailio, wait_udp_port)

LAB_DIR = Path(__file__).resolve().parent
REPO_DIR = LAB_DIR.parent
SCEN_DIR = LAB_DIR / "scenarios"
KAMAILIO_CFG = LAB_DIR / "kamailio.cfg"
RTP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")

UAC_PORT = 5080
UAC_MEDIA_PORT = 6000
UAS_MEDIA_PORT = 6100
# The longest scenario takes ~7 s; these bound a hung one.
SIPP_TIMEOUT_S = 15          # SIPp's own global timeout (-timeout), unless a scenario says
WAIT_SLACK_S = 5             # on top of SIPp's timeout before we kill it
RUN_BUDGET_S = 170           # whole run: later scenarios are skipped past this
# the scenarios that wait for Kamailio's fr_timer / fr_inv_timer run only when named (--only)
SLOW = ("no-answer-408", "ringing-no-answer", "missed-early-no-answer-408")
LINGER_S = 0.5               # late retransmissions / ACKs before capture stops


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    summary: str             # one line: what happens on the wire
    proves: str              # what the oracle shows for this case
    uac: str                 # scenario file in lab/scenarios
    user: str                # dialled user; the proxy maps it to a UAS port
    uas: str | None = None   # None: no UAS (the proxy answers itself)
    calls: int = 1
    rate: int | None = None  # calls per second (-r), SIPp default otherwise
    talk_ms: int = 2000      # -d: length of <pause/> in the UAC
    transport: str = "u1"    # SIPp -t for the UAC side
    # Rows Kamailio 5.6.3 writes with lab/kamailio.cfg (observed, then frozen:
    # a change means the proxy or the lab changed, not that the oracle is wrong).
    expect_rows: dict = dataclasses.field(default_factory=dict)
    expect_sip_messages: int | None = None   # tshark sip,stat total
    sipp_timeout_s: int = 15  # SIPp's -timeout: longer where the proxy's own timer must fire
    # kamailio.cfg variant: each name is passed as `-A NAME` (a #!define); recorded in
    # kamailio-acc.json as "kamailio_defines" so that tests know which script wrote the rows
    defines: tuple[str, ...] = ()
    # a second SIPp UAS (scenario file, the user whose port it listens on), for serial forking
    uas2: tuple[str, str] | None = None


SCENARIOS: list[Scenario] = [
    Scenario(
        "basic-call",
        "INVITE, 100, 180, 200, ACK, ~2 s of PCMA RTP both ways, caller BYE, 200.",
        "An answered call: acc INVITE + BYE rows, one CDR with ~2 s duration.",
        uac="uac-call-rtp.xml", uas="uas-answer-rtp.xml", user="uas",
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=14),
    Scenario(
        "callee-bye",
        "Answered call; after 2 s the callee (UAS) sends the BYE through the proxy.",
        "acc BYE row from the callee's side: from_tag/to_tag and src_user/dst_user "
        "are the BYE's own From/To (detect_direction=0), i.e. swapped vs the INVITE.",
        uac="uac-callee-bye.xml", uas="uas-callee-bye.xml", user="byer",
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=14),
    Scenario(
        "busy-486",
        "INVITE, 100, 180, then 486 Busy Here from the UAS after 0.5 s, ACK.",
        "A missed call: one missed_calls row (486), no acc row, a failed CDR "
        "(duration 0, end_time = start_time).",
        uac="uac-busy.xml", uas="uas-busy.xml", user="busy",
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1},
        expect_sip_messages=10),
    Scenario(
        "notfound-404",
        "INVITE relayed to the UAS, which answers 404 Not Found; ACK.",
        "Downstream 404: missed_calls row with the UAS's to_tag, failed CDR.",
        uac="uac-notfound.xml", uas="uas-notfound.xml", user="notfound",
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1},
        expect_sip_messages=8),
    Scenario(
        "notfound-proxy-404",
        "INVITE to an unknown user; Kamailio itself answers 404 (stateful, no 100); ACK.",
        "Proxy-generated 404 as in stock kamailio.cfg: no acc and no missed_calls row "
        "(missed flag not yet set), but a failed CDR whose to_tag/sip_code are NULL.",
        uac="uac-notfound.xml", uas=None, user="nobody",
        expect_rows={"acc": 0, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=3),
    Scenario(
        "cancel-487",
        "INVITE, 100, 180; caller CANCELs after 1 s; 200 to CANCEL, 487 to INVITE, ACK.",
        "A cancelled call: missed_calls row 487 (CANCEL itself not accounted, "
        "report_cancels=0), failed CDR.",
        uac="uac-cancel.xml", uas="uas-ringing.xml", user="ringing",
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1},
        expect_sip_messages=14),
    Scenario(
        "ringing-then-answer",
        "INVITE, 100, 180, 3 s of ringing, 200, ACK, 2 s talk, caller BYE, 200.",
        "acc INVITE time is the answer, but the CDR starts at the INVITE "
        "(cdr_start_on_confirmed=0): CDR duration ~5 s includes the ringing.",
        uac="uac-call.xml", uas="uas-slow-answer.xml", user="slow",
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=14),
    Scenario(
        "reinvite",
        "Answered call, re-INVITE after 1 s (sendonly), 200, ACK, 1 s, caller BYE.",
        "The re-INVITE gets no acc row (stock flags: initial INVITE and BYE only); "
        "one CDR for the whole call.",
        uac="uac-reinvite.xml", uas="uas-reinvite.xml", user="reinvite",
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=21),
    Scenario(
        "auth-407",
        "INVITE from authuser, 407 from the proxy, ACK, INVITE with credentials "
        "(CSeq 2), 100, 180, 200, ACK, 2 s, BYE, 200.",
        "The challenged INVITE leaves no trace in any table; the call is accounted "
        "once, from the authenticated INVITE.",
        uac="uac-auth.xml", uas="uas-answer.xml", user="uas",
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=17),
    Scenario(
        "concurrent",
        "20 calls at 10 calls/s, each 1 s long, caller BYE; up to ~10 in progress.",
        "Interleaved dialogs: 20 INVITE + 20 BYE acc rows, 20 CDRs, none lost "
        "(one Kamailio worker, WAL).",
        uac="uac-call.xml", uas="uas-answer.xml", user="uas",
        calls=20, rate=10, talk_ms=1000,
        expect_rows={"acc": 40, "missed_calls": 0, "acc_cdrs": 20},
        expect_sip_messages=280),
    Scenario(
        "tcp-call",
        "basic-call signalling (no RTP) with the caller on TCP; proxy to UAS on UDP.",
        "Transport does not change the rows; Kamailio double-Record-Routes "
        "(TCP and UDP entries, r2=on).",
        uac="uac-call.xml", uas="uas-answer.xml", user="uas", transport="t1",
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=14),
    Scenario(
        "no-bye",
        "INVITE, 100, 180, 200, ACK; the caller stops after 1 s without a BYE.",
        "Only the acc INVITE row: the dialog is still open (12 h timeout) when "
        "Kamailio stops, and no CDR is written at shutdown.",
        uac="uac-no-bye.xml", uas="uas-no-bye.xml", user="uas", talk_ms=1000,
        expect_rows={"acc": 1, "missed_calls": 0, "acc_cdrs": 0},
        expect_sip_messages=10),
    Scenario(
        "no-answer-408",
        "INVITE to a callee that never answers (nothing listens on its port): the proxy "
        "answers 100, retransmits the INVITE, and after fr_timer (30 s) answers 408 itself; ACK.",
        "What Kamailio writes when its tm timer fires with no reply from downstream.",
        uac="uac-no-answer.xml", uas=None, user="silent", sipp_timeout_s=45),
    Scenario(
        "ringing-no-answer",
        "INVITE, 100, 180 from the callee, then nothing: after fr_inv_timer (120 s) the proxy "
        "CANCELs downstream (200, 487, ACK) and answers 408 upstream; ACK.",
        "What Kamailio writes when fr_inv_timer fires after a provisional reply.",
        uac="uac-no-answer.xml", uas="uas-ringing.xml", user="ringing",
        sipp_timeout_s=140),
    # ---- kamailio.cfg -A WITH_MISSED_EARLY: acc flags set before routing (lab/README.md)
    Scenario(
        "missed-early-notfound-proxy-404",
        "notfound-proxy-404 with the acc flags set before routing: Kamailio answers the unknown "
        "user with its own stateful 404 (t_newtran + send_reply, no 100); ACK.",
        "With the missed-call flag set before t_newtran() the proxy's own 404 is a missed call: "
        "one missed_calls row with the proxy's to_tag (sipprobe --missed-local-replies).",
        uac="uac-notfound.xml", uas=None, user="nobody", defines=("WITH_MISSED_EARLY",),
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1},
        expect_sip_messages=3),
    Scenario(
        "missed-early-blocked-403",
        "INVITE to user `blocked`, flags set before routing: Kamailio answers a stateless 403 "
        "(sl_send_reply); ACK.",
        "A stateless reply has no transaction, so acc never sees it whatever the flags: no row "
        "(sipprobe tells it by the To tag's '.' separator, sl's; tm's is '-'). Without a "
        "transaction the dialog module creates no dialog either: no CDR.",
        uac="uac-blocked.xml", uas=None, user="blocked", defines=("WITH_MISSED_EARLY",),
        expect_rows={"acc": 0, "missed_calls": 0, "acc_cdrs": 0},
        expect_sip_messages=3),
    Scenario(
        "missed-early-auth-407",
        "auth-407 with the flags set before the challenge: 407 (stateless), ACK, INVITE with "
        "credentials, call, BYE.",
        "The 407 challenge leaves no missed_calls row even with the flag set before it "
        "(proxy_challenge replies statelessly); the call is accounted as in stock.",
        uac="uac-auth.xml", uas="uas-answer.xml", user="uas", defines=("WITH_MISSED_EARLY",),
        expect_rows={"acc": 2, "missed_calls": 0, "acc_cdrs": 1},
        expect_sip_messages=17),
    Scenario(
        "missed-early-busy-486",
        "busy-486 with the flags set before routing: 180, 486 from the UAS, ACK.",
        "A relayed 486 is one missed call, not two: acc resets the missed-call flag when it "
        "writes the row on the branch failure, so the reply sent upstream adds nothing.",
        uac="uac-busy.xml", uas="uas-busy.xml", user="busy", defines=("WITH_MISSED_EARLY",),
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1},
        expect_sip_messages=10),
    Scenario(
        "missed-early-no-answer-408",
        "no-answer-408 with the flags set before routing: 100, INVITE retransmissions downstream, "
        "408 from the proxy at fr_timer (30 s); ACK.",
        "The proxy's own 408 on its timer is one missed call, as in stock.",
        uac="uac-no-answer.xml", uas=None, user="silent", sipp_timeout_s=45,
        defines=("WITH_MISSED_EARLY",),
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1}),
    # ---- serial forking: failure_route relays to a second UAS after the first failed
    Scenario(
        "serial-reject",
        "INVITE to the busy UAS (100, 180, 486, ACK from the proxy), then from failure_route to "
        "a second UAS that answers 404 (ACK); the caller gets the 404.",
        "Stock flags: acc writes the missed call when the first attempt fails and resets the "
        "flag, so the row is the 486 of the first branch, not the 404 the caller got.",
        uac="uac-notfound.xml", uas="uas-busy.xml", user="serialreject",
        uas2=("uas-notfound.xml", "notfound"),
        expect_rows={"acc": 0, "missed_calls": 1, "acc_cdrs": 1}),
    Scenario(
        "serial-answer",
        "INVITE to the busy UAS (180, 486), then from failure_route to a UAS that answers "
        "(180, 200); 2 s talk, caller BYE.",
        "A call answered on its second attempt still has a missed_calls row for the first "
        "(stock flags), besides its acc INVITE and BYE rows.",
        uac="uac-serial-call.xml", uas="uas-busy.xml", user="serialanswer",
        uas2=("uas-answer.xml", "uas"),
        expect_rows={"acc": 2, "missed_calls": 1, "acc_cdrs": 1}),
    Scenario(
        "missed-per-branch-serial-reject",
        "serial-reject with failure_route setting the missed-call flag again before relaying.",
        "One missed_calls row per failed attempt: the 486 and the 404 "
        "(sipprobe --missed-per-branch).",
        uac="uac-notfound.xml", uas="uas-busy.xml", user="serialreject",
        uas2=("uas-notfound.xml", "notfound"), defines=("WITH_MISSED_PER_BRANCH",),
        expect_rows={"acc": 0, "missed_calls": 2, "acc_cdrs": 1}),
    Scenario(
        "missed-per-branch-serial-answer",
        "serial-answer with failure_route setting the missed-call flag again before relaying.",
        "The answered second attempt adds no missed row: one for the 486, acc INVITE and BYE.",
        uac="uac-serial-call.xml", uas="uas-busy.xml", user="serialanswer",
        uas2=("uas-answer.xml", "uas"), defines=("WITH_MISSED_PER_BRANCH",),
        expect_rows={"acc": 2, "missed_calls": 1, "acc_cdrs": 1}),
]


# ---------------------------------------------------------------- helpers

def user_ports() -> dict[str, int]:
    """User -> UAS port, read from kamailio.cfg so there is one source of truth."""
    text = KAMAILIO_CFG.read_text()
    ports = {u: int(p) for u, p in
             re.findall(r'case\s+"([^"]+)":\s*\$var\(port\)\s*=\s*(\d+)', text)}
    if not ports:
        raise LabError(f"no user -> port table found in {KAMAILIO_CFG}")
    return ports


def tool_versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        lines = [l.strip() for l in (out.stdout + out.stderr).splitlines() if l.strip()]
        return lines[0] if lines else "unknown"

    def pkg(name: str) -> str:
        return first_line(["dpkg-query", "-W", "-f", "${Version}", name])

    return {
        "kamailio": f"{first_line(['kamailio', '-v'])} (Debian package {pkg('kamailio')}, "
                    f"kamailio-sqlite-modules {pkg('kamailio-sqlite-modules')})",
        "sipp": f"{first_line(['sipp', '-v'])} (Debian package sip-tester {pkg('sip-tester')})",
        "tcpdump": first_line(["tcpdump", "--version"]),
        "tshark": first_line(["tshark", "--version"]) if shutil.which("tshark") else "not installed",
    }


def check_tools() -> str | None:
    """None if the lab can run, else what is missing and how to get it."""
    missing = [t for t in ("kamailio", "sipp", "tcpdump") if shutil.which(t) is None]
    if missing:
        return (f"missing tool(s): {', '.join(missing)}. Install with:\n"
                "  apt-get install -y kamailio kamailio-sqlite-modules sip-tester tcpdump sqlite3 tshark")
    if not list(Path("/usr/lib").glob("*/kamailio/modules/db_sqlite.so")) and \
            not Path("/usr/lib/kamailio/modules/db_sqlite.so").exists():
        return ("Kamailio's db_sqlite module is missing: "
                "apt-get install -y kamailio-sqlite-modules")
    for f in (KAMAILIO_CFG, SCHEMA_SQL):
        if not f.exists():
            return f"{f} is missing"
    return None


def sipp_rc_text(rc: int | None) -> str:
    return {None: "killed after timeout", 0: "all calls succeeded",
            1: "at least one call failed", 97: "exit on internal command",
            99: "normal exit without calls processed", 255: "fatal error",
            254: "fatal error binding a socket"}.get(rc, f"exit status {rc}")


# ------------------------------------------------------------ the oracle

# ------------------------------------------------------------ one scenario

def run_scenario(sc: Scenario, out_root: Path, ports: dict[str, int], versions: dict,
                 invocation: str, keep_tmp: bool, netns: bool) -> dict:
    if sc.uas is not None and sc.user not in ports:
        raise LabError(f"{sc.name}: user {sc.user!r} has no UAS port in kamailio.cfg")
    if sc.uas is None and sc.user in ports and sc.name not in SLOW:
        raise LabError(f"{sc.name}: user {sc.user!r} must be unknown to the proxy")
    tmp = Path(tempfile.mkdtemp(prefix=f"sipprobe-lab-{sc.name}-", dir=tmp_parent()))
    db, pcap = tmp / "acc.db", tmp / "capture.pcap"
    procs: list[Proc] = []
    problems: list[str] = []
    commands: list[str] = []
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    ok = False
    try:
        create_db(db)
        kam_argv = ["kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E",
                    "-A", f'DBURL="sqlite:///{db}"']   # sqlite:// + /abs/path = 4 slashes
        for name in sc.defines:
            kam_argv += ["-A", name]
        kam = Proc("kamailio", kam_argv, tmp, tmp / "kamailio.log")
        procs.append(kam)
        commands.append(shlex.join(kam_argv))
        wait_kamailio(kam)

        td, td_lines, td_reader = start_tcpdump(pcap, tmp)
        procs.append(td)
        commands.append(shlex.join(td.argv))

        common = ["-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin",
                  "-timeout", f"{sc.sipp_timeout_s}s", "-timeout_error",
                  "-trace_err", "-trace_msg", "-s", sc.user, "-m", str(sc.calls)]
        uas = None
        if sc.uas:
            uas_argv = ["sipp", "-sf", str(SCEN_DIR / sc.uas), "-p", str(ports[sc.user]),
                        "-mp", str(UAS_MEDIA_PORT), *common]
            uas = Proc("sipp-uas", uas_argv, tmp, tmp / "sipp-uas.out")
            procs.append(uas)
            commands.append(shlex.join(uas_argv))
            wait_udp_port(ports[sc.user], 10)
        uas2 = None
        if sc.uas2:
            file2, user2 = sc.uas2
            uas2_argv = ["sipp", "-sf", str(SCEN_DIR / file2), "-p", str(ports[user2]),
                         "-mp", str(UAS_MEDIA_PORT + 100), *common]
            uas2 = Proc("sipp-uas2", uas2_argv, tmp, tmp / "sipp-uas2.out")
            procs.append(uas2)
            commands.append(shlex.join(uas2_argv))
            wait_udp_port(ports[user2], 10)

        uac_argv = ["sipp", "-sf", str(SCEN_DIR / sc.uac), "-p", str(UAC_PORT),
                    "-mp", str(UAC_MEDIA_PORT), "-t", sc.transport,
                    "-d", str(sc.talk_ms), *common]
        if sc.rate:
            uac_argv += ["-r", str(sc.rate)]
        uac_argv.append(f"{PROXY[0]}:{PROXY[1]}")
        uac = Proc("sipp-uac", uac_argv, tmp, tmp / "sipp-uac.out")
        procs.append(uac)
        commands.append(shlex.join(uac_argv))

        rc_uac = uac.wait(sc.sipp_timeout_s + WAIT_SLACK_S)
        if rc_uac is None:
            uac.stop(signal.SIGTERM)
        if rc_uac != 0:
            problems.append(f"SIPp UAC: {sipp_rc_text(rc_uac)}")
        if uas is not None:
            # the UAS ends on its own after its last message (+ timewait)
            rc_uas = uas.wait(WAIT_SLACK_S if rc_uac == 0 else 1)
            if rc_uas is None:
                uas.stop(signal.SIGTERM)
            if rc_uas != 0:
                problems.append(f"SIPp UAS: {sipp_rc_text(rc_uas)}")
        if uas2 is not None:
            rc_uas2 = uas2.wait(WAIT_SLACK_S if rc_uac == 0 else 1)
            if rc_uas2 is None:
                uas2.stop(signal.SIGTERM)
            if rc_uas2 != 0:
                problems.append(f"SIPp second UAS: {sipp_rc_text(rc_uas2)}")

        time.sleep(LINGER_S)
        td.stop(signal.SIGINT)    # SIGINT: tcpdump flushes and prints its counters
        td_reader.join(5)
        drops = [l for l in td_lines if "dropped by kernel" in l]
        if drops and not drops[0].startswith("0 "):
            problems.append(f"tcpdump: {drops[0]}")
        kam_rc = kam.stop(signal.SIGTERM)
        if kam_rc not in (0, -signal.SIGTERM):
            problems.append(f"kamailio exited with status {kam_rc}")
        for p in procs:
            p.stop()
        if problems:
            # a broken run must not overwrite a good oracle
            raise LabError("; ".join(problems))

        tables = dump_tables(db)
        counts = {t: len(tables[t]["rows"]) for t in TABLES}
        for t, n in sc.expect_rows.items():
            if counts[t] != n:
                problems.append(f"table {t}: {counts[t]} rows, expected {n}")
        kam_log = (tmp / "kamailio.log").read_text(errors="replace")
        for bad in ("database is locked", "failed to insert", "db_sqlite"):
            hits = [l for l in kam_log.splitlines() if bad in l and ("ERROR" in l or "WARN" in l)]
            if hits:
                problems.append(f"kamailio log: {hits[0].strip()}")

        sipstat, n_sip = tshark_sip_stat(pcap)
        if sc.expect_sip_messages is not None and n_sip is not None \
                and n_sip != sc.expect_sip_messages:
            problems.append(f"capture: {n_sip} SIP messages, expected {sc.expect_sip_messages}")

        elapsed = time.monotonic() - t0
        write_outputs(sc, out_root, tmp, tables, counts, versions, invocation, commands,
                      started, elapsed, sipstat, problems, netns)
        ok = not problems
        return {"name": sc.name, "ok": ok, "counts": counts, "problems": problems,
                "seconds": elapsed, "pcap_bytes": pcap.stat().st_size, "sip_messages": n_sip}
    except LabError as e:
        if str(e) != "; ".join(problems):
            problems.append(str(e))
        return {"name": sc.name, "ok": False, "counts": None, "problems": problems,
                "seconds": time.monotonic() - t0, "pcap_bytes": None, "sip_messages": None}
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGKILL if p.p.poll() is None else signal.SIGTERM, 2)
        if ok and not keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            problems.append(f"logs kept in {tmp}")


def write_outputs(sc: Scenario, out_root: Path, tmp: Path, tables: dict, counts: dict,
                  versions: dict, invocation: str, commands: list[str],
                  started: dt.datetime, elapsed: float, sipstat: str | None,
                  problems: list[str], netns: bool) -> None:
    d = out_root / f"lab-{sc.name}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp / "capture.pcap", d / "capture.pcap")
    shutil.copyfile(tmp / "kamailio.log", d / "kamailio.log")
    doc = {
        "scenario": sc.name,
        "summary": sc.summary,
        "kamailio_defines": list(sc.defines),
        "generated_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions,
        "time_columns_note": (
            "Raw <col> is db_sqlite's REAL Julian day. db_sqlite stores JD(time_t - 0.5 s), "
            "so <col>_epoch = round(86400*(jd-2440587.5) + 0.5) is the proxy's clock in "
            "whole seconds (truncated, not rounded, from the event time), <col>_utc the same "
            "as ISO 8601 UTC, and <col>_epoch_literal the plain JD conversion "
            "(= <col>_epoch - 0.5)."),
        "counts": counts,
        "tables": tables,
    }
    (d / "kamailio-acc.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")

    lines = [
        f"# lab-{sc.name}",
        "",
        f"**What happens:** {sc.summary}",
        "",
        f"**What it shows:** {sc.proves}",
        "",
        f"- UAC scenario: `lab/scenarios/{sc.uac}` (user `{sc.user}`, transport `{sc.transport}`, "
        f"{sc.calls} call(s){f', {sc.rate}/s' if sc.rate else ''}, -d {sc.talk_ms} ms)",
        "- UAS scenario: " + (f"`lab/scenarios/{sc.uas}`" if sc.uas else
                               "none, the proxy answers (user unknown to `route[LOOKUP]`)")
        + (f"; second UAS (serial forking from failure_route): `lab/scenarios/{sc.uas2[0]}`"
           if sc.uas2 else ""),
        "- Proxy: `lab/kamailio.cfg`"
        + (f" with {', '.join(f'`-A {d}`' for d in sc.defines)}" if sc.defines else "")
        + ", schema `lab/schema.sql`",
        f"- Generated: {started.strftime('%Y-%m-%d %H:%M:%S UTC')} in {elapsed:.1f} s, "
        + ("inside a private network namespace (unshare --net)" if netns else "on the host loopback"),
        "",
        "## Produced by",
        "",
        "```",
        f"cd {REPO_DIR} && {invocation}",
        "```",
        "",
        f"(this scenario alone: `python3 lab/run_lab.py --only {sc.name}`), which ran, in this order (temporary paths are per run):",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Versions",
        "",
        *[f"- {k}: {v}" for k, v in versions.items()],
        "",
        "## Files",
        "",
        "- `capture.pcap`: everything on `lo` (udp or tcp, snaplen 0) while the calls ran",
        "- `kamailio-acc.json`: every row and column of acc, missed_calls, acc_cdrs "
        "(times also as epoch / ISO UTC, see `time_columns_note`)",
        "- `kamailio.log`: Kamailio's stderr; the `ACC:` and `log_write_cdr()` lines repeat "
        "the rows, the CDR line with millisecond times",
        "",
        "## Rows Kamailio wrote",
        "",
        "| table | rows |",
        "| --- | --- |",
        *[f"| {t} | {n} |" for t, n in counts.items()],
        "",
    ]
    for t in TABLES:
        rows = tables[t]["rows"]
        if not rows:
            continue
        cols = [c for c in tables[t]["columns"] if c not in tables[t]["time_columns"]]
        cols = [c for c in cols if c != "id"]
        tcols = [f"{c}_utc" for c in tables[t]["time_columns"]]
        shown = rows if len(rows) <= 6 else rows[:6]
        lines += [f"### {t}" + (f" (first 6 of {len(rows)})" if len(rows) > 6 else ""), "",
                  "| " + " | ".join(tcols + cols) + " |",
                  "|" + " --- |" * (len(tcols) + len(cols))]
        for r in shown:
            vals = [r[c] for c in tcols + cols]
            lines.append("| " + " | ".join("NULL" if v is None else str(v) for v in vals) + " |")
        lines.append("")
    if sipstat:
        lines += ["## tshark -q -z sip,stat -r capture.pcap", "", "```", sipstat, "```", ""]
    if problems:
        lines += ["## Problems in this run", "", *[f"- {p}" for p in problems], ""]
    (d / "README.md").write_text("\n".join(lines))


# ------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_DIR / "pcaps",
                    help="output root; each scenario goes to OUT/lab-<name>/ (default: pcaps/)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this scenario (repeatable, or comma-separated)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--no-netns", action="store_true",
                    help="use the host loopback instead of a private network namespace")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep each scenario's temporary dir (DB, SIPp logs)")
    args = ap.parse_args(argv)

    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name:22} {sc.summary}")
        return 0

    selected = [sc for sc in SCENARIOS if sc.name not in SLOW]
    if args.only:
        names = [n.strip() for o in args.only for n in o.split(",") if n.strip()]
        known = {sc.name for sc in SCENARIOS}
        unknown = [n for n in names if n not in known]
        if unknown:
            print(f"run_lab: unknown scenario(s): {', '.join(unknown)}; "
                  f"known: {', '.join(sorted(known))}", file=sys.stderr)
            return 2
        selected = [sc for sc in SCENARIOS if sc.name in names]

    err = check_tools()
    if err:
        print(f"run_lab: {err}", file=sys.stderr)
        return 2
    if not RTP_PCAP.exists() and any("rtp" in sc.uac for sc in selected):
        print(f"run_lab: {RTP_PCAP} (from sip-tester) is missing", file=sys.stderr)
        return 2

    in_netns = os.environ.get(NETNS_ENV) == "1"
    if not in_netns and not args.no_netns:
        rc = reexec_in_netns(__file__, argv)   # same cwd, so a relative --out still works
        if rc is not None:
            return rc
        log("cannot create a network namespace here; falling back to the host loopback")

    if in_netns:
        err = bring_lo_up()
        if err:
            print(f"run_lab: cannot bring lo up in the namespace: {err}", file=sys.stderr)
            return 2

    ports = user_ports()
    busy = ports_free([PROXY[1], UAC_PORT, UAC_MEDIA_PORT, UAS_MEDIA_PORT, *ports.values()])
    if busy:
        print(f"run_lab: ports already in use on 127.0.0.1: {', '.join(busy)} "
              "(another Kamailio/SIPp running?)", file=sys.stderr)
        return 2

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    versions = tool_versions()
    invocation = shlex.join(["python3", "lab/run_lab.py", *argv])
    log(f"{len(selected)} scenario(s) -> {out} "
        f"({'network namespace' if in_netns else 'host loopback'})")
    log(f"{versions['kamailio']}; {versions['sipp']}")

    t0 = time.monotonic()
    results = []
    for sc in selected:
        if time.monotonic() - t0 > RUN_BUDGET_S:
            results.append({"name": sc.name, "ok": False, "counts": None, "seconds": 0.0,
                            "pcap_bytes": None, "sip_messages": None,
                            "problems": [f"skipped: run exceeded {RUN_BUDGET_S} s"]})
            log(f"--- {sc.name}: SKIPPED, run exceeded {RUN_BUDGET_S} s")
            continue
        log(f"--- {sc.name}: {sc.summary}")
        res = run_scenario(sc, out, ports, versions, invocation, args.keep_tmp, in_netns)
        results.append(res)
        c = res["counts"]
        status = "ok" if res["ok"] else "FAILED"
        log(f"    {status} in {res['seconds']:.1f} s"
            + (f"; acc={c['acc']} missed_calls={c['missed_calls']} acc_cdrs={c['acc_cdrs']}"
               f"; {res['sip_messages']} SIP msgs; pcap {res['pcap_bytes']} bytes" if c else ""))
        for p in res["problems"]:
            log(f"    ! {p}")

    total = time.monotonic() - t0
    failed = [r["name"] for r in results if not r["ok"]]
    print()
    print(f"{'scenario':22} {'acc':>4} {'missed':>6} {'cdrs':>5} {'sip':>5} {'pcap B':>8} {'s':>5}  status")
    for r in results:
        c = r["counts"] or {}
        print(f"{r['name']:22} {c.get('acc', '-'):>4} {c.get('missed_calls', '-'):>6} "
              f"{c.get('acc_cdrs', '-'):>5} {str(r['sip_messages'] or '-'):>5} "
              f"{str(r['pcap_bytes'] or '-'):>8} {r['seconds']:5.1f}  {'ok' if r['ok'] else 'FAILED'}")
    print(f"total wall time {total:.1f} s")
    if failed:
        print(f"run_lab: scenario(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
