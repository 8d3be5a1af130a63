"""The operator's console through the installed `sipprobe` command on real captures: filters,
tables that never break a value, streaming, summary figures against Kamailio's own rows and
tshark, the call list, charts (bar heights read back), CLI manners (version, -h, pipes, errors).
Expected values come from pcaps/lab-*/kamailio-acc.json or tshark, never from sipprobe."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shared_pcaps import require_tshark, shared

ROOT = Path(__file__).resolve().parents[1]
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable))
# the lab captures whose calls Kamailio wrote a CDR for (lab-no-bye's call never ended; the
# stateless 403 of lab-missed-early-blocked-403 created no dialog, sipprobe writes a "rejected")
LAB = sorted(p for p in (ROOT / "pcaps").glob("lab-*")
             if p.name not in ("lab-no-bye", "lab-missed-early-blocked-403")
             and not p.name.startswith("lab-media"))


def run(*args, env=None, check=True):
    r = subprocess.run([SIPPROBE, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def kamailio(table: str, dirs=LAB) -> list[dict]:
    return [row for d in dirs for row in
            json.loads((d / "kamailio-acc.json").read_text())["tables"][table]["rows"]]


def tshark(capture: str, fields: list[str], display: str) -> list[list[str]]:
    out = subprocess.run([require_tshark(), "-r", capture, "-Y", display, "-T", "fields",
                          *sum((["-e", f] for f in fields), [])], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def lab_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("console") / "lab.db")
    run("replay", *[str(d / "capture.pcap") for d in LAB], "--db", db, "--proxy",
        "127.0.0.1:5060")
    return db


@pytest.fixture(scope="module")
def public_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("console") / "public.db")
    run("replay", shared("sngrep_aaa-sip-rtp-cancel-auth.pcap"),
        shared("voipshark_sip-rtp-b2bua-call-rtcp.pcap"), "--db", db)
    return db


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# --- summary against Kamailio and tshark -----------------------------------------------------

def test_summary_figures_are_kamailios_calls_and_tsharks_talk_time(lab_db):
    cdrs = kamailio("acc_cdrs")
    answered = [r for r in cdrs if (r["sip_code"] or "").startswith("2")]
    got = json.loads(run("report", "summary", "--db", lab_db, "--format", "json").stdout)
    assert (got["calls"], got["answered"]) == (len(cdrs), len(answered))
    assert got["asr"] == round(100 * len(answered) / len(cdrs), 2)
    # NER: 486 busy, 487 cancelled and 404 not found are the users'; the proxy's own reply
    # (sip_code NULL in acc_cdrs, as Kamailio writes it) cannot be told apart: the network's
    users = sum((r["sip_code"] or "").startswith("2") or r["sip_code"] in ("486", "487", "404")
                for r in cdrs)
    assert any(r["sip_code"] is None for r in cdrs)
    assert got["ner"] == round(100 * users / len(cdrs), 2)
    assert got["mos_avg"] is None  # no quality table yet
    # talk time of every answered call: tshark's 2xx of the INVITE to the BYE, upstream leg
    talk = []
    for d in LAB:
        cap = str(d / "capture.pcap")
        ok = {c: float(t) for t, c in tshark(cap, ["frame.time_epoch", "sip.Call-ID"],
                                             "sip.Status-Code == 200 && sip.CSeq.method == "
                                             "\"INVITE\" && udp.srcport == 5060 || "
                                             "sip.Status-Code == 200 && sip.CSeq.method == "
                                             "\"INVITE\" && tcp.srcport == 5060")[::-1]}
        bye = {}
        for t, c in tshark(cap, ["frame.time_epoch", "sip.Call-ID"], "sip.Method == \"BYE\""):
            bye.setdefault(c, float(t))  # the first copy: as it reached the proxy
        talk += [bye[c] - ok[c] for c in ok if c in bye]
    assert len(talk) == len(answered)
    assert got["acd"] == pytest.approx(sum(talk) / len(talk), abs=0.01)
    assert got["minutes"] == pytest.approx(sum(talk) / 60, abs=0.01)
    # Kamailio's own duration includes the ringing: ACD from it would be longer
    assert sum(r["duration"] for r in answered) / len(answered) > got["acd"]
    codes = Counter(r["sip_code"] or "-" for r in cdrs if not (r["sip_code"] or "").startswith("2"))
    assert {f["code"]: f["calls"] for f in got["failures"]} == dict(codes)


def test_summary_by_code_and_day_tables(lab_db):
    out = run("report", "summary", "--db", lab_db, "--by", "code", "--format", "csv").stdout
    by_code = {r["code"]: int(r["calls"]) for r in csv_rows(out)}
    assert by_code == dict(Counter(r["sip_code"] or "-" for r in kamailio("acc_cdrs")))
    table = run("report", "summary", "--db", lab_db, "--by", "day").stdout
    assert "ASR: " in table and "\n2026-11-23 " in table


def test_pdd_percentiles_are_tsharks_ringing_delay(tmp_path):
    cap = ROOT / "pcaps/lab-ringing-then-answer/capture.pcap"
    db = str(tmp_path / "r.db")
    run("replay", str(cap), "--db", db, "--proxy", "127.0.0.1:5060")
    invite = float(tshark(str(cap), ["frame.time_epoch"], "sip.Method == \"INVITE\"")[0][0])
    ring = float(tshark(str(cap), ["frame.time_epoch"], "sip.Status-Code == 180")[-1][0])
    got = json.loads(run("report", "summary", "--db", db, "--format", "json").stdout)
    assert got["pdd_p50"] == pytest.approx(ring - invite, abs=0.002)


def test_sdd_percentiles_are_tsharks_bye_to_2xx(lab_db):
    """RFC 6076 SDD per completed call: the first BYE seen to the 2xx the proxy relayed back
    to its sender (the caller's BYE, and the callee's in lab-callee-bye)."""
    delays = []
    for lab in LAB:
        rows = tshark(str(lab / "capture.pcap"), ["sip.Call-ID", "frame.time_epoch",
                                                  "sip.Method", "sip.Status-Code", "udp.srcport"],
                      'sip.CSeq.method == "BYE"')
        for callid in {r[0] for r in rows}:
            msgs = [r for r in rows if r[0] == callid]
            bye = min(float(r[1]) for r in msgs if r[2] == "BYE")
            relayed = [float(r[1]) for r in msgs if r[3].startswith("2") and r[4] == "5060"]
            if relayed:
                delays.append(max(relayed) - bye)
    delays.sort()
    got = json.loads(run("report", "summary", "--db", lab_db, "--format", "json").stdout)
    from store.summary import nearest_rank
    assert len(delays) > 20
    for p in (50, 90, 99):
        assert got[f"sdd_p{p}"] == pytest.approx(nearest_rank(delays, p), abs=0.0011)


# --- CDR columns a billing clerk can use --------------------------------------------------------

def test_talk_time_and_a_cancel_answered_408(public_db):
    rows = {r["callid"]: r for r in csv_rows(run("report", "cdrs", "--db", public_db,
                                                 "--format", "csv").stdout)}
    cap = shared("voipshark_sip-rtp-b2bua-call-rtcp.pcap")
    callid = "3cfe1c77155241bb89eb003ab8e2f87b"
    ok = float(tshark(cap, ["frame.time_epoch"], f"sip.Call-ID == \"{callid}\" && "
                      "sip.Status-Code == 200 && sip.CSeq.method == \"INVITE\"")[0][0])
    bye = float(tshark(cap, ["frame.time_epoch"],
                       f"sip.Call-ID == \"{callid}\" && sip.Method == \"BYE\"")[0][0])
    row = rows[callid]
    assert float(row["talk_time"]) == pytest.approx(bye - ok, abs=0.001)
    assert float(row["duration"]) == pytest.approx(
        float(row["ring_duration"]) + float(row["talk_time"]), abs=0.002)
    assert row["talk_time"].count(".") == 1 and len(row["talk_time"].split(".")[1]) == 3
    # the caller's CANCEL (its Via without a port) answered 408: cancelled, by the caller
    cap = shared("sngrep_aaa-sip-rtp-cancel-auth.pcap")
    callid = "105090259-446faf7a@192.168.1.2"
    times = tshark(cap, ["frame.time_epoch", "sip.Method"], f"sip.Call-ID == \"{callid}\" && "
                   "(sip.Method == \"INVITE\" || sip.Method == \"CANCEL\")")
    invite = float(next(t for t, m in times if m == "INVITE"))
    cancel = float(next(t for t, m in times if m == "CANCEL"))
    row = rows[callid]
    assert (row["sip_code"], row["end_reason"], row["ended_by"]) == ("408", "cancelled", "caller")
    assert float(row["ring_duration"]) == pytest.approx(cancel - invite, abs=0.001)


# --- filters ----------------------------------------------------------------------------------

def test_user_matches_numbers_whatever_their_prefix(public_db):
    dialled = {r[0] for r in tshark(shared("sngrep_aaa-sip-rtp-cancel-auth.pcap"),
                                    ["sip.r-uri.user"], "sip.Method == \"INVITE\"")}
    want = {u for u in dialled if u.lstrip("+0") == "97239287044"}
    assert want >= {"0097239287044", "97239287044"}
    for query in ("97239287044", "+97239287044", "0097239287044", "9287044"):
        got = csv_rows(run("report", "cdrs", "--db", public_db, "--user", query,
                           "--format", "csv").stdout)
        assert got and {r["dst_user"] for r in got} == want, query


def test_method_in_any_case_ip_and_relative_times(lab_db):
    byes = [r for r in kamailio("acc") if r["method"] == "BYE"]
    for method in ("bye", "BYE", "Bye"):
        got = csv_rows(run("report", "acc", "--db", lab_db, "--method", method,
                           "--format", "csv").stdout)
        assert len(got) == len(byes)
    assert len(csv_rows(run("report", "acc", "--db", lab_db, "--ip", "127.0.0.2",
                            "--format", "csv").stdout)) == \
        sum(r["src_ip"] == "127.0.0.2" or r["dst_domain"] == "127.0.0.2"
            for r in kamailio("acc"))
    # "7d" against Kamailio's own times: most captures are from 2026-11-23, the script-variant
    # ones from 2026-12-06
    recent = sum(r["time_epoch"] >= time.time() - 7 * 86400 for r in kamailio("acc"))
    if recent:
        assert len(csv_rows(run("report", "acc", "--db", lab_db, "--since", "7d",
                                "--format", "csv").stdout)) == recent < len(kamailio("acc"))
    else:
        assert run("report", "acc", "--db", lab_db, "--since", "7d").stdout == "no rows\n"
    assert len(csv_rows(run("report", "acc", "--db", lab_db, "--since", "3650d",
                            "--format", "csv").stdout)) == len(kamailio("acc"))
    ndjson = run("report", "acc", "--db", lab_db, "--format", "ndjson").stdout.splitlines()
    assert [json.loads(line)["callid"] for line in ndjson] == \
        [r["callid"] for r in csv_rows(run("report", "acc", "--db", lab_db,
                                           "--format", "csv").stdout)]


# --- tables that never break a value; streaming ------------------------------------------------

def test_narrow_table_cuts_text_never_numbers_times_or_addresses(public_db):
    csv_out = csv_rows(run("report", "cdrs", "--db", public_db, "--format", "csv").stdout)
    table = run("report", "cdrs", "--db", public_db, env={"COLUMNS": "80"}).stdout.splitlines()
    body = table[2:]
    assert len(body) == len(csv_out)  # one line a call: nothing wrapped
    for line, row in zip(body, csv_out):
        assert line.startswith(row["start_time"] + " ")
        assert f" {row['duration']} " in line and f" {row['talk_time']} " in line
    assert any("…" in line for line in body)  # Call-IDs cut with the marker
    wide = run("report", "cdrs", "--db", public_db, "--wide",
               env={"COLUMNS": "80"}).stdout
    assert all(r["callid"] in wide for r in csv_out)
    assert "start_time (UTC)" in table[0]


def test_the_table_writes_its_first_line_before_the_rows_run_out():
    from console import output

    consumed = []

    def rows():
        for i in range(5000):
            consumed.append(i)
            yield (f"call-{i}", float(i))

    class Out(io.StringIO):
        first_at = None

        def write(self, s):
            if self.first_at is None:
                self.first_at = len(consumed)
            return super().write(s)

    out = Out()
    cols = [output.Column("callid"), output.Column("duration", numeric=True, precision=3)]
    assert output.write(rows(), cols, "table", out=out, width=None) == 5000
    assert out.first_at <= output.SAMPLE
    assert out.getvalue().splitlines()[-1].split() == ["call-4999", "4999.000"]


def test_table_default_limit_says_how_to_see_the_rest(tmp_path):
    db = str(tmp_path / "fraud.db")
    run("replay", shared("netfox_sip-fraud-901-invites.pcap"), "--db", db)
    lines = run("report", "missed", "--db", db).stdout.splitlines()
    assert len(lines) == 2 + 50 + 1 and lines[-1].startswith("(first 50 rows;")
    assert len(csv_rows(run("report", "missed", "--db", db, "--format", "csv").stdout)) > 50


# --- the call list ----------------------------------------------------------------------------

def test_calls_list_and_one_calls_timeline(lab_db):
    rows = csv_rows(run("report", "calls", "--db", lab_db, "--format", "csv").stdout)
    assert len(rows) == len(kamailio("acc_cdrs"))
    assert list(rows[0])[:4] == ["start_time", "src_user", "dst_user", "sip_code"]
    busy = next(r for r in kamailio("acc_cdrs") if r["sip_code"] == "486")
    out = run("report", "calls", "--db", lab_db, "--callid", busy["callid"]).stdout
    assert "INVITE alice@" in out and "rejected 486 Busy Here, ended by callee" in out
    assert "missed_calls row: INVITE CSeq 1 -> 486 Busy Here" in out


def test_timeline_with_capture_lists_every_sip_message_and_rtcp_report(tmp_path):
    """Every SIP frame of the call as tshark lists it, in order, and every RTCP report block
    the store bound to it."""
    cap = str(ROOT / "pcaps" / "lab-media-loss-5" / "capture.pcap")
    db = str(tmp_path / "media.db")
    run("replay", cap, "--db", db)
    [call] = csv_rows(run("report", "calls", "--db", db, "--format", "csv").stdout)
    out = run("report", "calls", "--db", db, "--callid", call["callid"], "--capture", cap).stdout
    frames = [(int(line.split()[3]), line.split()[8]) for line in out.splitlines()
              if line.split()[2:3] == ["frame"]]
    want = [(int(f), m or c) for f, m, c in tshark(
        cap, ["frame.number", "sip.Method", "sip.Status-Code"],
        f'sip.Call-ID == "{call["callid"]}"')]
    assert frames == want and len(want) == 13  # both legs: INVITE 100 INVITE 180 180 200 200 ACK ACK BYE BYE 200 200
    reports = csv_rows(run("report", "quality", "--db", db, "--format", "csv").stdout)
    rtcp = [line for line in out.splitlines() if " RTCP " in line]
    blocks = sqlite3.connect(db).execute(
        "SELECT count(*) FROM rtcp_reports WHERE callid = ?", (call["callid"],)).fetchone()[0]
    assert len(rtcp) == blocks > 0 and reports
    assert {line.split(" side ")[1][0] for line in rtcp} == {"A", "B"}


# --- charts -----------------------------------------------------------------------------------

def test_calls_chart_bars_are_kamailios_calls_per_hour(lab_db, tmp_path):
    from console import charts
    from store.query import Filters

    data = charts.calls_per_hour(lab_db, Filters())
    fig = charts.figure(data)
    ax = fig.axes[0]
    bars = ax.containers
    heights = {name: [p.get_height() for p in c] for name, c in zip(data.series, bars)}
    labels = [t.get_text() for t in ax.get_xticklabels()]
    want = Counter()
    for r in kamailio("acc_cdrs"):
        hour = r["start_time_utc"][:13].replace("T", " ") + ":00"
        want[hour, (r["sip_code"] or "").startswith("2")] += 1
    hours = sorted({h for h, _ in want})
    assert labels == hours
    assert heights == {"answered": [want[h, True] for h in hours],
                       "failed": [want[h, False] for h in hours]}
    png = tmp_path / "calls.png"
    run("report", "chart", "calls", "--db", lab_db, "--png", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    term = run("report", "chart", "calls", "--db", lab_db, env={"COLUMNS": "100"}).stdout
    assert "Calls per hour (UTC)" in term and "2026-11-23 10:00" in term and "\x1b[" not in term


# --- CLI manners --------------------------------------------------------------------------------

def test_version_short_help_and_examples_everywhere():
    assert run("--version").stdout.startswith("sipprobe ")
    assert "Usage: sipprobe" in run("-h").stdout
    for words in (["replay"], ["sniff"], ["stats"], ["report", "summary"], ["report", "calls"],
                  ["report", "chart"], ["report", "cdrs"], ["filter"], ["mos"]):
        assert "Example: " in run(*words, "--help").stdout, words


def test_a_pipe_closed_early_exits_0(lab_db):
    for args in (["replay", str(LAB[0] / "capture.pcap"), "--db", lab_db],
                 ["report", "acc", "--db", lab_db, "--format", "csv"]):
        p = subprocess.run(f"{SIPPROBE} {' '.join(args)} | head -1; exit ${{PIPESTATUS[0]}}",
                           shell=True, executable="/bin/bash", capture_output=True, text=True,
                           timeout=60)
        assert (p.returncode, p.stderr) == (0, ""), args


def test_database_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    foreign = tmp_path / "kam.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE location (id INTEGER)")
    con.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    for db in (tmp_path / "missing.db", foreign, text):
        r = run("report", "summary", "--db", str(db), check=False)
        assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
        assert "unable to open" not in r.stderr and "Traceback" not in r.stderr


def test_empty_csv_ends_with_a_newline(tmp_path):
    db = str(tmp_path / "e.db")
    run("replay", str(LAB[0] / "capture.pcap"), "--db", db)
    out = run("report", "cdrs", "--db", db, "--format", "csv", "--code", "599").stdout
    assert out.endswith("\n") and out.count("\n") == 1


def test_tls_capture_says_the_signalling_looks_encrypted():
    out = run("stats", shared("voipshark_sip-tls-rtp-b2bua-call-rtcp.pcap")).stdout
    assert "SIP messages: 0" in out and "looks encrypted" in out


def test_ipv6_proxy_prints_as_proxy_takes_it(tmp_path):
    out = run("replay", shared("sngrep_ipv6-frag-sip-prack-update.pcap"), "--db",
              str(tmp_path / "v6.db"), "--proxy", "[2001:db8::1]:5060").stdout
    assert "proxies: [2001:db8::1]:5060" in out
