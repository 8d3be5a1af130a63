"""The PostgreSQL store against a real server: two probes writing at once, rows equal to the SQLite
store's of the same captures, nothing doubled, reports reading it."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter

import pytest

from tests.pg_server import binaries, server  # noqa: F401  (server: the fixture)

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(binaries() is None, reason="no PostgreSQL server installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "pcaps")
TABLES = ("acc", "missed_calls", "acc_cdrs", "rtcp_reports", "call_quality")
# two sites: each sees calls of its own and calls both see (the overlap)
SITE_A = ["lab-basic-call", "lab-busy-486", "lab-cancel-487", "lab-media-loss-5",
          "lab-notfound-404"]
SITE_B = ["lab-basic-call", "lab-cancel-487", "lab-concurrent", "lab-reinvite", "lab-no-bye",
          "lab-callee-bye"]


def _captures(names):
    return [os.path.join(LAB, n) for n in names]


def _replay(captures, db, probe=None):
    cmd = [sys.executable, "-m", "cli", "replay", *captures, "--db", db, "-f", "json"]
    if probe:
        cmd += ["--probe-name", probe]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _done(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    import json
    return json.loads(out)


def _sqlite_rows(path, table):
    from store.tables import BY_NAME
    cols = [c for c in BY_NAME[table].column_names if c != "id"]
    with sqlite3.connect(path) as db:
        return Counter(db.execute(f'SELECT {", ".join(cols)} FROM "{table}"').fetchall())


def _pg_rows(url, table):
    from store import postgres
    from store.tables import BY_NAME
    cols = [c for c in BY_NAME[table].column_names if c != "id"]
    with psycopg.connect(url) as conn:
        sql = f'SELECT {postgres.select_list(table, cols, cols)} FROM "{table}"'
        return Counter(tuple(r) for r in conn.execute(sql).fetchall())


def test_two_probes_at_once_equal_sqlite(server, tmp_path):
    url = server.database("two_probes")
    a = _replay(_captures(SITE_A), url, "site-a")
    b = _replay(_captures(SITE_B), url, "site-b")
    sa, sb = _done(a), _done(b)
    # the oracle: the same captures, one after the other, into one SQLite file
    lite = str(tmp_path / "oracle.db")
    _done(_replay(_captures(SITE_A), lite))
    _done(_replay(_captures(SITE_B), lite))
    for table in TABLES:
        want, got = _sqlite_rows(lite, table), _pg_rows(url, table)
        assert want, table
        assert got == want, table
        assert max(got.values()) == 1, f"{table}: a row stored twice"
    with psycopg.connect(url) as conn:
        by_probe = dict(conn.execute("SELECT probe, count(*) FROM acc GROUP BY probe").fetchall())
        total = conn.execute("SELECT count(*) FROM acc").fetchone()[0]
        missed = conn.execute("SELECT count(*) FROM missed_calls").fetchone()[0]
    # each probe wrote its own calls; the calls both saw were written once, by either
    assert set(by_probe) == {"site-a", "site-b"}
    assert sa["acc_inserted"] + sb["acc_inserted"] == total
    assert sa["duplicates"] + sb["duplicates"] > 0  # the overlap
    seen = sa["acc_rows"] + sb["acc_rows"] + sa["missed_rows"] + sb["missed_rows"]
    assert seen == total + missed + sa["duplicates"] + sb["duplicates"]


def test_replay_twice_adds_nothing_and_reports_read_it(server, tmp_path):
    url = server.database("twice")
    captures = _captures(SITE_B + ["lab-media-clean"])
    first = _done(_replay(captures, url))
    again = _done(_replay(captures, url))
    assert first["acc_inserted"] > 0 and first["cdrs_inserted"] > 0
    assert again["acc_inserted"] == again["missed_inserted"] == again["cdrs_inserted"] == 0
    assert again["duplicates"] == first["acc_rows"] + first["missed_rows"]
    with psycopg.connect(url) as conn:
        probes = {r[0] for r in conn.execute("SELECT DISTINCT probe FROM acc_cdrs")}
        kind = conn.execute("SELECT data_type FROM information_schema.columns WHERE "
                            "table_name = 'acc' AND column_name = 'time'").fetchone()[0]
    import socket
    assert probes == {socket.gethostname()}  # --probe-name's default
    assert kind == "timestamp without time zone"  # Kamailio's PostgreSQL DDL
    lite = str(tmp_path / "oracle.db")
    _done(_replay(captures, lite))
    for report in ("acc", "missed", "cdrs", "quality", "pairs"):
        rows = {}
        for db in (url, lite):
            out = subprocess.run([sys.executable, "-m", "cli", "report", report, "--db", db,
                                  "-f", "csv"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.splitlines()
            id_first = out[0].startswith("id,")  # row numbers differ between the two stores
            rows[db] = (out[0], sorted(line.split(",", 1)[1] if id_first else line
                                       for line in out[1:]))
        assert rows[url] == rows[lite], report
        assert len(rows[url][1]) > 0, report


def test_bad_url_says_what_to_do(server):
    url = server.url.rsplit("/", 1)[0] + "/no_such_db"
    out = subprocess.run([sys.executable, "-m", "cli", "replay", _captures(SITE_A)[0],
                          "--db", url], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "no_such_db" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_a_call_split_across_two_replays_completes_its_cdr(server, tmp_path):
    """Issue 14's call (voipshark B2BUA capture) cut before its BYEs: the second half's replay
    takes up the calls the first left in open_calls and completes their open rows in place, as
    the SQLite store does (tests/test_carry.py); another probe name takes up nothing of it."""
    import pipeline
    from pcap_split import records, sip_frames, split
    from shared_pcaps import shared

    url = server.database("carried")
    from pathlib import Path

    path = Path(shared("voipshark_sip-rtp-b2bua-call-rtcp.pcap"))
    frames = records(path)[1]
    bye = next(i for i in sip_frames(path) if b"BYE sip:" in frames[i])
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    split(path, bye, first, second)
    one = pipeline.replay_files([str(first)], url, store_options={"probe": "p1"})
    assert one["cdrs_inserted"] == 2
    with psycopg.connect(url) as conn:
        carried = conn.execute("SELECT count(*) FROM open_calls WHERE probe = 'p1' "
                               "AND callid != ''").fetchone()[0]
    assert carried >= 2
    other = pipeline.replay_files([str(second)], url, store_options={"probe": "p2"})
    assert "carry.calls_taken_up" not in other["counters"] and other["cdrs_completed"] == 0
    two = pipeline.replay_files([str(second)], url, store_options={"probe": "p1"})
    assert two["counters"]["carry.calls_taken_up"] == carried
    assert two["cdrs_completed"] == 2 and two["cdrs_inserted"] == 0
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT end_reason, duration, ended_by, talk_time FROM acc_cdrs "
                           "WHERE callid = %s", ["3cfe1c77155241bb89eb003ab8e2f87b"]).fetchone()
    assert row == ("completed", 34.087, "callee", 26.921)
    # the oracle: the same halves into SQLite, with the same probe run after each
    lite = str(tmp_path / "oracle.db")
    pipeline.replay_files([str(first)], lite)
    pipeline.replay_files([str(second)], lite)
    for table in ("acc", "missed_calls", "acc_cdrs"):
        assert _pg_rows(url, table) == _sqlite_rows(lite, table), table


def test_a_killed_run_is_reported_to_the_next_run_of_its_probe(server):
    """store/runs.py on PostgreSQL: the run killed after a commit is reported once, by the
    next run of the same probe name on this host; another probe's run does not judge it."""
    import pipeline
    from store.runs import notice
    from test_runs import CAPTURE, killed_run

    url = server.database("runs")
    pid, run_id = killed_run(url)
    with psycopg.connect(url) as conn:
        started, last, ended, probe = conn.execute(
            "SELECT started, last_commit, ended, probe FROM sipprobe_runs WHERE id = %s",
            [run_id]).fetchone()
    assert ended is None and last >= started
    told = []
    other = pipeline.replay_files([str(CAPTURE)], url, store_options={"probe": probe + "-x"},
                                  notice=told.append)
    assert told == [] and "unclean_runs" not in other
    summary = pipeline.replay_files([str(CAPTURE)], url, notice=told.append)
    assert told == [notice("sniff", pid, started, last, 1.0)]
    assert summary["unclean_runs"][0]["pid"] == pid
    told.clear()
    pipeline.replay_files([str(CAPTURE)], url, notice=told.append)
    assert told == []
    with psycopg.connect(url) as conn:
        clean = conn.execute("SELECT count(*) FROM sipprobe_runs WHERE ended IS NOT NULL "
                             "AND last_commit <= ended").fetchone()[0]
    assert clean == 3
