"""`sipprobe diff --proxy-db postgresql://...`: the rows a real Kamailio 5.6 wrote in the lab
(pcaps/lab-*/kamailio-acc.json), loaded into a real PostgreSQL 15 database created with
Kamailio's PostgreSQL DDL (lab/schema-postgres.sql), compared with the capture's replay. The
verdict and every figure must equal the SQLite proxy database's (tests/test_diff.py builds that
one); sipprobe's own database can be a PostgreSQL URL too; a changed proxy row is found."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_diff import ROOT, SCENARIOS, proxy_db, replayed, sipprobe

from tests.pg_server import Server, binaries, server  # noqa: F401  (the fixture)

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(binaries() is None, reason="no PostgreSQL server installed")

BASIC = next(s for s in SCENARIOS if s.name == "lab-basic-call")


def _kamailio_text(epoch: float) -> str:
    """A time as db_postgres writes it: 'YYYY-MM-DD HH:MM:SS' of the proxy's (UTC) clock."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def pg_proxy_db(server: Server, scenario: Path, name: str) -> str:
    """A new database with Kamailio's PostgreSQL tables and the lab run's rows; its URL."""
    url = server.database(name)
    data = json.loads((scenario / "kamailio-acc.json").read_text())
    with psycopg.connect(url) as conn:
        conn.execute((ROOT / "lab" / "schema-postgres.sql").read_text())
        for table, part in data["tables"].items():
            cols = [c for c in part["columns"] if c != "id"]
            values = [[_kamailio_text(row[f"{c}_epoch"]) if f"{c}_epoch" in row else row[c]
                       for c in cols] for row in part["rows"]]
            if values:
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                    f"({', '.join(['%s'] * len(cols))})", values)
    return url


def diff_json(db, proxy, *more):
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db), "--format", "json", *more)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_lab_scenario_agrees_as_with_sqlite(server, scenario, tmp_path):
    db = replayed(scenario, tmp_path)
    url = pg_proxy_db(server, scenario, scenario.name.replace("-", "_"))
    lite = proxy_db(scenario, tmp_path / "acc.db")
    from store.shadow import diff  # the command's library: tests/test_diff.py runs the command
    got, want = diff(str(db), url), diff(str(db), str(lite))
    assert got["agree"] and want["agree"]
    assert got == want
    counts = {t: len(p["rows"]) for t, p in
              json.loads((scenario / "kamailio-acc.json").read_text())["tables"].items()}
    assert {t: p["equal"] for t, p in got["tables"].items()} == counts


@pytest.mark.parametrize("name", ["lab-basic-call", "lab-cancel-487", "lab-concurrent",
                                  "lab-media-loss-5"])
def test_sipprobes_database_on_postgres_too(server, name):
    scenario = next(s for s in SCENARIOS if s.name == name)
    proxy = pg_proxy_db(server, scenario, "proxy_" + name.replace("-", "_"))
    mine = server.database("probe_" + name.replace("-", "_"))
    r = sipprobe("replay", str(scenario / "capture.pcap"), "--db", mine,
                 "--proxy", "127.0.0.1:5060")
    assert r.returncode == 0, r.stderr
    r = sipprobe("diff", "--proxy-db", proxy, "--db", mine)
    tables = json.loads((scenario / "kamailio-acc.json").read_text())["tables"]
    rows = sum(len(p["rows"]) for p in tables.values())
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == f"agree: {rows} rows equal in acc, missed_calls, acc_cdrs"


def test_changed_rows_differ_as_with_sqlite(server, tmp_path):
    db = replayed(BASIC, tmp_path)
    url = pg_proxy_db(server, BASIC, "changed")
    lite = proxy_db(BASIC, tmp_path / "acc.db")
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE acc SET sip_code = '202' WHERE method = 'BYE'")
        conn.execute("UPDATE acc_cdrs SET sip_reason = 'Okay', "
                     "end_time = end_time + interval '2 seconds'")
    con = sqlite3.connect(lite)
    con.execute("UPDATE acc SET sip_code = '202' WHERE method = 'BYE'")
    con.execute("UPDATE acc_cdrs SET sip_reason = 'Okay', end_time = end_time + 2.0 / 86400")
    con.commit()
    con.close()
    (code, got), (_, want) = diff_json(db, url), diff_json(db, lite)
    assert code == 1 and got == want
    [row] = got["tables"]["acc_cdrs"]["differ"]
    assert {c["column"] for c in row["columns"]} == {"sip_reason", "end_time"}
    text = sipprobe("diff", "--proxy-db", url, "--db", str(db))
    assert text.returncode == 1
    assert "  only at the proxy: method='BYE' sip_code='202'" in text.stdout
    assert text.stdout.splitlines()[-1].startswith("differ: 1 rows only in sipprobe, 1 only at "
                                                   "the proxy, 1 rows with different values")


def test_proxy_database_is_read_in_read_only_transactions(server, tmp_path):
    from store.proxydb_server import connect_read_only

    url = pg_proxy_db(server, BASIC, "read_only")
    with connect_read_only(url) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM acc")
    # so a role that may only SELECT is enough
    with psycopg.connect(server.url.rsplit("/", 1)[0] + "/read_only", autocommit=True) as conn:
        conn.execute("CREATE ROLE reader LOGIN")
        conn.execute("GRANT SELECT ON acc, missed_calls, acc_cdrs TO reader")
    reader = url.replace("postgres@", "reader@")
    r = sipprobe("diff", "--proxy-db", reader, "--db", str(replayed(BASIC, tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr


def test_errors_are_one_line_exit_2(server, tmp_path):
    db = replayed(BASIC, tmp_path)
    empty = server.database("no_kamailio")
    for proxy, words in ((server.url.rsplit("/", 1)[0] + "/none_such", "cannot connect"),
                         (empty, "none of Kamailio's or OpenSIPS' accounting tables")):
        r = sipprobe("diff", "--proxy-db", proxy, "--db", str(db))
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
