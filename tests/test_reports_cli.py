"""`sipprobe report acc|missed`: help, the exact output of every format, filters, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from store.writer import open_store
from test_store import (BUSY, BUSY_CDR, BYE, CALLEE_BYE, CDR, CDR_OPEN, INVITE, NOT_FOUND,
                        PROXY_404_CDR)

ROOT = Path(__file__).resolve().parents[1]
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable))
runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # one table row per line

HEADER = ("id,method,from_tag,to_tag,callid,sip_code,sip_reason,time,src_user,src_domain,src_ip,"
          "dst_ouser,dst_user,dst_domain,time_epoch,cseq\n")
ACC_CSV = HEADER + (
    "3,INVITE,11993SIPpTag001,11992SIPpTag011,1-11993@127.0.0.1,200,OK,2026-11-23 10:57:25,"
    "alice,sipprobe.lab,127.0.0.1,uas,uas,127.0.0.1,1795431445.123456,1\n"
    "2,BYE,11993SIPpTag001,11992SIPpTag011,1-11993@127.0.0.1,200,OK,2026-11-23 10:57:27,"
    "alice,sipprobe.lab,127.0.0.1,uas,uas,127.0.0.1,1795431447.999999,2\n"
    "1,BYE,12017SIPpTag011,12018SIPpTag001,1-12018@127.0.0.1,200,OK,2026-11-23 10:57:31,"
    "byer,sipprobe.lab,127.0.0.1,alice,alice,127.0.0.1,1795431451.250000,1\n")
MISSED_CSV = HEADER + (
    "2,INVITE,12048SIPpTag001,12047SIPpTag011,1-12048@127.0.0.1,486,Busy Here,"
    "2026-11-23 10:57:33,alice,sipprobe.lab,127.0.0.1,busy,busy,127.0.0.1,1795431453.500000,1\n"
    "1,INVITE,12081SIPpTag001,12080SIPpTag011,1-12081@127.0.0.1,404,Not Found,"
    "2026-11-23 10:57:35,carol,sipprobe.lab,127.0.0.2,bob,bob-mobile,127.0.0.1,1795431455.750000,1\n")
MISSED_JSON = """\
[
  {
    "id": 2,
    "method": "INVITE",
    "from_tag": "12048SIPpTag001",
    "to_tag": "12047SIPpTag011",
    "callid": "1-12048@127.0.0.1",
    "sip_code": "486",
    "sip_reason": "Busy Here",
    "time": "2026-11-23 10:57:33",
    "src_user": "alice",
    "src_domain": "sipprobe.lab",
    "src_ip": "127.0.0.1",
    "dst_ouser": "busy",
    "dst_user": "busy",
    "dst_domain": "127.0.0.1",
    "time_epoch": 1795431453.5,
    "cseq": 1
  },
  {
    "id": 1,
    "method": "INVITE",
    "from_tag": "12081SIPpTag001",
    "to_tag": "12080SIPpTag011",
    "callid": "1-12081@127.0.0.1",
    "sip_code": "404",
    "sip_reason": "Not Found",
    "time": "2026-11-23 10:57:35",
    "src_user": "carol",
    "src_domain": "sipprobe.lab",
    "src_ip": "127.0.0.2",
    "dst_ouser": "bob",
    "dst_user": "bob-mobile",
    "dst_domain": "127.0.0.1",
    "time_epoch": 1795431455.75,
    "cseq": 1
  }
]
"""
# the table keeps the columns that tell calls apart (store/tables.py: ACC.summary), text times
# labelled with their clock; lines are compared without their trailing blanks
MISSED_TABLE = """\
time (UTC)           method  sip_code  sip_reason  src_user  dst_ouser  dst_user    src_ip     callid
───────────────────  ──────  ────────  ──────────  ────────  ─────────  ──────────  ─────────  ─────────────────
2026-11-23 10:57:33  INVITE  486       Busy Here   alice     busy       busy        127.0.0.1  1-12048@127.0.0.1
2026-11-23 10:57:35  INVITE  404       Not Found   carol     bob        bob-mobile  127.0.0.2  1-12081@127.0.0.1
"""  # noqa: E501

CDR_HEADER = ("id,start_time,end_time,duration,callid,from_tag,to_tag,src_user,src_domain,"
              "src_ip,dst_ouser,dst_user,dst_domain,sip_code,sip_reason,start_epoch,end_epoch,"
              "created,ring_time,answer_time,setuptime,pdd,ended_by,end_reason,ring_duration,"
              "talk_time,mos_min,mos_side,mos_avg_a,mos_avg_b,mos_rtpengine_min\n")
CDRS_CSV = CDR_HEADER + (
    "2,2026-11-23 10:57:25,2026-11-23 10:57:26,1.377,1-11993@127.0.0.1,11993SIPpTag001"
    ",11992SIPpTag011,alice,sipprobe.lab,127.0.0.1,uas,uas,sipprobe.lab,200,OK"
    ",1795431445.123456,1795431446.500000,1795431445.123456,1795431445.125000,1795431445.130456"
    ",0.007,0.002,,open,0.007,1.370,,,,,\n"
    "3,2026-11-23 10:57:33,2026-11-23 10:57:33,0.000,1-12048@127.0.0.1,12048SIPpTag001"
    ",12047SIPpTag011,alice,sipprobe.lab,127.0.0.1,busy,busy,sipprobe.lab,486,Busy Here"
    ",1795431453.500000,1795431453.500000,1795431453.500000,,,,,callee,rejected,0.250,0.000,,,,,\n"
    "1,2026-11-23 10:57:35,2026-11-23 10:57:35,0.000,1-12081@127.0.0.1,12081SIPpTag001,,carol"
    ",sipprobe.lab,127.0.0.2,bob,bob,sipprobe.lab,,,1795431455.750000,1795431455.750000"
    ",1795431455.750000,,,,,proxy,rejected,0.002,0.000,,,,,\n")
CDRS_JSON = """\
[
  {
    "id": 2,
    "start_time": "2026-11-23 10:57:25",
    "end_time": "2026-11-23 10:57:26",
    "duration": 1.377,
    "callid": "1-11993@127.0.0.1",
    "from_tag": "11993SIPpTag001",
    "to_tag": "11992SIPpTag011",
    "src_user": "alice",
    "src_domain": "sipprobe.lab",
    "src_ip": "127.0.0.1",
    "dst_ouser": "uas",
    "dst_user": "uas",
    "dst_domain": "sipprobe.lab",
    "sip_code": "200",
    "sip_reason": "OK",
    "start_epoch": 1795431445.123456,
    "end_epoch": 1795431446.5,
    "created": 1795431445.123456,
    "ring_time": 1795431445.125,
    "answer_time": 1795431445.130456,
    "setuptime": 0.007,
    "pdd": 0.002,
    "ended_by": "",
    "end_reason": "open",
    "ring_duration": 0.007,
    "talk_time": 1.37,
    "mos_min": null,
    "mos_side": null,
    "mos_avg_a": null,
    "mos_avg_b": null,
    "mos_rtpengine_min": null
  },
  {
    "id": 3,
    "start_time": "2026-11-23 10:57:33",
    "end_time": "2026-11-23 10:57:33",
    "duration": 0.0,
    "callid": "1-12048@127.0.0.1",
    "from_tag": "12048SIPpTag001",
    "to_tag": "12047SIPpTag011",
    "src_user": "alice",
    "src_domain": "sipprobe.lab",
    "src_ip": "127.0.0.1",
    "dst_ouser": "busy",
    "dst_user": "busy",
    "dst_domain": "sipprobe.lab",
    "sip_code": "486",
    "sip_reason": "Busy Here",
    "start_epoch": 1795431453.5,
    "end_epoch": 1795431453.5,
    "created": 1795431453.5,
    "ring_time": null,
    "answer_time": null,
    "setuptime": null,
    "pdd": null,
    "ended_by": "callee",
    "end_reason": "rejected",
    "ring_duration": 0.25,
    "talk_time": 0.0,
    "mos_min": null,
    "mos_side": null,
    "mos_avg_a": null,
    "mos_avg_b": null,
    "mos_rtpengine_min": null
  },
  {
    "id": 1,
    "start_time": "2026-11-23 10:57:35",
    "end_time": "2026-11-23 10:57:35",
    "duration": 0.0,
    "callid": "1-12081@127.0.0.1",
    "from_tag": "12081SIPpTag001",
    "to_tag": null,
    "src_user": "carol",
    "src_domain": "sipprobe.lab",
    "src_ip": "127.0.0.2",
    "dst_ouser": "bob",
    "dst_user": "bob",
    "dst_domain": "sipprobe.lab",
    "sip_code": null,
    "sip_reason": null,
    "start_epoch": 1795431455.75,
    "end_epoch": 1795431455.75,
    "created": 1795431455.75,
    "ring_time": null,
    "answer_time": null,
    "setuptime": null,
    "pdd": null,
    "ended_by": "proxy",
    "end_reason": "rejected",
    "ring_duration": 0.002,
    "talk_time": 0.0,
    "mos_min": null,
    "mos_side": null,
    "mos_avg_a": null,
    "mos_avg_b": null,
    "mos_rtpengine_min": null
  }
]
"""
# a compact subset (store/tables.py: CDR.summary); an unset sip_code and ended_by are blank
CDRS_TABLE = """\
start_time (UTC)     duration  talk_time  sip_code  src_user  dst_user  ended_by  end_reason  callid
───────────────────  ────────  ─────────  ────────  ────────  ────────  ────────  ──────────  ─────────────────
2026-11-23 10:57:25     1.377      1.370  200       alice     uas                 open        1-11993@127.0.0.1
2026-11-23 10:57:33     0.000      0.000  486       alice     busy      callee    rejected    1-12048@127.0.0.1
2026-11-23 10:57:35     0.000      0.000            carol     bob       proxy     rejected    1-12081@127.0.0.1
"""  # noqa: E501


@pytest.fixture
def db(tmp_path) -> str:
    """Added out of time order: ids follow insertion, reports follow packet time."""
    path = str(tmp_path / "calls.db")
    with open_store(path) as store:
        for rec in (CALLEE_BYE, NOT_FOUND, BYE, BUSY, INVITE):
            store.add(rec)
    return path


@pytest.fixture
def cdr_db(tmp_path) -> str:
    """Out of start order: the open call, the busy one, the proxy's own 404."""
    path = str(tmp_path / "cdrs.db")
    with open_store(path) as store:
        for rec in (PROXY_404_CDR, CDR_OPEN, BUSY_CDR):
            store.add_cdr(rec)
    return path


def report(*args: str, env=None):
    return runner.invoke(app, ["report", *args], env=env, prog_name="sipprobe")


def unpadded(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


@pytest.mark.parametrize("command", [["report"], ["report", "acc"], ["report", "missed"],
                                     ["report", "cdrs"]])
def test_every_report_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"], prog_name="sipprobe")
    assert result.exit_code == 0
    assert "Example: sipprobe report " in result.output
    if len(command) == 2:
        own = "--end-reason REASON" if command[1] == "cdrs" else "--method"
        for option in ("--db FILE", "--since TIME", "--until TIME", "--callid", "--user",
                       own, "--code", "--limit N", "-f, --format <table|csv|json|ndjson>"):
            assert option in result.output


def test_cdrs_help_names_the_end_reasons():
    result = runner.invoke(app, ["report", "cdrs", "--help"], prog_name="sipprobe")
    text = " ".join(result.output.split())  # click wraps help at 78 columns
    assert "Example: sipprobe report cdrs --db sipprobe.db --end-reason completed --format csv" \
        in text
    assert "--end-reason REASON CDRs that ended so: completed, cancelled, rejected, expired, " \
        "open or unanswered." in text
    assert "--method" not in text


def test_report_is_listed_in_the_top_level_help():
    assert "report" in runner.invoke(app, ["--help"]).output


def test_acc_as_csv(db):
    result = report("acc", "--db", db, "--format", "csv")
    assert (result.exit_code, result.stdout, result.stderr) == (0, ACC_CSV, "")


def test_missed_as_csv_json_and_table(db):
    assert report("missed", "--db", db, "-f", "csv").stdout == MISSED_CSV
    assert report("missed", "--db", db, "-f", "json").stdout == MISSED_JSON
    result = report("missed", "--db", db, env=WIDE)  # table is the default
    assert result.exit_code == 0
    assert unpadded(result.stdout) == MISSED_TABLE


def test_acc_as_json_parses_back_to_the_csv_rows(db):
    rows = json.loads(report("acc", "--db", db, "-f", "json").stdout)
    def same(value, text):  # CSV prints floats to the microsecond
        return f"{value:.6f}" == text if isinstance(value, float) else str(value) == text
    lines = [line.split(",") for line in ACC_CSV.splitlines()[1:]]
    assert len(rows) == len(lines)
    assert all(same(v, t) for r, line in zip(rows, lines) for v, t in zip(r.values(), line))


def test_acc_table_shows_the_columns_that_tell_calls_apart(db):
    """Kamailio's names, a subset that fits a terminal; CSV and JSON carry every column."""
    out = report("acc", "--db", db, env=WIDE).stdout
    assert out.splitlines()[0].split() == [
        "time", "(UTC)", "method", "sip_code", "sip_reason", "src_user", "dst_ouser", "dst_user",
        "src_ip", "callid"]
    assert "1795431445.123456" not in out and len(out.splitlines()) == 5


@pytest.mark.parametrize("fmt, expected", [("csv", HEADER), ("json", "[]\n"),
                                           ("table", "no rows\n")])
def test_an_empty_result_is_not_an_error(db, fmt, expected):
    result = report("missed", "--db", db, "--code", "5xx", "--format", fmt)
    assert (result.exit_code, result.stdout) == (0, expected)


@pytest.mark.parametrize("args, expected", [
    (["acc", "--user", "byer"], [1]),
    (["acc", "--method", "BYE", "--limit", "1"], [2]),
    (["acc", "--callid", "1-11993@127.0.0.1"], [3, 2]),
    (["acc", "--since", "2026-11-23T10:57:26Z", "--until", "1795431451"], [2]),
    (["missed", "--code", "4xx"], [2, 1]),
    (["missed", "--code", "404"], [1]),
    (["missed", "--user", "bob"], [1]),
])
def test_filters(db, args, expected):
    result = report(*args, "--db", db, "-f", "json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == expected


def test_cdrs_as_csv_json_and_table(cdr_db):
    result = report("cdrs", "--db", cdr_db, "--format", "csv")
    assert (result.exit_code, result.stdout, result.stderr) == (0, CDRS_CSV, "")
    assert report("cdrs", "--db", cdr_db, "-f", "json").stdout == CDRS_JSON
    result = report("cdrs", "--db", cdr_db, env=WIDE)
    assert result.exit_code == 0
    assert unpadded(result.stdout) == CDRS_TABLE


def test_cdrs_report_shows_a_call_completed_by_a_later_run(cdr_db):
    with open_store(cdr_db) as store:
        store.add_cdr(CDR)
    rows = json.loads(report("cdrs", "--db", cdr_db, "--callid", CDR.callid, "-f", "json").stdout)
    assert [(r["id"], r["end_reason"], r["duration"], r["ended_by"]) for r in rows] == \
        [(2, "completed", 2.011, "caller")]


@pytest.mark.parametrize("args, expected", [
    (["--end-reason", "rejected"], [3, 1]),
    (["--end-reason", "open"], [2]),
    (["--end-reason", "cancelled"], []),
    (["--user", "alice", "--end-reason", "rejected"], [3]),
    (["--code", "4xx"], [3]),
    (["--code", "200"], [2]),
    (["--callid", "1-12081@127.0.0.1"], [1]),
    (["--since", "2026-11-23T10:57:30Z", "--until", "1795431455"], [3]),
    (["--limit", "2"], [2, 3]),
])
def test_cdrs_filters(cdr_db, args, expected):
    result = report("cdrs", *args, "--db", cdr_db, "-f", "json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == expected


def test_cdrs_bad_end_reason(cdr_db):
    result = report("cdrs", "--db", cdr_db, "--end-reason", "answered")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", "sipprobe: bad end reason 'answered': give completed, cancelled, rejected, "
               "expired, open or unanswered\n")


def test_cdrs_empty_as_csv_is_the_header(cdr_db):
    result = report("cdrs", "--db", cdr_db, "--end-reason", "expired", "-f", "csv")
    assert (result.exit_code, result.stdout) == (0, CDR_HEADER)


def test_the_default_database_is_sipprobe_db_in_the_working_directory(db, tmp_path, monkeypatch):
    os.rename(db, tmp_path / "sipprobe.db")
    monkeypatch.chdir(tmp_path)
    assert report("missed", "-f", "csv").stdout == MISSED_CSV


@pytest.mark.parametrize("args, message", [
    (["acc", "--db", "missing.db"],
     "sipprobe: no such database: missing.db: run `sipprobe replay CAPTURE --db missing.db` "
     "first\n"),
    (["missed", "--code", "4x"],
     "sipprobe: bad SIP code '4x': give three digits (486) or a class (4xx)\n"),
    (["acc", "--since", "last week"],
     "sipprobe: bad time 'last week': give a date (2026-11-23, 2026-11-23T10:57:25Z, "
     "2026-11-23 10:57:25+01:00), epoch seconds, a time ago (30m, 2h, 7d) or today / "
     "yesterday\n"),
])
def test_errors_say_how_to_fix_them(db, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if "--db" not in args:
        args = [*args, "--db", db]
    result = report(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)


def test_a_file_that_is_not_a_database(tmp_path):
    capture = tmp_path / "capture.pcap"
    capture.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(200))
    result = report("acc", "--db", str(capture))
    assert result.exit_code == 2
    assert result.stderr == (f"sipprobe: {capture} is not a SQLite database: give a new file name "
                             "or a database written by sipprobe\n")


def test_the_installed_executable(db, tmp_path):
    assert SIPPROBE, "the sipprobe console script is not installed next to python"
    done = subprocess.run([SIPPROBE, "report", "missed", "--db", db, "--format", "csv"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, MISSED_CSV, "")
    missing = str(tmp_path / "none.db")
    done = subprocess.run([SIPPROBE, "report", "acc", "--db", missing],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"sipprobe: no such database: {missing}: "
                           f"run `sipprobe replay CAPTURE --db {missing}` first\n")


def test_the_cli_starts_without_sqlite_utils_or_rich():
    code = "import sys, cli; print(sorted({'sqlite_utils', 'rich', 'store'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout == "[]\n", done.stderr
