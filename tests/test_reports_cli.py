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
from test_store import BUSY, BYE, CALLEE_BYE, INVITE, NOT_FOUND

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
    "byer,sipprobe.lab,127.0.0.1,alice,alice,127.0.0.1,1795431451.25,1\n")
MISSED_CSV = HEADER + (
    "2,INVITE,12048SIPpTag001,12047SIPpTag011,1-12048@127.0.0.1,486,Busy Here,"
    "2026-11-23 10:57:33,alice,sipprobe.lab,127.0.0.1,busy,busy,127.0.0.1,1795431453.5,1\n"
    "1,INVITE,12081SIPpTag001,12080SIPpTag011,1-12081@127.0.0.1,404,Not Found,"
    "2026-11-23 10:57:35,carol,sipprobe.lab,127.0.0.2,bob,bob-mobile,127.0.0.1,1795431455.75,1\n")
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
# the table keeps the columns that tell calls apart (cli.TABLE_COLUMNS); rich pads cells
# with spaces, so lines are compared without their trailing blanks
MISSED_TABLE = """\
 time                ┃ method ┃ sip_code ┃ sip_reason ┃ src_user ┃ dst_ouser ┃ dst_user   ┃ src_ip    ┃ callid
━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━
 2026-11-23 10:57:33 │ INVITE │ 486      │ Busy Here  │ alice    │ busy      │ busy       │ 127.0.0.1 │ 1-12048@127.0.0.1
 2026-11-23 10:57:35 │ INVITE │ 404      │ Not Found  │ carol    │ bob       │ bob-mobile │ 127.0.0.2 │ 1-12081@127.0.0.1
"""  # noqa: E501


@pytest.fixture
def db(tmp_path) -> str:
    """Added out of time order: ids follow insertion, reports follow packet time."""
    path = str(tmp_path / "calls.db")
    with open_store(path) as store:
        for rec in (CALLEE_BYE, NOT_FOUND, BYE, BUSY, INVITE):
            store.add(rec)
    return path


def report(*args: str, env=None):
    return runner.invoke(app, ["report", *args], env=env, prog_name="sipprobe")


def unpadded(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


@pytest.mark.parametrize("command", [["report"], ["report", "acc"], ["report", "missed"]])
def test_every_report_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"], prog_name="sipprobe")
    assert result.exit_code == 0
    assert "Example: sipprobe report " in result.output
    if len(command) == 2:
        for option in ("--db FILE", "--since TIME", "--until TIME", "--callid", "--user",
                       "--method", "--code", "--limit N", "-f, --format <table|csv|json>"):
            assert option in result.output


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
    assert [list(map(str, r.values())) for r in rows] == \
        [line.split(",") for line in ACC_CSV.splitlines()[1:]]


def test_acc_table_shows_the_columns_that_tell_calls_apart(db):
    """Kamailio's names, a subset that fits a terminal; CSV and JSON carry every column."""
    out = report("acc", "--db", db, env=WIDE).stdout
    assert out.splitlines()[0].split() == [
        "time", "┃", "method", "┃", "sip_code", "┃", "sip_reason", "┃", "src_user", "┃",
        "dst_ouser", "┃", "dst_user", "┃", "src_ip", "┃", "callid"]
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
     "sipprobe: bad time 'last week': give ISO 8601 (2026-11-23T10:57:25Z, "
     "2026-11-23 10:57:25+01:00, 2026-11-23) or epoch seconds\n"),
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
