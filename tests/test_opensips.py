"""--flavour opensips: OpenSIPS 3.x acc (CDR mode) and missed_calls, against the Kamailio flavour
of the same captures, the real Kamailio's rows (kamailio-acc.json) and OpenSIPS' own DDL.

OpenSIPS' duration is answer-to-BYE (acc.c acc_db_cdrs), Kamailio's acc_cdrs duration
INVITE-to-BYE: the figure compared is Kamailio's duration less the setup (docs/opensips.md).
"""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from pipeline import ProbeOptions, replay_files
from sip_dissect.accounting import AccOptions
from sip_dissect.opensips import cdr_figures
from store import StoreError
from store.rows import time_text
from store.writer import open_store

LAB = Path(__file__).resolve().parents[1] / "pcaps"
SCENARIOS = sorted(p.parent for p in LAB.glob("lab-*/capture.pcap"))
PROXY = ("127.0.0.1", 5060)
SEED_TRACE = Path(__file__).resolve().parents[2] / "shared" / "seeds" / \
    "003_345b3f090738e39f.txt"
# scripts/sqlite/acc-create.sql at OpenSIPS commit 8f4f1e1b (2026-08-20), columns in order
OPENSIPS_ACC = ("id", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
                "duration", "ms_duration", "setuptime", "created")
OPENSIPS_MISSED = ("id", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason",
                   "time", "setuptime", "created")


def _replay(capture: Path, db: Path, **kw) -> dict:
    return replay_files([str(capture)], str(db), ProbeOptions(strict=True), proxies=[PROXY],
                        **kw)


def _rows(db: Path, sql: str) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda p: p.name)
def both(request, tmp_path_factory):
    """(scenario, Kamailio-flavour db, OpenSIPS-flavour db) of one lab capture."""
    scenario = request.param
    folder = tmp_path_factory.mktemp(scenario.name)
    kam, ops = folder / "kamailio.db", folder / "opensips.db"
    _replay(scenario / "capture.pcap", kam)
    _replay(scenario / "capture.pcap", ops, flavour="opensips")
    return scenario, kam, ops


def test_layout_is_opensips_ddl_then_extras(both):
    _, _, ops = both
    acc = [r["name"] for r in _rows(ops, "PRAGMA table_info(acc)")]
    missed = [r["name"] for r in _rows(ops, "PRAGMA table_info(missed_calls)")]
    assert tuple(acc[:len(OPENSIPS_ACC)]) == OPENSIPS_ACC
    assert tuple(missed[:len(OPENSIPS_MISSED)]) == OPENSIPS_MISSED
    assert acc[len(OPENSIPS_ACC):] == missed[len(OPENSIPS_MISSED):]  # the same acc_extra
    assert {r["table_name"]: r["table_version"] for r in _rows(ops, "SELECT * FROM version")} \
        == {"acc": 7, "missed_calls": 5}
    assert not _rows(ops, "SELECT name FROM sqlite_master WHERE name = 'acc_cdrs'")


def test_cdr_rows_match_kamailio_cdrs(both):
    scenario, kam, ops = both
    cdrs = {(r["callid"], r["from_tag"]): r for r in _rows(
        kam, "SELECT * FROM acc_cdrs WHERE end_reason = 'completed' AND sip_code LIKE '2%'")}
    invites = {(r["callid"], r["from_tag"]): r for r in _rows(
        kam, "SELECT * FROM acc WHERE method = 'INVITE' AND sip_code LIKE '2%'")}
    got = {(r["callid"], r["from_tag"]): r for r in _rows(ops, "SELECT * FROM acc")}
    assert set(got) == set(cdrs), scenario.name  # one row per completed call, no BYE rows
    for key, row in got.items():
        cdr, invite = cdrs[key], invites[key]
        # the CDR row is the INVITE's 2xx row (Kamailio flavour's acc) with the CDR columns
        for column in ("method", "to_tag", "sip_code", "sip_reason", "time", "time_epoch",
                       "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user",
                       "dst_domain", "cseq"):
            assert row[column] == invite[column], (scenario.name, column)
        answer, end, start = invite["time_epoch"], cdr["end_epoch"], cdr["start_epoch"]
        want_ms = (round(end * 1e6) - round(answer * 1e6)) // 1000
        assert row["ms_duration"] == want_ms
        assert row["duration"] == math.ceil(want_ms / 1000)
        # Kamailio's duration (INVITE to BYE) less the setup: OpenSIPS' answer to BYE
        assert abs(row["ms_duration"] / 1000 - (cdr["duration"] - (answer - start))) <= 0.002
        assert abs(row["ms_duration"] / 1000 - cdr["talk_time"]) <= 0.002
        assert row["setuptime"] == math.floor(answer) - math.floor(start)
        assert row["created"] == time_text(start) and row["created_epoch"] == start


def test_cdr_rows_match_the_real_kamailio(both):
    """The proxy's own acc_cdrs (its clock, to the ms): duration less the setup the capture
    shows is OpenSIPS' ms_duration within 5 ms; the start second is `created`."""
    scenario, _, ops = both
    real = json.loads((scenario / "kamailio-acc.json").read_text())["tables"]["acc_cdrs"]["rows"]
    real = {(r["callid"], r["from_tag"]): r for r in real if (r["sip_code"] or "").startswith("2")}
    for row in _rows(ops, "SELECT * FROM acc"):
        proxy = real[(row["callid"], row["from_tag"])]
        setup = row["time_epoch"] - row["created_epoch"]
        assert abs(row["ms_duration"] / 1000 - (proxy["duration"] - setup)) <= 0.005
        assert math.floor(row["created_epoch"]) == proxy["start_time_epoch"]


def test_missed_calls_match_kamailio(both):
    scenario, kam, ops = both
    same = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
            "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain",
            "time_epoch", "cseq")
    kamailio = sorted(tuple(r[c] for c in same) for r in _rows(kam, "SELECT * FROM missed_calls"))
    got = _rows(ops, "SELECT * FROM missed_calls")
    assert sorted(tuple(r[c] for c in same) for r in got) == kamailio, scenario.name
    starts = {(r["callid"], r["from_tag"]): r["start_epoch"]
              for r in _rows(kam, "SELECT * FROM acc_cdrs")}
    for row in got:
        start = starts[(row["callid"], row["from_tag"])]
        assert row["created_epoch"] == start and row["created"] == time_text(start)
        assert row["setuptime"] == math.floor(row["time_epoch"]) - math.floor(start)


def test_failed_flag_puts_the_failure_in_acc(tmp_path):
    db = tmp_path / "o.db"
    _replay(LAB / "lab-busy-486" / "capture.pcap", db, flavour="opensips",
            acc_options=AccOptions(failed_transaction=True))
    acc = _rows(db, "SELECT * FROM acc")
    missed = _rows(db, "SELECT * FROM missed_calls")
    assert [(r["sip_code"], r["duration"], r["ms_duration"]) for r in acc] == [("486", 0, 0)]
    assert [(r["callid"], r["time"], r["setuptime"]) for r in missed] == \
        [(r["callid"], r["time"], r["setuptime"]) for r in acc]


def test_rerun_adds_nothing(tmp_path):
    db = tmp_path / "o.db"
    capture = LAB / "lab-concurrent" / "capture.pcap"
    first = _replay(capture, db, flavour="opensips")
    again = _replay(capture, db, flavour="opensips")
    assert first["acc_inserted"] > 0 and again["acc_inserted"] == 0


def test_a_file_keeps_its_flavour(tmp_path):
    kam, ops = tmp_path / "k.db", tmp_path / "o.db"
    open_store(str(kam)).close()
    open_store(str(ops), flavour="opensips").close()
    with pytest.raises(StoreError, match="holds kamailio's tables.*--flavour kamailio"):
        open_store(str(kam), flavour="opensips")
    with pytest.raises(StoreError, match="holds opensips's tables.*--flavour opensips"):
        open_store(str(ops))
    with pytest.raises(StoreError, match="SQLite files only"):
        open_store("postgresql://localhost/x", flavour="opensips")


def test_cdr_figures_round_as_opensips():
    # ms truncated from microseconds, duration rounded up, setup on whole seconds
    assert cdr_figures(10.9999, 12.0005, 9.5) == (1, 1000, 1)  # 1000.6 ms
    assert cdr_figures(100.0, 100.0, 100.0) == (0, 0, 0)
    assert cdr_figures(100.2, 101.2011, 99.9) == (2, 1001, 1)


def test_seed_trace_gives_no_row(tmp_path):
    """OpenSIPS 2.2's trace (seeds 003): an INVITE, the proxy's 100 and the relayed INVITE,
    nothing after. With no final reply OpenSIPS has written nothing yet: neither do we, while
    the call and the proxy are seen."""
    from ngrep_trace import trace_to_pcap

    pcap = tmp_path / "seed.pcap"
    messages = trace_to_pcap(SEED_TRACE.read_text(), pcap)
    assert [m.split(b" ", 2)[:2] for m in messages] == [
        [b"INVITE", b"sip:2222222222@192.0.2.30;transport=udp"], [b"SIP/2.0", b"100"],
        [b"INVITE", b"sip:2222222222@192.0.2.30;transport=udp"]]
    db = tmp_path / "o.db"
    summary = replay_files([str(pcap)], str(db), ProbeOptions(strict=True), flavour="opensips")
    assert summary["calls"] == 1 and summary["proxies"] == ["192.0.2.10:5060"]
    assert summary["acc_inserted"] == summary["missed_inserted"] == 0


def test_cli_refuses_kamailio_only_options_and_reports(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    capture = str(LAB / "lab-basic-call" / "capture.pcap")
    db = str(tmp_path / "o.db")
    refused = runner.invoke(app, ["replay", capture, "--db", db, "--flavour", "opensips",
                                  "--early-media", "--acc-method", "MESSAGE"])
    assert refused.exit_code == 2
    assert "--early-media, --acc-method: Kamailio-flavour options" in refused.output
    refused = runner.invoke(app, ["replay", capture, "--db", db, "--flavour", "opensips",
                                  "--missed-local-replies", "--missed-per-branch"])
    assert refused.exit_code == 2  # Kamailio script variants: OpenSIPS' writer has no such switch
    assert "--missed-local-replies, --missed-per-branch: Kamailio-flavour" in refused.output
    assert runner.invoke(app, ["replay", capture, "--db", db, "--flavour", "opensips"]).exit_code == 0
    assert runner.invoke(app, ["report", "acc", "--db", db]).exit_code == 0
    for report in ("cdrs", "summary"):
        result = runner.invoke(app, ["report", report, "--db", db])
        assert result.exit_code == 2
        assert "holds opensips's tables (--flavour opensips)" in result.output
    again = runner.invoke(app, ["replay", capture, "--db", db])
    assert again.exit_code != 0 and "replay into it with --flavour opensips" in again.output
