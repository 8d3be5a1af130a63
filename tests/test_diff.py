"""`sipprobe diff` against the tables a real Kamailio 5.6 wrote in the lab (pcaps/lab-*/
kamailio-acc.json keeps db_sqlite's raw values: times as REAL Julian days). Each proxy database
is rebuilt from lab/schema.sql with those raw values, the capture replayed by the installed
command, and the two compared; then a proxy row is tampered with."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from lab_oracle import LAB_PCAPS, scenario_flags

from store.proxydb import epoch_of

ROOT = Path(__file__).resolve().parents[1]
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or \
    shutil.which("sipprobe")
SCENARIOS = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/kamailio-acc.json"))


def sipprobe(*args):
    return subprocess.run([SIPPROBE, *args], capture_output=True, text=True, timeout=120)


def proxy_db(scenario: Path, path: Path) -> Path:
    """Kamailio's acc.db as its run left it: schema.sql, the rows with their raw values."""
    data = json.loads((scenario / "kamailio-acc.json").read_text())
    con = sqlite3.connect(path)
    con.executescript((ROOT / "lab" / "schema.sql").read_text())
    for table, part in data["tables"].items():
        cols = part["columns"]
        con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})",
                        [[row[c] for c in cols] for row in part["rows"]])
    con.commit()
    con.close()
    return path


def replayed(scenario: Path, tmp_path: Path) -> Path:
    """The capture replayed with the options of the script that wrote the proxy's rows. The
    CDRs as Kamailio: sipprobe's "rejected" CDR of a stateless rejection
    (lab-missed-early-blocked-403) has no counterpart, and diff cannot tell it from its row."""
    db = tmp_path / "sipprobe.db"
    r = sipprobe("replay", str(scenario / "capture.pcap"), "--db", str(db),
                 "--proxy", "127.0.0.1:5060", "--cdr-kamailio-exact", *scenario_flags(scenario))
    assert r.returncode == 0, r.stderr
    return db


def test_julian_days_read_back_as_the_proxys_seconds():
    # lab-basic-call's first acc row: JD 2461367.9565335647 is 2026-11-23T10:57:25Z (LAB-NOTES)
    assert epoch_of(2461367.9565335647) == 1795431445
    assert epoch_of("2026-11-23 10:57:25") == 1795431445
    assert epoch_of(1795431445) == 1795431445
    assert epoch_of("1795431445") == 1795431445
    assert epoch_of("not a time") is None


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_lab_scenario_agrees(scenario, tmp_path):
    db, proxy = replayed(scenario, tmp_path), proxy_db(scenario, tmp_path / "acc.db")
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db))
    assert r.returncode == 0, r.stdout + r.stderr
    tables = json.loads((scenario / "kamailio-acc.json").read_text())["tables"]
    counts = {t: len(part["rows"]) for t, part in tables.items()}
    assert r.stdout.splitlines()[-1] == \
        f"agree: {sum(counts.values())} rows equal in acc, missed_calls, acc_cdrs"
    data = json.loads(sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db),
                               "--format", "json").stdout)
    assert data["agree"] and {t: p["equal"] for t, p in data["tables"].items()} == counts


@pytest.fixture
def basic_call(tmp_path):
    scenario = LAB_PCAPS / "lab-basic-call"
    return replayed(scenario, tmp_path), proxy_db(scenario, tmp_path / "acc.db")


def test_changed_code_is_a_row_on_each_side(basic_call):
    db, proxy = basic_call
    con = sqlite3.connect(proxy)
    con.execute("UPDATE acc SET sip_code = '202' WHERE method = 'BYE'")
    con.commit()
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db), "--table", "acc")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("  only in sipprobe: method='BYE' sip_code='200'") for ln in lines)
    assert any(ln.startswith("  only at the proxy: method='BYE' sip_code='202'") for ln in lines)
    assert lines[-1].startswith("differ: 1 rows only in sipprobe, 1 only at the proxy")


def test_changed_reason_and_time_name_the_columns(basic_call):
    db, proxy = basic_call
    con = sqlite3.connect(proxy)
    # the CDR's end two seconds later, as datetime text: decoded per value
    con.execute("UPDATE acc_cdrs SET sip_reason = 'Okay', end_time = '2026-11-23 10:57:29'")
    con.commit()
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db), "--format", "json")
    assert r.returncode == 1
    [row] = json.loads(r.stdout)["tables"]["acc_cdrs"]["differ"]
    cells = {c["column"]: (c["sipprobe"], c["proxy"]) for c in row["columns"]}
    assert set(cells) == {"sip_reason", "end_time"}
    assert cells["sip_reason"] == ("OK", "Okay")
    assert cells["end_time"][1] == datetime(2026, 11, 23, 10, 57, 29,
                                            tzinfo=timezone.utc).timestamp()
    text = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db)).stdout
    assert "    sip_reason: sipprobe 'OK', proxy 'Okay'" in text


def test_deleted_row_is_only_in_sipprobe(basic_call):
    db, proxy = basic_call
    con = sqlite3.connect(proxy)
    con.execute("DELETE FROM acc WHERE method = 'INVITE'")
    con.commit()
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db))
    assert r.returncode == 1
    assert "  only in sipprobe: method='INVITE' sip_code='200' callid='1-11993@127.0.0.1'" \
        in r.stdout
    assert r.stdout.splitlines()[-1].startswith("differ: 1 rows only in sipprobe, 0 only")


def test_period_outside_the_calls_compares_nothing(basic_call):
    db, proxy = basic_call
    con = sqlite3.connect(proxy)
    con.execute("DELETE FROM acc")
    con.commit()
    assert sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db)).returncode == 1
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db), "--since", "2026-11-24")
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("agree: 0 rows")


def test_errors_are_one_line_exit_2(tmp_path, basic_call):
    db, _ = basic_call
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE subscriber (id INTEGER)").connection.commit()
    for args, words in (
            (["--proxy-db", "oracle://kamailio@db/kamailio"], "not supported"),
            (["--proxy-db", str(tmp_path / "none.db"), "--db", str(db)], "no such proxy"),
            (["--proxy-db", str(other), "--db", str(db)], "none of Kamailio's"),
            (["--proxy-db", str(ROOT / "README.md"), "--db", str(db)], "not a SQLite")):
        r = sipprobe("diff", *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr


def test_sipprobes_own_database_as_the_proxys_agrees(basic_call):
    """sipprobe writes Kamailio's columns, its times as datetime text: the text form decodes."""
    db, _ = basic_call
    r = sipprobe("diff", "--proxy-db", str(db), "--db", str(db))
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == \
        "agree: 3 rows equal in acc, missed_calls, acc_cdrs"
