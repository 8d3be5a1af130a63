"""`sipprobe report acc|missed` on an OpenSIPS-flavour file: OpenSIPS' columns, every filter,
every format; the other reports refuse it in one line. The file is the lab's captures replayed
--flavour opensips; each report is compared with the file's rows read by plain sqlite3 and
filtered in Python, so the oracle shares no SQL with store/query.py."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline import ProbeOptions, replay_files
from store.tables import OPENSIPS_ACC, OPENSIPS_MISSED

LAB = Path(__file__).resolve().parents[1] / "pcaps"
# answered calls (one with 3 s of ringing), failures, a serial fork
CAPTURES = ("lab-basic-call", "lab-ringing-then-answer", "lab-busy-486", "lab-notfound-404",
            "lab-cancel-487", "lab-serial-answer", "lab-concurrent", "lab-callee-bye")
runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("opensips") / "o.db"
    for name in CAPTURES:
        replay_files([str(LAB / name / "capture.pcap")], str(path), ProbeOptions(strict=True),
                     proxies=[("127.0.0.1", 5060)], flavour="opensips")
    return str(path)


def _stored(db: str, table: str) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    finally:
        conn.close()
    return sorted(rows, key=lambda r: (r["time_epoch"], r["id"]))


def _report(*args) -> list[dict]:
    result = runner.invoke(app, ["report", *args, "--format", "csv"], prog_name="sipprobe")
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))


def _as_text(rows: list[dict]) -> list[dict]:
    return [{k: "" if v is None else (f"{v:.6f}" if k.endswith("_epoch") else str(v))
             for k, v in r.items()} for r in rows]


@pytest.mark.parametrize("command, layout", [("acc", OPENSIPS_ACC),
                                              ("missed", OPENSIPS_MISSED)])
def test_csv_is_every_row_in_opensips_columns(db, command, layout):
    got = _report(command, "--db", db)
    stored = _stored(db, layout.name)
    assert len(stored) >= 4  # the captures gave rows to compare
    assert list(got[0]) == list(layout.report_columns)
    assert "ms_duration" in got[0] or layout is OPENSIPS_MISSED
    assert got == _as_text(stored)


def test_json_and_ndjson_carry_the_same_rows(db):
    stored = _stored(db, "acc")
    listed = json.loads(runner.invoke(app, ["report", "acc", "--db", db, "-f", "json"]).output)
    lines = runner.invoke(app, ["report", "acc", "--db", db, "-f", "ndjson"]).output.splitlines()
    assert [r["ms_duration"] for r in listed] == [r["ms_duration"] for r in stored]
    assert [json.loads(line)["created"] for line in lines] == [r["created"] for r in stored]


def test_table_shows_the_declared_summary(db):
    result = runner.invoke(app, ["report", "acc", "--db", db], env=WIDE, prog_name="sipprobe")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["time", "(UTC)", *OPENSIPS_ACC.summary[1:]]
    stored = _stored(db, "acc")
    assert len(result.output.splitlines()) == 2 + len(stored)
    ringing = next(r for r in stored if r["setuptime"] == 3)  # ringing-then-answer
    line = next(x for x in result.output.splitlines() if ringing["callid"] in x)
    assert line.split()[2:5] == ["200", str(ringing["duration"]), "3"]


FILTERS = [
    (("--user", "slow"), lambda r: "slow" in r["dst_user"] + r["src_user"] + r["dst_ouser"]),
    (("--code", "4xx"), lambda r: r["sip_code"].startswith("4")),
    (("--code", "486"), lambda r: r["sip_code"] == "486"),
    (("--method", "invite"), lambda r: r["method"] == "INVITE"),
    (("--method", "bye"), lambda r: False),  # OpenSIPS' acc has no BYE rows
    (("--ip", "127.0.0.1"), lambda r: "127.0.0.1" in (r["src_ip"], r["dst_domain"])),
    (("--callid", "1-12140@127.0.0.1"), lambda r: r["callid"] == "1-12140@127.0.0.1"),
    (("--since", "2026-11-23T10:57:40Z", "--until", "2026-11-23T10:58:00Z"),
     lambda r: 1795431460 <= r["time_epoch"] < 1795431480),
]


@pytest.mark.parametrize("args, keep", FILTERS, ids=lambda a: " ".join(a) if
                         isinstance(a, tuple) else "")
@pytest.mark.parametrize("command, table", [("acc", "acc"), ("missed", "missed_calls")])
def test_filters_select_what_python_selects(db, command, table, args, keep):
    want = [str(r["id"]) for r in _stored(db, table) if keep(r)]
    got = [r["id"] for r in _report(command, "--db", db, *args)] if want else []
    if not want:  # the CSV of no rows is its header or nothing
        result = runner.invoke(app, ["report", command, "--db", db, *args, "-f", "json"])
        assert result.exit_code == 0 and json.loads(result.output) == [], result.output
    assert got == want


def test_filters_found_rows_in_both_tables(db):
    # the filter table above is not vacuous on these captures
    assert any(r["sip_code"] == "486" for r in _stored(db, "missed_calls"))
    assert any(r["callid"] == "1-12140@127.0.0.1" for r in _stored(db, "acc"))


@pytest.mark.parametrize("report", [["cdrs"], ["calls"], ["summary"], ["pairs"], ["quality"],
                                    ["chart", "calls"]])
def test_other_reports_refuse_in_one_line(db, report):
    result = runner.invoke(app, ["report", *report, "--db", db], prog_name="sipprobe")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "holds opensips's tables (--flavour opensips): `report acc` and `report missed` " \
           "read them" in result.output


def test_a_filter_the_layout_cannot_answer_is_refused():
    from store import FilterError
    from store.query import Filters

    Filters(user="alice", ip="127.0.0.1", code="4xx").where("acc", layout=OPENSIPS_MISSED)
    with pytest.raises(FilterError, match="--user does not apply to rtcp_reports: it has no "
                                          "src_user, dst_user, dst_ouser column"):
        Filters(user="alice").where("rtcp_reports")
