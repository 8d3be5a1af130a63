"""`sipprobe diff` of a --flavour opensips file against an OpenSIPS proxy's acc and missed_calls.

The oracle: no OpenSIPS runs here (Debian 12 has no package), so the proxy database is built
from OpenSIPS' own SQLite DDL (lab/opensips-acc-create.sql: scripts/sqlite/acc-create.sql of
OpenSIPS/opensips at commit c0baa545, acc version 7) and filled with the rows the REAL Kamailio
wrote in the lab (pcaps/lab-*/kamailio-acc.json), converted by the mapping docs/opensips.md
settles from OpenSIPS' acc.c / acc_logic.c: one acc row per answered call that ended with a BYE
(the INVITE's 2xx row: time = the answer's second), created = the CDR's start (the INVITE's
second), setuptime = time - created, ms_duration = BYE - answer, duration = ceil(ms / 1000);
missed_calls as Kamailio's, with created and setuptime. Kamailio stores no answer time to the
ms, so BYE - answer is its acc_cdrs.duration (INVITE to BYE, its clock to the ms) less the setup
tshark reads in the capture (the INVITE's arrival to the 2xx relayed upstream). Nothing of
sipprobe's goes into the proxy's rows. Only the stock-configuration captures: the Kamailio
script variants (missed per branch, early) have no OpenSIPS counterpart here.
"""
from __future__ import annotations

import json
import math
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from lab_oracle import LAB_PCAPS, kamailio_defines
from test_diff import SIPPROBE, proxy_db as kamailio_proxy_db, sipprobe  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
DDL = ROOT / "lab" / "opensips-acc-create.sql"
EXTRA = ("src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain")
CORE = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason")
STOCK = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/kamailio-acc.json")
               if not kamailio_defines(p.parent))


def _text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def tshark_setups(capture: Path) -> dict[str, float]:
    """{Call-ID: seconds from the INVITE's arrival at the proxy (port 5060) to its 2xx relayed
    back to the caller}, by Wireshark's SIP dissector."""
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "sip", "-T", "fields", "-E", "separator=|",
         "-e", "frame.time_epoch", "-e", "sip.Call-ID", "-e", "sip.CSeq.seq",
         "-e", "sip.CSeq.method", "-e", "sip.Method", "-e", "sip.Status-Code",
         "-e", "udp.srcport", "-e", "udp.dstport", "-e", "tcp.srcport", "-e", "tcp.dstport"],
        capture_output=True, text=True, check=True).stdout
    caller, invites, setups = {}, {}, {}
    for line in out.splitlines():
        t, callid, seq, cseq_method, method, code, usp, udp_, tsp, tdp = line.split("|")
        sport, dport = usp or tsp, udp_ or tdp
        if method == "INVITE" and dport == "5060":
            caller.setdefault(callid, sport)
            invites.setdefault((callid, seq), float(t))
        elif (code.startswith("2") and cseq_method == "INVITE" and sport == "5060"
              and dport == caller.get(callid) and callid not in setups):
            setups[callid] = float(t) - invites[(callid, seq)]
    return setups


def opensips_proxy_db(scenario: Path, path: Path) -> Path:
    """The OpenSIPS proxy's acc.db for the scenario (the module docstring's mapping)."""
    tables = json.loads((scenario / "kamailio-acc.json").read_text())["tables"]
    cdrs = {(r["callid"], r["from_tag"]): r for r in tables["acc_cdrs"]["rows"]}
    setups = tshark_setups(scenario / "capture.pcap")
    con = sqlite3.connect(path)
    con.executescript(DDL.read_text())
    for table in ("acc", "missed_calls"):
        for column in EXTRA:  # the operator's acc_extra columns
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} CHAR(64) DEFAULT '' NOT NULL")
    for row in tables["acc"]["rows"]:
        cdr = cdrs.get((row["callid"], row["from_tag"]))
        if row["method"] != "INVITE" or not row["sip_code"].startswith("2") or cdr is None:
            continue  # a BYE row, or a call with no end: OpenSIPS writes no CDR
        ms = round(cdr["duration"] * 1000) - round(setups[row["callid"]] * 1000)
        values = {**{c: row[c] for c in CORE + EXTRA}, "time": _text(row["time_epoch"]),
                  "duration": math.ceil(ms / 1000), "ms_duration": ms,
                  "setuptime": row["time_epoch"] - cdr["start_time_epoch"],
                  "created": _text(cdr["start_time_epoch"])}
        _insert(con, "acc", values)
    for row in tables["missed_calls"]["rows"]:
        cdr = cdrs[(row["callid"], row["from_tag"])]
        _insert(con, "missed_calls", {**{c: row[c] for c in CORE + EXTRA},
                                      "time": _text(row["time_epoch"]),
                                      "setuptime": row["time_epoch"] - cdr["start_time_epoch"],
                                      "created": _text(cdr["start_time_epoch"])})
    con.commit()
    con.close()
    return path


def _insert(con, table: str, values: dict) -> None:
    con.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES "
                f"({', '.join('?' * len(values))})", list(values.values()))


def replayed(scenario: Path, path: Path, *flags) -> Path:
    r = sipprobe("replay", str(scenario / "capture.pcap"), "--db", str(path),
                 "--proxy", "127.0.0.1:5060", *flags)
    assert r.returncode == 0, r.stderr
    return path


def _count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_stock_scenarios_are_the_lab_s():
    assert len(STOCK) == 19  # 26 lab captures, 7 of them of a script variant


@pytest.mark.parametrize("scenario", STOCK, ids=lambda p: p.name)
def test_lab_scenario_agrees(scenario, tmp_path):
    proxy = opensips_proxy_db(scenario, tmp_path / "acc.db")
    db = replayed(scenario, tmp_path / "o.db", "--flavour", "opensips")
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db), "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    counts = {t: _count(proxy, t) for t in ("acc", "missed_calls")}
    assert {t: p["equal"] for t, p in data["tables"].items()} == counts
    assert data["tables"]["acc"]["columns"] == [
        *CORE, "time", "duration", "ms_duration", "setuptime", "created", *EXTRA]
    text = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db))
    assert text.stdout.splitlines()[-1] == \
        f"agree: {sum(counts.values())} rows equal in acc, missed_calls"


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """lab-serial-answer (the answered call's acc row, the first branch's failure in
    missed_calls): the proxy's and sipprobe's databases."""
    folder = tmp_path_factory.mktemp("serial")
    scenario = LAB_PCAPS / "lab-serial-answer"
    return (opensips_proxy_db(scenario, folder / "acc.db"),
            replayed(scenario, folder / "o.db", "--flavour", "opensips"))


def _tampered(proxy: Path, tmp_path: Path, sql: str) -> Path:
    copy = tmp_path / "tampered.db"
    copy.write_bytes(proxy.read_bytes())
    con = sqlite3.connect(copy)
    assert con.execute(sql).rowcount == 1
    con.commit()
    con.close()
    return copy


@pytest.mark.parametrize("sql, table, column", [
    ("UPDATE acc SET ms_duration = ms_duration + 50", "acc", "ms_duration"),
    ("UPDATE acc SET duration = duration + 1", "acc", "duration"),
    ("UPDATE acc SET setuptime = setuptime - 1", "acc", "setuptime"),
    ("UPDATE acc SET created = datetime(created, '-2 seconds')", "acc", "created"),
    ("UPDATE missed_calls SET sip_reason = 'Gone'", "missed_calls", "sip_reason"),
    ("UPDATE missed_calls SET dst_user = 'x'", "missed_calls", "dst_user"),
])
def test_a_tampered_cell_is_named(serial, tmp_path, sql, table, column):
    proxy, db = serial
    r = sipprobe("diff", "--proxy-db", str(_tampered(proxy, tmp_path, sql)), "--db", str(db),
                 "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(r.stdout)
    [differ] = data["tables"][table]["differ"]
    assert [c["column"] for c in differ["columns"]] == [column]
    other = "missed_calls" if table == "acc" else "acc"
    assert data["tables"][other]["equal"] == 1 and not data["tables"][other]["differ"]


def test_ms_duration_within_the_tolerance_agrees(serial, tmp_path):
    proxy, db = serial
    tampered = _tampered(proxy, tmp_path, "UPDATE acc SET ms_duration = ms_duration + 3")
    r = sipprobe("diff", "--proxy-db", str(tampered), "--db", str(db))
    assert r.returncode == 0, r.stdout


def test_a_deleted_row_is_only_in_sipprobe(serial, tmp_path):
    proxy, db = serial
    r = sipprobe("diff", "--proxy-db", str(_tampered(proxy, tmp_path, "DELETE FROM missed_calls")),
                 "--db", str(db))
    assert r.returncode == 1
    assert "missed_calls: 0 paired (0 equal), 1 only in sipprobe, 0 only at the proxy" \
        in r.stdout
    assert r.stdout.splitlines()[-1] == ("differ: 1 rows only in sipprobe, 0 only at the proxy, "
                                         "0 rows with different values, 1 equal")


def test_flavour_mismatch_is_one_line_exit_2(serial, tmp_path):
    proxy, opensips_db = serial
    scenario = LAB_PCAPS / "lab-serial-answer"
    kamailio_db = replayed(scenario, tmp_path / "k.db")
    kamailio_proxy = kamailio_proxy_db(scenario, tmp_path / "kacc.db")
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(kamailio_db))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert "holds OpenSIPS' (acc with duration, ms_duration, setuptime, created) accounting " \
           f"tables, {kamailio_db} kamailio-flavour rows: replay the capture with --flavour " \
           "opensips" in r.stderr
    r = sipprobe("diff", "--proxy-db", str(kamailio_proxy), "--db", str(opensips_db))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "holds Kamailio's (no setuptime or created columns) accounting tables, " \
           f"{opensips_db} opensips-flavour rows: replay the capture with --flavour kamailio" \
           in r.stderr
    r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(opensips_db), "--table",
                 "acc_cdrs")
    assert r.returncode == 2
    assert "opensips's accounting, which has no acc_cdrs table: compare acc or missed_calls" \
        in r.stderr


def test_a_period_compares_its_rows_only(tmp_path):
    """lab-concurrent's 20 answers fall in two seconds, 10 in each (sipprobe's time_epoch);
    a period edge between them splits the comparison without a row on one side only."""
    scenario = LAB_PCAPS / "lab-concurrent"
    proxy = opensips_proxy_db(scenario, tmp_path / "acc.db")
    db = replayed(scenario, tmp_path / "o.db", "--flavour", "opensips")
    edge = "2026-11-23 10:57:58"
    for period in (["--since", edge], ["--until", edge]):
        r = sipprobe("diff", "--proxy-db", str(proxy), "--db", str(db), *period)
        assert r.returncode == 0, r.stdout
        assert r.stdout.splitlines()[-1] == "agree: 10 rows equal in acc, missed_calls"
