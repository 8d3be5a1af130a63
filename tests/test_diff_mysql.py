"""`sipprobe diff --proxy-db mysql://...`: the lab's real Kamailio rows (pcaps/lab-*/
kamailio-acc.json) in a real MariaDB 10.11 (tests/mysql_server.py) with Kamailio's MySQL DDL
(lab/schema-mysql.sql), compared with the capture's replay: the result must equal the one
against the SQLite proxy file (tests/test_diff.py) for every scenario; a changed row is found;
the connection only reads."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_diff import ROOT, SCENARIOS, proxy_db, replayed, sipprobe
from test_diff_postgres import BASIC, _kamailio_text

from tests import mysql_server

pymysql = pytest.importorskip("pymysql")
pytestmark = pytest.mark.skipif(not mysql_server.available(),
                                reason="no MariaDB server installed (mariadb-server)")


@pytest.fixture(scope="module")
def server():
    srv = mysql_server.Server().start()
    try:
        yield srv
    finally:
        srv.stop()


def _connect(url: str):
    from store.proxydb_server import mysql_parameters

    args = mysql_parameters(url)
    del args["init_command"]  # the loader writes
    return pymysql.connect(**{**args, "autocommit": True})


def my_proxy_db(server, scenario: Path, name: str) -> str:
    """A new database with Kamailio's MySQL tables and the lab run's rows (times as db_mysql
    writes them); its URL."""
    url = server.database(name)
    data = json.loads((scenario / "kamailio-acc.json").read_text())
    conn = _connect(url)
    try:
        cur = conn.cursor()
        for statement in (ROOT / "lab" / "schema-mysql.sql").read_text().split(";"):
            lines = [ln for ln in statement.splitlines() if not ln.startswith("--")]
            if "".join(lines).strip():
                cur.execute("\n".join(lines))
        for table, part in data["tables"].items():
            cols = [c for c in part["columns"] if c != "id"]
            values = [[_kamailio_text(row[f"{c}_epoch"]) if f"{c}_epoch" in row else row[c]
                       for c in cols] for row in part["rows"]]
            if values:
                cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                f"({', '.join(['%s'] * len(cols))})", values)
    finally:
        conn.close()
    return url


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_lab_scenario_agrees_as_with_sqlite(server, scenario, tmp_path):
    from store.shadow import diff

    db = replayed(scenario, tmp_path)
    url = my_proxy_db(server, scenario, scenario.name.replace("-", "_"))
    got, want = diff(str(db), url), diff(str(db), str(proxy_db(scenario, tmp_path / "acc.db")))
    assert got["agree"] and want["agree"]
    assert got == want


def test_changed_row_exits_1_and_the_connection_only_reads(server, tmp_path):
    from store.proxydb_server import connect_read_only

    db = replayed(BASIC, tmp_path)
    url = my_proxy_db(server, BASIC, "changed")
    conn = _connect(url)
    conn.cursor().execute("UPDATE acc SET sip_code = '202' WHERE method = 'BYE'")
    conn.cursor().execute("UPDATE acc_cdrs SET end_time = end_time + INTERVAL 2 SECOND")
    conn.close()
    lite = proxy_db(BASIC, tmp_path / "acc.db")
    con = sqlite3.connect(lite)
    con.execute("UPDATE acc SET sip_code = '202' WHERE method = 'BYE'")
    con.execute("UPDATE acc_cdrs SET end_time = end_time + 2.0 / 86400")
    con.commit()
    con.close()
    r = sipprobe("diff", "--proxy-db", url, "--db", str(db), "--format", "json")
    assert r.returncode == 1, r.stderr
    want = sipprobe("diff", "--proxy-db", str(lite), "--db", str(db), "--format", "json")
    assert json.loads(r.stdout) == json.loads(want.stdout)
    [row] = json.loads(r.stdout)["tables"]["acc_cdrs"]["differ"]
    assert [c["column"] for c in row["columns"]] == ["end_time"]
    reader = connect_read_only(url)
    try:
        with pytest.raises(pymysql.MySQLError, match="READ ONLY transaction"):
            reader.cursor().execute("DELETE FROM acc")
    finally:
        reader.close()


def test_errors_are_one_line_exit_2(server, tmp_path):
    db = replayed(BASIC, tmp_path)
    empty = server.database("no_kamailio")
    for proxy, words in ((server.url + "none_such", "cannot connect"),
                         (server.url, "give the database"),
                         (empty, "none of Kamailio's or OpenSIPS' accounting tables")):
        r = sipprobe("diff", "--proxy-db", proxy, "--db", str(db))
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
