"""`report summary`, `report calls` and `report chart` on the PostgreSQL store: the same captures
replayed into an SQLite file and into a real PostgreSQL 15 database (tests/pg_server.py) give
the same summary JSON, call list, call timeline and chart data. The PostgreSQL database sorts
text by ICU's en-US rules (a common production setting), so an ORDER BY that relied on the
database's collation would differ from SQLite's byte order."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.pg_server import Server, binaries
from tests.shared_pcaps import SHARED_PCAPS

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(binaries() is None, reason="no PostgreSQL server installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = [os.path.join(ROOT, "pcaps", d, "capture.pcap") for d in
       sorted(os.listdir(os.path.join(ROOT, "pcaps"))) if d.startswith("lab-")]
# many callers and failure codes, RTCP-bound quality: groups and MOS bins the lab has not
PUBLIC = [str(SHARED_PCAPS / n) for n in (
    "netfox_sip-fraud-901-invites.pcap", "voipshark_sip-rtp-b2bua-call-rtcp.pcap",
    "sngrep_aaa-sip-rtp-cancel-auth.pcap", "asterisk_ast-2017-012-rtp-rtcp-compound.pcap")]


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(SQLite path, PostgreSQL URL) holding the same replays."""
    srv = Server().start()
    try:
        with psycopg.connect(srv.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE reports TEMPLATE template0 LOCALE_PROVIDER icu "
                         "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
        url = srv.url.rsplit("/", 1)[0] + "/reports"
        lite = str(tmp_path_factory.mktemp("lite") / "sipprobe.db")
        for db in (lite, url):  # one run each: the PostgreSQL store carries no calls or
            cli("replay", *LAB, *PUBLIC, "--db", db)  # proxies from run to run (yet)
        # every caller in these captures is lower case or digits, which byte order and en-US
        # order agree on; one capitalised caller, in both stores, tells them apart
        rename = "UPDATE acc_cdrs SET src_user = 'Bob' WHERE callid = '1-11993@127.0.0.1'"
        with psycopg.connect(url) as conn:
            conn.execute(rename)
        with sqlite3.connect(lite) as conn:
            conn.execute(rename)
        yield lite, url
    finally:
        srv.stop()


FILTERS = [{}, {"by": "hour"}, {"by": "day"}, {"by": "user"}, {"by": "domain"}, {"by": "code"},
           {"user": "+001111"}, {"user": "ALICE", "by": "code"},
           {"since": "2026-11-23", "until": "2026-11-23T10:59:00+00:00", "by": "code"}]


@pytest.mark.parametrize("options", FILTERS, ids=lambda o: ",".join(f"{k}={v}" for k, v in
                                                                     o.items()) or "all")
def test_summary_json_equal(stores, options):
    args = [f"--{k}={v}" for k, v in options.items()]
    lite, url = (json.loads(cli("report", "summary", "--db", db, "-f", "json", *args))
                 for db in stores)
    assert url == lite
    assert lite["calls"] > 0 and lite["answered"] > 0
    if "by" in options:
        assert len(lite["groups"]) > 1
    if not options:  # the whole store: every kind of figure has something to compare
        assert lite["failures"] and lite["busiest_hours"] and lite["mos_calls"] > 1
        assert lite["pdd_p90"] is not None and lite["setup_p99"] is not None


def test_summary_table_and_csv_equal(stores):
    for fmt in ("table", "csv"):
        lite, url = (cli("report", "summary", "--db", db, "--by", "user", "-f", fmt)
                     for db in stores)
        assert url == lite and len(lite.splitlines()) > 5


def test_calls_list_and_timeline_equal(stores):
    lite, url = (cli("report", "calls", "--db", db, "-f", "csv") for db in stores)
    assert url == lite
    rows = lite.splitlines()
    assert len(rows) > 30
    callid = "1-11993@127.0.0.1"  # lab-basic-call
    lite, url = (cli("report", "calls", "--db", db, "--callid", callid) for db in stores)
    assert url == lite
    assert "INVITE Bob@" in lite and "ended by caller (BYE)" in lite
    assert "acc row: BYE CSeq 2 -> 200 OK" in lite
    lite, url = (cli("report", "calls", "--db", db, "--user", "alice", "--limit", "5")
                 for db in stores)
    assert url == lite and "alice" in lite


@pytest.mark.parametrize("kind", ["calls_per_hour", "setup_histogram", "mos_histogram"])
def test_chart_data_equal(stores, kind):
    from console import charts
    from store.query import Filters

    lite, url = (getattr(charts, kind)(db, Filters()) for db in stores)
    assert url == lite
    assert sum(sum(v) for v in lite.series.values()) > 0


def test_chart_in_the_terminal_equal(stores):
    lite, url = (cli("report", "chart", "mos", "--db", db) for db in stores)
    assert url == lite and "MOS" in lite


def test_reports_read_in_a_read_only_transaction(stores):
    from store.query import open_report

    with open_report(stores[1], "acc_cdrs") as db:
        with pytest.raises(Exception, match="read-only"):
            db.rows("DELETE FROM acc_cdrs")
    with open_report(stores[1], "acc_cdrs") as db:
        assert db.one("SELECT count(*) FROM acc_cdrs")[0] > 30
