"""store/: schema, batched idempotent writes, crash safety, errors that teach, report queries."""
from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sip_dissect.cdr import CdrRecord
from sip_dissect.records import AccRecord
from store import FilterError, StoreError, buffer, schema, worker, writer
from store.schema import SCHEMA_VERSION
from store.reports import acc_rows, cdr_rows, missed_rows, parse_time
from store.writer import open_store, time_text

ROOT = Path(__file__).resolve().parents[1]
KAMAILIO_ACC = ("id", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
                "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain")

# Rows Kamailio wrote in the lab (pcaps/lab-*/kamailio-acc.json), with packet times
INVITE = AccRecord(table="acc", method="INVITE", from_tag="11993SIPpTag001",
                   to_tag="11992SIPpTag011", callid="1-11993@127.0.0.1", sip_code="200",
                   sip_reason="OK", time=1795431445.123456, src_user="alice",
                   src_domain="sipprobe.lab", src_ip="127.0.0.1", dst_ouser="uas",
                   dst_user="uas", dst_domain="127.0.0.1", cseq=1)
BYE = INVITE._replace(method="BYE", time=1795431447.999999, cseq=2)
BUSY = AccRecord(table="missed_calls", method="INVITE", from_tag="12048SIPpTag001",
                 to_tag="12047SIPpTag011", callid="1-12048@127.0.0.1", sip_code="486",
                 sip_reason="Busy Here", time=1795431453.5, src_user="alice",
                 src_domain="sipprobe.lab", src_ip="127.0.0.1", dst_ouser="busy",
                 dst_user="busy", dst_domain="127.0.0.1", cseq=1)
# callee hangs up: From/To (and so users and tags) are the callee's
CALLEE_BYE = AccRecord(table="acc", method="BYE", from_tag="12017SIPpTag011",
                       to_tag="12018SIPpTag001", callid="1-12018@127.0.0.1", sip_code="200",
                       sip_reason="OK", time=1795431451.25, src_user="byer",
                       src_domain="sipprobe.lab", src_ip="127.0.0.1", dst_ouser="alice",
                       dst_user="alice", dst_domain="127.0.0.1", cseq=1)
# the proxy rewrote the request-URI user: dst_ouser (To) and dst_user (R-URI) differ
NOT_FOUND = AccRecord(table="missed_calls", method="INVITE", from_tag="12081SIPpTag001",
                      to_tag="12080SIPpTag011", callid="1-12081@127.0.0.1", sip_code="404",
                      sip_reason="Not Found", time=1795431455.75, src_user="carol",
                      src_domain="sipprobe.lab", src_ip="127.0.0.2", dst_ouser="bob",
                      dst_user="bob-mobile", dst_domain="127.0.0.1", cseq=1)

# CDRs of the lab calls above (pcaps/lab-*/kamailio-acc.json acc_cdrs), with sipprobe's extras
CDR = CdrRecord(start_time=1795431445.123456, end_time=1795431447.134456, duration=2.011,
                callid="1-11993@127.0.0.1", from_tag="11993SIPpTag001",
                to_tag="11992SIPpTag011", src_user="alice", src_domain="sipprobe.lab",
                src_ip="127.0.0.1", dst_ouser="uas", dst_user="uas", dst_domain="sipprobe.lab",
                sip_code="200", sip_reason="OK", created=1795431445.123456,
                ring_time=1795431445.125, answer_time=1795431445.130456, setuptime=0.007,
                pdd=0.001544, ended_by="caller", end_reason="completed", ring_duration=0.007,
                talk_time=2.004)
# the same call as a replay of a capture that ends before its BYE writes it
CDR_OPEN = CDR._replace(end_time=1795431446.5, duration=1.377, ended_by="",
                               end_reason="open", talk_time=1.37)
BUSY_CDR = CdrRecord(start_time=1795431453.5, end_time=1795431453.5, duration=0.0,
                     callid="1-12048@127.0.0.1", from_tag="12048SIPpTag001",
                     to_tag="12047SIPpTag011", src_user="alice", src_domain="sipprobe.lab",
                     src_ip="127.0.0.1", dst_ouser="busy", dst_user="busy",
                     dst_domain="sipprobe.lab", sip_code="486", sip_reason="Busy Here",
                     created=1795431453.5, ring_time=None, answer_time=None, setuptime=None,
                     pdd=None, ended_by="callee", end_reason="rejected", ring_duration=0.25,
                     talk_time=0.0)
# the proxy answered 404 itself: Kamailio's to_tag, sip_code and sip_reason are NULL
PROXY_404_CDR = CdrRecord(start_time=1795431455.75, end_time=1795431455.75, duration=0.0,
                          callid="1-12081@127.0.0.1", from_tag="12081SIPpTag001", to_tag=None,
                          src_user="carol", src_domain="sipprobe.lab", src_ip="127.0.0.2",
                          dst_ouser="bob", dst_user="bob", dst_domain="sipprobe.lab",
                          sip_code=None, sip_reason=None, created=1795431455.75, ring_time=None,
                          answer_time=None, setuptime=None, pdd=None, ended_by="proxy",
                          end_reason="rejected", ring_duration=0.002, talk_time=0.0)
KAMAILIO_CDR = ("id", "start_time", "end_time", "duration", "callid", "from_tag", "to_tag",
                "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain",
                "sip_code", "sip_reason")
SUMMARY = ["mos_min", "mos_side", "mos_avg_a", "mos_avg_b", "mos_rtpengine_min"]  # schema 4
CDR_EXTRAS = ["start_epoch", "end_epoch", "created", "ring_time", "answer_time", "setuptime",
              "pdd", "ended_by", "end_reason", "ring_duration", "talk_time", *SUMMARY]
NO_CDRS = {"acc_cdrs": 0, "cdrs_completed": 0}


def select(path, table: str) -> list[dict]:
    """Rows as a second connection sees them: what is committed, nothing else."""
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        con.close()


def eventually(check, timeout: float = 60.0):
    """check() once it is true: commits without flush() are made by the writer process while
    this one goes on. Raises after `timeout` seconds (a hang, not a measure of speed)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {timeout} s")
        time.sleep(0.01)
    return result


def committed(path, table: str, n: int) -> int:
    """The number of rows of `table` once the writer has committed n of them."""
    eventually(lambda: len(select(path, table)) >= n)
    return len(select(path, table))


def columns(con: sqlite3.Connection, table: str) -> list[tuple]:
    return [(r[1], r[2], r[3]) for r in con.execute(f"PRAGMA table_info({table})")]


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "sipprobe.db")


# --- schema -------------------------------------------------------------------------------

@pytest.mark.parametrize("table", ["acc", "missed_calls"])
def test_columns_are_kamailios_in_its_order_then_the_extras(db, table):
    open_store(db).close()
    kamailio = sqlite3.connect(":memory:")
    kamailio.executescript((ROOT / "lab/schema.sql").read_text())
    theirs = [name for name, _, _ in columns(kamailio, table)]
    con = sqlite3.connect(db)
    ours = columns(con, table)
    assert theirs == list(KAMAILIO_ACC)
    assert [name for name, _, _ in ours] == theirs + ["time_epoch", "cseq"]
    assert ours[7] == ("time", "TEXT", 1)
    assert ours[14:] == [("time_epoch", "REAL", 1), ("cseq", "INTEGER", 1)]
    indexes = {r[1]: r[2] for r in con.execute(f"PRAGMA index_list({table})")}
    # no index on `time`: reports filter and sort on time_epoch; callid leads the identity
    assert indexes == {f"{table}_time_epoch_idx": 0, f"{table}_identity_idx": 1}
    assert [r[2] for r in con.execute(f"PRAGMA index_info({table}_identity_idx)")] == [
        "callid", "method", "cseq", "from_tag", "to_tag", "sip_code"]
    plan = " ".join(r[3] for r in con.execute(
        f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE callid = 'x'"))
    assert f"USING INDEX {table}_identity_idx (callid=?)" in plan


def test_wal_mode_and_meta_table(db):
    assert "PRAGMA synchronous=NORMAL" in worker.PRAGMAS  # the writer process's connection
    open_store(db).close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(con.execute("SELECT key, value FROM sipprobe_meta"))
    assert meta.pop("created")[:2] == "20" and len(meta) == 2
    assert meta == {"schema_version": str(schema.SCHEMA_VERSION), "time_column": "utc"}


def test_acc_cdrs_columns_are_kamailios_in_its_order_then_the_extras(db):
    open_store(db).close()
    kamailio = sqlite3.connect(":memory:")
    kamailio.executescript((ROOT / "lab/schema.sql").read_text())
    theirs = [name for name, _, _ in columns(kamailio, "acc_cdrs")]
    con = sqlite3.connect(db)
    ours = columns(con, "acc_cdrs")
    assert theirs == list(KAMAILIO_CDR)
    assert [name for name, _, _ in ours] == theirs + CDR_EXTRAS
    assert ours[1:4] == [("start_time", "TEXT", 1), ("end_time", "TEXT", 1),
                         ("duration", "REAL", 1)]
    nullable = {name for name, _, notnull in ours if not notnull}
    assert nullable == {"id", "to_tag", "sip_code", "sip_reason", "ring_time", "answer_time",
                        "setuptime", "pdd", "ring_duration", "talk_time", "mos_min",
                        "mos_side", "mos_avg_a", "mos_avg_b", "mos_rtpengine_min"}
    assert {kind for _, kind, _ in ours[15:22]} == {"REAL"}
    assert ours[22:26] == [("ended_by", "TEXT", 1), ("end_reason", "TEXT", 1),
                           ("ring_duration", "REAL", 0), ("talk_time", "REAL", 0)]
    indexes = {r[1]: r[2] for r in con.execute("PRAGMA index_list(acc_cdrs)")}
    assert indexes == {"acc_cdrs_start_epoch_idx": 0, "acc_cdrs_identity_idx": 1}
    assert [r[2] for r in con.execute("PRAGMA index_info(acc_cdrs_identity_idx)")] == [
        "callid", "from_tag"]


def sqlite_utils_schema(path: str) -> None:
    """The tables as sipprobe created them with sqlite_utils before writing the DDL itself."""
    import sqlite_utils

    from store import runs, schema, tables

    db = sqlite_utils.Database(sqlite3.connect(path), execute_plugins=False)
    db.enable_wal()
    db.execute("BEGIN IMMEDIATE")
    for table in schema.ALL_TABLES:
        sqlite_utils_table(db, tables.BY_NAME[table], table)
    # schema 5: the state carried between runs (sip_dissect/carry.py)
    db[schema.OPEN_CALLS_TABLE].create({"callid": str, "time_epoch": float, "state": str},
                                       pk="callid", not_null={"time_epoch", "state"})
    # schema 6: each run's start, last commit and clean end (store/runs.py)
    db[runs.RUNS_TABLE].create({"id": int, "kind": str, "host": str, "pid": int,
                                "pid_start": int, "commit_interval": float, "started": float,
                                "last_commit": float, "ended": float, "noticed_by": int},
                               pk="id", not_null={"kind", "host", "pid", "pid_start",
                                                  "commit_interval", "started"})
    db[schema.META_TABLE].insert_all(
        [{"key": "schema_version", "value": str(schema.SCHEMA_VERSION)},
         {"key": "created", "value": "x"},
         {"key": "time_column", "value": "utc"}], pk="key", not_null={"value"})
    db.conn.commit()
    db.close()


def sqlite_utils_table(db, layout, table: str) -> None:
    """`table` of the tables.Table `layout`, created by sqlite_utils."""
    (pk,) = [c.name for c in layout.columns if c.primary_key]
    db[table].create({c.name: c.type for c in layout.columns}, pk=pk,
                     not_null={c.name for c in layout.columns
                               if not (c.primary_key or c.nullable)},
                     defaults={c.name: c.default for c in layout.columns
                               if c.default is not None})
    for column in layout.indexed:
        db[table].create_index([column], index_name=f"{table}_{column}_idx")
    db[table].create_index(list(layout.identity), index_name=f"{table}_identity_idx",
                           unique=True)


def test_the_schema_is_what_sqlite_utils_created(db, tmp_path):
    """Files written before and after the DDL moved to plain sqlite3 have one sqlite_master."""
    reference = str(tmp_path / "reference.db")
    sqlite_utils_schema(reference)
    open_store(db).close()
    shapes = []
    for path in (reference, db):
        con = sqlite3.connect(path)
        # no rootpage: the reference has 4 KiB pages, where the quality tables' longer DDL
        # puts sqlite_master on an overflow page and shifts the pages after it
        shapes.append((con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                   " ORDER BY rowid").fetchall(),
                       con.execute("PRAGMA schema_version").fetchone(),
                       con.execute("SELECT rowid, key FROM sipprobe_meta").fetchall(),
                       con.execute("PRAGMA journal_mode").fetchone()))
        con.close()
    assert shapes[0] == shapes[1]
    # 5 tables with 2 indexes each, open_calls and the meta table with their keys' indexes,
    # sipprobe_runs
    assert len(shapes[0][0]) == 20


def test_a_version_1_database_gains_acc_cdrs_and_keeps_its_rows(db):
    with open_store(db) as store:
        store.add(INVITE)
    con = sqlite3.connect(db)
    with con:  # as sipprobe with schema 1 left it
        con.execute("DROP TABLE acc_cdrs")
        con.execute("UPDATE sipprobe_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match=r"has no acc_cdrs table: it was written by an older "
                                         r"sipprobe; a replay or live run into it adds the table"):
        cdr_rows(db)
    with open_store(db) as store:
        store.add(INVITE)
        store.add_cdr(CDR)
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 1, "acc_cdrs": 1,
                              "cdrs_completed": 0}
    meta = dict(sqlite3.connect(db).execute("SELECT key, value FROM sipprobe_meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert [r["callid"] for r in cdr_rows(db)] == [CDR.callid]
    assert len(select(db, "acc")) == 1


V2_TABLES = ("acc", "missed_calls", "acc_cdrs")


def version_2_file(path: str, records, cdrs) -> None:
    """A file as sipprobe wrote it with schema 2: the same tables plus a row_key column (the
    SHA-1 of the row's identity) with its own unique index, and a callid index."""
    import hashlib

    import sqlite_utils

    from store import schema

    def key(parts) -> str:
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()

    sqlite_utils_schema(path)
    db = sqlite_utils.Database(sqlite3.connect(path), execute_plugins=False)
    for table in ("rtcp_reports", "call_quality"):  # schema 4's
        db.execute(f"DROP TABLE {table}")
    for column in schema.ADDED_COLUMNS["acc_cdrs"]:  # schema 4's
        db.execute(f"ALTER TABLE acc_cdrs DROP COLUMN {column}")
    for table in V2_TABLES:
        for index in [r[1] for r in db.execute(f"PRAGMA index_list({table})")]:
            db.execute(f"DROP INDEX {index}")
        db.execute(f"ALTER TABLE {table} ADD COLUMN row_key TEXT NOT NULL DEFAULT ''")
        for column in ("callid", "start_epoch" if table == schema.CDR_TABLE else "time_epoch"):
            db[table].create_index([column], index_name=f"{table}_{column}_idx")
    for rec in records:
        row = {f: v for f, v in rec._asdict().items() if f not in ("table", "time")}
        row.update(time=time_text(rec.time), time_epoch=rec.time, row_key=key(
            [rec.table, rec.callid, rec.method, rec.cseq, rec.from_tag, rec.to_tag, rec.sip_code]))
        db[rec.table].insert(row)
    for rec in cdrs:
        row = {f: v for f, v in rec._asdict().items() if f not in schema.ADDED_COLUMNS["acc_cdrs"]}
        row.update(start_time=time_text(rec.start_time), end_time=time_text(rec.end_time),
                   start_epoch=rec.start_time, end_epoch=rec.end_time,
                   row_key=key([rec.callid, rec.from_tag]))
        db[schema.CDR_TABLE].insert(row)
    for table in V2_TABLES:
        db[table].create_index(["row_key"], index_name=f"{table}_row_key_idx", unique=True)
    db.execute("UPDATE sipprobe_meta SET value = '2' WHERE key = 'schema_version'")
    db.conn.commit()
    db.close()


def test_a_version_2_file_is_migrated_and_a_rerun_still_adds_nothing(db, tmp_path):
    version_2_file(db, [INVITE, BYE, BUSY], [CDR_OPEN])
    assert [r["callid"] for r in acc_rows(db)] == [INVITE.callid, BYE.callid]  # read as it is
    assert cdr_rows(db)[0]["end_reason"] == "open"
    with open_store(db) as store:  # the same capture again, now with the BYE's CDR
        for rec in (INVITE, BYE, BUSY):
            store.add(rec)
        store.add_cdr(CDR)
        store.add(CALLEE_BYE)
    assert store.counts() == {"acc": 1, "missed_calls": 0, "duplicates": 3, "acc_cdrs": 0,
                              "cdrs_completed": 1}
    fresh = str(tmp_path / "fresh.db")
    with open_store(fresh) as store:
        for rec in (INVITE, BYE, BUSY, CALLEE_BYE):
            store.add(rec)
        store.add_cdr(CDR)
    con, new = sqlite3.connect(db), sqlite3.connect(fresh)
    for table in ("acc", "missed_calls", "acc_cdrs"):
        assert columns(con, table) == columns(new, table)
        assert sorted(r[1] for r in con.execute(f"PRAGMA index_list({table})")) == \
            sorted(r[1] for r in new.execute(f"PRAGMA index_list({table})"))
        assert select(db, table) == select(fresh, table)  # ids and every value
    assert dict(con.execute("SELECT key, value FROM sipprobe_meta"))["schema_version"] == \
        str(SCHEMA_VERSION)


# --- rows ---------------------------------------------------------------------------------

def test_rows_read_back_column_by_column(db):
    with open_store(db) as store:
        for rec in (INVITE, BUSY, BYE):
            store.add(rec)
    assert store.counts() == {"acc": 2, "missed_calls": 1, "duplicates": 0, **NO_CDRS}
    common = {"from_tag": "11993SIPpTag001", "to_tag": "11992SIPpTag011",
              "callid": "1-11993@127.0.0.1", "sip_code": "200", "sip_reason": "OK",
              "src_user": "alice", "src_domain": "sipprobe.lab", "src_ip": "127.0.0.1",
              "dst_ouser": "uas", "dst_user": "uas", "dst_domain": "127.0.0.1"}
    assert select(db, "acc") == [
        {"id": 1, "method": "INVITE", **common, "time": "2026-11-23 10:57:25",
         "time_epoch": 1795431445.123456, "cseq": 1},
        {"id": 2, "method": "BYE", **common, "time": "2026-11-23 10:57:27",
         "time_epoch": 1795431447.999999, "cseq": 2},
    ]
    assert select(db, "missed_calls") == [
        {"id": 1, "method": "INVITE", "from_tag": "12048SIPpTag001",
         "to_tag": "12047SIPpTag011", "callid": "1-12048@127.0.0.1", "sip_code": "486",
         "sip_reason": "Busy Here", "time": "2026-11-23 10:57:33", "src_user": "alice",
         "src_domain": "sipprobe.lab", "src_ip": "127.0.0.1", "dst_ouser": "busy",
         "dst_user": "busy", "dst_domain": "127.0.0.1", "time_epoch": 1795431453.5,
         "cseq": 1},
    ]
    # the column order of the dicts above is the table's
    assert list(select(db, "acc")[0]) == list(KAMAILIO_ACC) + ["time_epoch", "cseq"]


@pytest.mark.parametrize("epoch", [1795431445.0, 1795431445.000001, 1795431445.5,
                                   1795431445.999999, 0.25, 951825600.75, -0.5])
def test_time_is_utc_text_of_the_floor_of_the_epoch(epoch):
    expected = datetime.fromtimestamp(math.floor(epoch), timezone.utc)
    assert time_text(epoch) == expected.strftime("%Y-%m-%d %H:%M:%S")
    assert time_text(1795431445.999999) == "2026-11-23 10:57:25"  # truncated, never rounded


@pytest.fixture
def utc_plus_2(monkeypatch):
    monkeypatch.setenv("TZ", "SPT-2")  # POSIX: 2 hours east of UTC, no tzdata needed
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_local_time_option(db, utc_plus_2):
    with open_store(db, local_time=True) as store:
        store.add(INVITE)
    row = select(db, "acc")[0]
    assert (row["time"], row["time_epoch"]) == ("2026-11-23 12:57:25", 1795431445.123456)
    meta = dict(sqlite3.connect(db).execute("SELECT key, value FROM sipprobe_meta"))
    assert meta["time_column"] == "local"
    with pytest.raises(StoreError, match=r"stores `time` as local time, not utc: keep the setting"):
        open_store(db)
    open_store(db, local_time=True).close()


def test_replaying_the_same_records_adds_nothing(db):
    with open_store(db) as store:
        for rec in (INVITE, BYE, BUSY):
            store.add(rec)
    with open_store(db) as again:
        for rec in (INVITE, BYE, BUSY, INVITE):
            again.add(rec)
        # same transaction and reply seen at another time (a second capture point): same row
        again.add(BYE._replace(time=BYE.time + 0.004))
        again.add(CALLEE_BYE)
    assert again.counts() == {"acc": 1, "missed_calls": 0, "duplicates": 5, **NO_CDRS}
    assert [r["id"] for r in select(db, "acc")] == [1, 2, 3]
    assert len(select(db, "missed_calls")) == 1


def test_each_part_of_the_row_identity_makes_another_row(db):
    """callid, method, cseq, tags and sip_code (and the table) are the row; its time, reason
    and URIs are not: the same transaction seen again is the same row."""
    changes = ({"table": "missed_calls"}, {"callid": "x"}, {"method": "BYE"}, {"cseq": 2},
               {"from_tag": "x"}, {"to_tag": "x"}, {"sip_code": "202"})
    with open_store(db) as store:
        store.add(INVITE)
        for change in changes:
            store.add(INVITE._replace(**change))
        store.add(INVITE._replace(time=0.0, sip_reason="Fine", src_user="x", dst_domain="y"))
    assert store.counts() == {"acc": 7, "missed_calls": 1, "duplicates": 1, **NO_CDRS}


# --- CDRs ---------------------------------------------------------------------------------

def test_a_cdr_reads_back_column_by_column(db):
    with open_store(db) as store:
        store.add_cdr(CDR)
        store.add_cdr(PROXY_404_CDR)
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 0, "acc_cdrs": 2,
                              "cdrs_completed": 0}
    rows = select(db, "acc_cdrs")
    assert rows[0] == {
        "id": 1, "start_time": "2026-11-23 10:57:25", "end_time": "2026-11-23 10:57:27",
        "duration": 2.011, "callid": "1-11993@127.0.0.1", "from_tag": "11993SIPpTag001",
        "to_tag": "11992SIPpTag011", "src_user": "alice", "src_domain": "sipprobe.lab",
        "src_ip": "127.0.0.1", "dst_ouser": "uas", "dst_user": "uas",
        "dst_domain": "sipprobe.lab", "sip_code": "200", "sip_reason": "OK",
        "start_epoch": 1795431445.123456, "end_epoch": 1795431447.134456,
        "created": 1795431445.123456, "ring_time": 1795431445.125,
        "answer_time": 1795431445.130456, "setuptime": 0.007, "pdd": 0.001544,
        "ended_by": "caller", "end_reason": "completed", "ring_duration": 0.007,
        "talk_time": 2.004, **dict.fromkeys(SUMMARY)}
    assert list(rows[0]) == list(KAMAILIO_CDR) + CDR_EXTRAS
    assert (rows[1]["to_tag"], rows[1]["sip_code"], rows[1]["sip_reason"]) == (None, None, None)
    assert (rows[1]["ring_time"], rows[1]["pdd"], rows[1]["duration"]) == (None, None, 0.0)


def test_cdr_times_follow_the_local_time_option(db, utc_plus_2):
    with open_store(db, local_time=True) as store:
        store.add_cdr(CDR)
    row = select(db, "acc_cdrs")[0]
    assert (row["start_time"], row["end_time"]) == ("2026-11-23 12:57:25", "2026-11-23 12:57:27")
    assert row["start_epoch"] == CDR.start_time


def test_duration_is_stored_to_the_millisecond(db):
    with open_store(db) as store:
        store.add_cdr(CDR._replace(duration=2.0114999))
    assert select(db, "acc_cdrs")[0]["duration"] == 2.011


def test_a_cdr_row_is_the_call(db):
    """Call-ID and the caller's tag are the row: another callee tag is the same call."""
    with open_store(db) as store:
        for rec in (CDR, CDR._replace(to_tag="x"), CDR._replace(callid="x"),
                    CDR._replace(from_tag="x")):
            store.add_cdr(rec)
    assert store.counts()["acc_cdrs"] == 3
    assert [(r["callid"], r["from_tag"], r["to_tag"]) for r in select(db, "acc_cdrs")] == [
        (CDR.callid, CDR.from_tag, CDR.to_tag), ("x", CDR.from_tag, CDR.to_tag),
        (CDR.callid, "x", CDR.to_tag)]


def test_an_open_cdr_is_completed_in_place_by_a_later_run(db):
    with open_store(db) as store:
        store.add_cdr(BUSY_CDR)
        store.add_cdr(CDR_OPEN)
    assert store.counts()["acc_cdrs"] == 2
    [before] = [r for r in select(db, "acc_cdrs") if r["callid"] == CDR.callid]
    assert (before["id"], before["end_reason"], before["duration"]) == (2, "open", 1.377)
    assert (before["end_time"], before["ended_by"]) == ("2026-11-23 10:57:26", "")
    with open_store(db) as store:  # the replay of a capture that holds the BYE, or a live run
        store.add_cdr(BUSY_CDR)
        store.add_cdr(CDR)
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 0, "acc_cdrs": 0,
                              "cdrs_completed": 1}
    rows = select(db, "acc_cdrs")
    assert [r["id"] for r in rows] == [1, 2]
    after = rows[1]
    assert after["id"] == before["id"]
    assert (after["end_time"], after["end_epoch"], after["duration"]) == \
        ("2026-11-23 10:57:27", CDR.end_time, 2.011)
    assert (after["ended_by"], after["end_reason"]) == ("caller", "completed")
    assert rows[0] == select(db, "acc_cdrs")[0]  # the finished call is untouched


def test_a_finished_cdr_is_never_downgraded_to_open(db):
    with open_store(db) as store:
        store.add_cdr(CDR)
    finished = select(db, "acc_cdrs")
    with open_store(db) as store:  # a replay of the earlier capture, without the BYE
        store.add_cdr(CDR_OPEN)
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 0, **NO_CDRS}
    assert select(db, "acc_cdrs") == finished
    with open_store(db) as store:  # nor changed by another finished record of the call
        store.add_cdr(CDR._replace(end_time=CDR.end_time + 9, end_reason="expired"))
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 0, **NO_CDRS}
    assert select(db, "acc_cdrs") == finished


def test_rerunning_adds_no_cdr(db):
    for _ in range(2):
        with open_store(db) as store:
            for rec in (CDR_OPEN, BUSY_CDR, PROXY_404_CDR):
                store.add_cdr(rec)
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 0, **NO_CDRS}
    assert [r["end_reason"] for r in select(db, "acc_cdrs")] == ["open", "rejected", "rejected"]


def test_open_and_finished_records_of_one_call_in_one_batch(db):
    with open_store(db) as store:
        store.add_cdr(CDR_OPEN)
        store.add_cdr(CDR)
        store.add_cdr(CDR_OPEN)
    assert (store.counts()["acc_cdrs"], store.counts()["cdrs_completed"]) == (1, 1)
    [row] = select(db, "acc_cdrs")
    assert (row["id"], row["end_reason"], row["duration"]) == (1, "completed", 2.011)


def test_cdrs_commit_in_the_batches_of_acc_rows(db):
    store = open_store(db, batch_rows=3, batch_seconds=3600)
    store.add(INVITE)
    store.add_cdr(CDR_OPEN)
    assert (len(select(db, "acc_cdrs")), store.pending) == (0, 2)
    store.add(BYE)  # a full batch: committed by the writer without a flush
    assert (committed(db, "acc", 2), committed(db, "acc_cdrs", 1)) == (2, 1)
    assert eventually(lambda: store.pending == 0)
    store.add_cdr(CDR)
    assert select(db, "acc_cdrs")[0]["end_reason"] == "open"
    store.close()
    assert select(db, "acc_cdrs")[0]["end_reason"] == "completed"
    assert store.counts() == {"acc": 2, "missed_calls": 0, "duplicates": 0, "acc_cdrs": 1,
                              "cdrs_completed": 1}
    with pytest.raises(ValueError, match="closed"):
        store.add_cdr(CDR)


# --- batches ------------------------------------------------------------------------------

def numbered(i: int) -> AccRecord:
    return INVITE._replace(callid=f"{i}-batch@127.0.0.1", time=INVITE.time + i)


def test_a_full_batch_is_committed_without_close(db):
    store = open_store(db, batch_rows=3, batch_seconds=3600)
    store.add(numbered(0))
    store.add(numbered(1))
    assert (len(select(db, "acc")), store.pending) == (0, 2)
    store.add(numbered(2))
    assert committed(db, "acc", 3) == 3
    assert eventually(lambda: store.pending == 0)
    store.add(numbered(3))
    assert (len(select(db, "acc")), store.pending) == (3, 1)
    store.flush()
    assert len(select(db, "acc")) == 4
    assert store.counts() == {"acc": 4, "missed_calls": 0, "duplicates": 0, **NO_CDRS}
    store.close()
    store.close()  # a second close does nothing


def test_an_old_batch_is_committed_by_the_next_add_or_flush_if_due(db, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(buffer, "now", lambda: clock[0])
    store = open_store(db, batch_rows=500, batch_seconds=1.0)
    store.add(numbered(0))
    clock[0] = 100.9
    store.add(numbered(1))
    store.flush_if_due()
    assert len(select(db, "acc")) == 0
    clock[0] = 101.0
    store.flush_if_due()  # what a capture loop calls when idle
    assert committed(db, "acc", 2) == 2
    store.add(numbered(2))  # a new batch starts at 101.0
    clock[0] = 102.5
    store.add(numbered(3))
    assert committed(db, "acc", 4) == 4
    assert eventually(lambda: store.pending == 0)
    store.close()


def test_rows_and_missed_calls_of_one_batch_commit_together(db):
    with open_store(db, batch_rows=2) as store:
        store.add(INVITE)
        store.add(BUSY)
        # one transaction: the reader sees both tables' rows at once
        eventually(lambda: select(db, "acc") or select(db, "missed_calls"))
        assert (len(select(db, "acc")), len(select(db, "missed_calls"))) == (1, 1)


def test_the_with_block_commits_even_when_it_raises(db):
    with pytest.raises(RuntimeError):
        with open_store(db) as store:
            store.add(INVITE)
            raise RuntimeError("pipeline bug")
    assert len(select(db, "acc")) == 1
    with pytest.raises(ValueError, match="closed"):
        store.add(BYE)


def test_a_record_for_an_unknown_table_is_refused(db):
    with open_store(db) as store:
        with pytest.raises(ValueError, match="acc_cdrs"):
            store.add(INVITE._replace(table="acc_cdrs"))


def test_records_of_other_classes_mix_with_acc_records(db):
    """add() keeps an AccRecord as it is until its chunk is sent; records of any other class
    with the same fields (a dataclass, a NamedTuple in another order) become tuples at once,
    and a bad table is refused whichever path the record takes."""
    import dataclasses
    from typing import NamedTuple

    Plain = dataclasses.make_dataclass("Plain", AccRecord._fields)
    Shuffled = NamedTuple("Shuffled", [(f, object) for f in reversed(AccRecord._fields)])
    other = BYE._replace(callid="other-1")
    shuffled = BUSY._replace(callid="other-2")
    with open_store(db) as store:
        store.add(INVITE)
        store.add(Plain(*other))
        store.add(Shuffled(*reversed(shuffled)))
        with pytest.raises(ValueError, match="not 'acc_cdrs'"):
            store.add(BYE._replace(table="acc_cdrs"))
        store.add(CALLEE_BYE)
    assert [(r["callid"], r["method"], r["cseq"], r["time_epoch"]) for r in select(db, "acc")] == \
        [(r.callid, r.method, r.cseq, r.time) for r in (INVITE, other, CALLEE_BYE)]
    assert [(r["callid"], r["method"], r["cseq"], r["to_tag"]) for r in select(db, "missed_calls")] \
        == [(shuffled.callid, shuffled.method, shuffled.cseq, shuffled.to_tag)]


# the start of the scripts a test runs as a probe process to kill: a store's module and a record
CHILD_PRELUDE = """
import os, sys
from sip_dissect.records import AccRecord
from store.writer import open_store

rec = AccRecord(table="acc", method="INVITE", from_tag="f", to_tag="t", callid="", sip_code="200",
                sip_reason="OK", time=1795431445.5, src_user="alice", src_domain="lab",
                src_ip="127.0.0.1", dst_ouser="uas", dst_user="uas", dst_domain="127.0.0.1",
                cseq=1)
"""
CRASH = CHILD_PRELUDE + """
store = open_store(sys.argv[1], batch_rows=10, batch_seconds=3600)
for i in range(32):
    store.add(rec._replace(callid=f"crash-{i}", time=rec.time + i))
    if i == 6:
        store.flush()
        print(store._proc.pid, store.counts()["acc"], flush=True)
os._exit(9)  # killed mid-batch: no flush, no close, no atexit
"""


def gone(pid: int) -> bool:
    """Process `pid` has ended (or is a zombie nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_killed_writer_loses_only_the_uncommitted_batch(db):
    proc = subprocess.run([sys.executable, "-c", CRASH, db], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 9, proc.stderr
    writer_pid, flushed = map(int, proc.stdout.split())
    assert flushed == 7
    # the writer process does not outlive its parent: it commits what it was handed (two
    # batches of 10) and ends; the 5 rows of the batch being filled are lost
    eventually(lambda: gone(writer_pid))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [r[0] for r in con.execute("SELECT callid FROM acc ORDER BY id")] == \
        [f"crash-{i}" for i in range(27)]
    con.close()
    # the rerun after the crash fills in exactly what was lost
    rec = INVITE._replace(from_tag="f", to_tag="t", src_domain="lab", time=1795431445.5)
    with open_store(db) as store:
        for i in range(32):
            store.add(rec._replace(callid=f"crash-{i}", time=rec.time + i))
    assert store.counts() == {"acc": 5, "missed_calls": 0, "duplicates": 27, **NO_CDRS}


# --- errors that teach --------------------------------------------------------------------

def test_missing_directory(tmp_path):
    path = tmp_path / "nowhere" / "sipprobe.db"
    with pytest.raises(StoreError, match=rf"directory {tmp_path}/nowhere does not exist: "
                                         rf"create it \(mkdir -p {tmp_path}/nowhere\)"):
        open_store(str(path))


def test_a_directory_is_not_a_database(tmp_path):
    with pytest.raises(StoreError, match=rf"{tmp_path} is a directory: give a file name, "
                                         rf"e.g. --db {tmp_path}/sipprobe.db"):
        open_store(str(tmp_path))


def test_a_file_that_is_not_sqlite(db):
    Path(db).write_text("call-id,from\n" * 100)
    with pytest.raises(StoreError, match=rf"^{db} is not a SQLite database: give a new file"):
        open_store(db)
    assert Path(db).read_text() == "call-id,from\n" * 100


def test_a_kamailio_database_is_left_alone(db):
    con = sqlite3.connect(db)
    con.executescript((ROOT / "lab/schema.sql").read_text())
    con.close()
    with pytest.raises(StoreError, match=r"has acc, acc_cdrs and missed_calls tables that sipprobe "
                                         r"did not "
                                         r"write \(a Kamailio database\?\): give sipprobe a file"):
        open_store(db)
    with pytest.raises(StoreError, match=r"table acc has columns \(id, method, .*, dst_domain\) "
                                         r"that sipprobe did not write"):
        acc_rows(db)


def test_a_database_from_a_newer_sipprobe(db):
    open_store(db).close()
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE sipprobe_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match=r"newer sipprobe \(schema 99, this one knows 6\)"):
        open_store(db)


def in_child_as_nobody(fn) -> str:
    """fn() run in a forked child with the uid of `nobody`: root ignores file modes."""
    import sqlite_utils  # noqa: F401  (imported before the fork: nobody cannot read /root)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                fn()
                outcome = "no error"
            except StoreError as exc:
                outcome = f"StoreError: {exc}"
            except BaseException as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write, outcome.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    return outcome


def as_unprivileged(fn) -> str:
    if os.geteuid() == 0:
        return in_child_as_nobody(fn)
    try:
        fn()
        return "no error"
    except StoreError as exc:
        return f"StoreError: {exc}"


@pytest.fixture
def shared_dir():
    """A directory `nobody` can enter (pytest's tmp_path is private to root)."""
    path = tempfile.mkdtemp(prefix="sipprobe-store-")
    os.chmod(path, 0o755)
    yield path
    os.chmod(path, 0o755)
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))
    os.rmdir(path)


def test_read_only_database(shared_dir):
    path = os.path.join(shared_dir, "sipprobe.db")
    with open_store(path) as store:
        store.add(INVITE)
    os.chmod(path, 0o444)
    assert as_unprivileged(lambda: open_store(path)) == (
        f"StoreError: {path} is read-only: make it writable (chmod u+w {path}) "
        "or give another --db path")
    # reports only read: they still work
    assert as_unprivileged(lambda: acc_rows(path) and None) == "no error"


def test_directory_without_write_permission(shared_dir):
    path = os.path.join(shared_dir, "sipprobe.db")
    os.chmod(shared_dir, 0o555)
    assert as_unprivileged(lambda: open_store(path)) == (
        f"StoreError: cannot write in {shared_dir}, where SQLite keeps the database's -wal and "
        "-shm files: make it writable or give another --db path")


# --- reports ------------------------------------------------------------------------------

@pytest.fixture
def filled(db) -> str:
    with open_store(db) as store:
        for rec in (CALLEE_BYE, BYE, INVITE, NOT_FOUND, BUSY):  # not in time order
            store.add(rec)
    return db


def callids(rows) -> list[tuple]:
    return [(r["method"], r["callid"]) for r in rows]


def test_reports_are_in_packet_time_order_with_the_report_columns(filled):
    rows = acc_rows(filled)
    assert callids(rows) == [("INVITE", "1-11993@127.0.0.1"), ("BYE", "1-11993@127.0.0.1"),
                             ("BYE", "1-12018@127.0.0.1")]
    assert [r["id"] for r in rows] == [3, 2, 1]
    assert list(rows[0]) == list(KAMAILIO_ACC) + ["time_epoch", "cseq"]
    assert rows[0]["time"] == "2026-11-23 10:57:25" and rows[0]["time_epoch"] == INVITE.time
    assert [r["sip_code"] for r in missed_rows(filled)] == ["486", "404"]


@pytest.mark.parametrize("since, until, expected", [
    ("2026-11-23T10:57:26Z", None, ["BYE", "BYE"]),
    ("2026-11-23 10:57:26", None, ["BYE", "BYE"]),  # naive: UTC
    ("2026-11-23T11:57:26+01:00", None, ["BYE", "BYE"]),
    (None, "2026-11-23T10:57:27.999999Z", ["INVITE"]),  # until is exclusive
    (None, 1795431448, ["INVITE", "BYE"]),
    ("1795431445.123456", "1795431451.25", ["INVITE", "BYE"]),  # since is inclusive
    ("2026-11-23", "2026-11-24", ["INVITE", "BYE", "BYE"]),
    ("2026-11-24", None, []),
])
def test_since_and_until_compare_packet_time(filled, since, until, expected):
    assert [r["method"] for r in acc_rows(filled, since=since, until=until)] == expected


def test_filters(filled):
    assert callids(acc_rows(filled, callid="1-12018@127.0.0.1")) == [("BYE", "1-12018@127.0.0.1")]
    assert callids(acc_rows(filled, method="INVITE")) == [("INVITE", "1-11993@127.0.0.1")]
    # SIP methods are case-sensitive, so no row holds "invite": the filter means INVITE
    assert callids(acc_rows(filled, method="invite")) == [("INVITE", "1-11993@127.0.0.1")]
    # user: the caller (src_user), the dialled user (dst_ouser) or the rewritten one (dst_user)
    assert [r["src_user"] for r in acc_rows(filled, user="alice")] == ["alice", "alice", "byer"]
    assert [r["sip_code"] for r in missed_rows(filled, user="bob")] == ["404"]
    assert [r["sip_code"] for r in missed_rows(filled, user="bob-mobile")] == ["404"]
    assert [r["dst_user"] for r in missed_rows(filled, user="bo")] == ["bob-mobile"]  # partial
    assert missed_rows(filled, user="bo%") == []  # LIKE's wildcards are matched as text
    assert missed_rows(filled, user="12081") == []  # a Call-ID is no user
    assert [r["sip_code"] for r in missed_rows(filled, code="486")] == ["486"]
    assert [r["sip_code"] for r in missed_rows(filled, code="4xx")] == ["486", "404"]
    assert [r["sip_code"] for r in missed_rows(filled, code="4XX")] == ["486", "404"]
    assert missed_rows(filled, code="5xx") == []
    assert [r["method"] for r in acc_rows(filled, limit=2)] == ["INVITE", "BYE"]
    assert callids(acc_rows(filled, user="alice", method="BYE", since="2026-11-23T10:57:28Z")) \
        == [("BYE", "1-12018@127.0.0.1")]


@pytest.mark.parametrize("kwargs, message", [
    ({"code": "48"}, "bad SIP code '48': give three digits (486) or a class (4xx)"),
    ({"code": "4%%"}, "bad SIP code '4%%'"),
    ({"since": "last week"}, "bad time 'last week': give a date (2026-11-23, "
                             "2026-11-23T10:57:25Z, 2026-11-23 10:57:25+01:00), epoch seconds, "
                             "a time ago (30m, 2h, 7d) or today / yesterday"),
    ({"until": "nan"}, "bad time 'nan'"),
    ({"limit": 0}, "bad limit 0: give a positive number of rows"),
])
def test_bad_filters_are_explained(filled, kwargs, message):
    with pytest.raises(FilterError) as info:
        acc_rows(filled, **kwargs)
    assert str(info.value).startswith(message)


def test_parse_time():
    assert parse_time("2026-11-23T10:57:25Z") == 1795431445.0
    assert parse_time("2026-11-23T10:57:25.5+00:00") == 1795431445.5
    assert parse_time(" 1795431445.25 ") == 1795431445.25
    assert parse_time(1795431445) == 1795431445.0
    now = 1795431445.0  # 2026-11-23 10:57:25 UTC
    assert parse_time("2h", now=now) == now - 7200
    assert parse_time("30m ago", now=now) == now - 1800
    assert parse_time("7d", now=now) == now - 7 * 86400
    assert parse_time("today", now=now) == parse_time("2026-11-23")
    assert parse_time("Yesterday", now=now) == parse_time("2026-11-22")


def test_report_on_a_missing_database_creates_nothing(tmp_path):
    path = tmp_path / "typo.db"
    with pytest.raises(StoreError) as info:
        missed_rows(str(path))
    assert str(info.value) == (f"no such database: {path}: "
                               f"run `sipprobe replay CAPTURE --db {path}` first")
    assert not path.exists()


def test_report_on_a_database_without_the_table(db):
    sqlite3.connect(db).execute("CREATE TABLE notes (x)").connection.close()
    with pytest.raises(StoreError) as info:
        acc_rows(db)
    assert str(info.value) == (f"{db} has no acc table: it was not written by sipprobe; "
                               f"run `sipprobe replay CAPTURE --db {db}` first")


def test_report_on_a_file_that_is_not_sqlite(db):
    Path(db).write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(200))  # a pcap header
    with pytest.raises(StoreError, match="is not a SQLite database"):
        acc_rows(db)


@pytest.fixture
def cdrs(db) -> str:
    with open_store(db) as store:
        for rec in (PROXY_404_CDR, CDR_OPEN, BUSY_CDR):  # not in time order
            store.add_cdr(rec)
    return db


def test_cdr_report_is_in_start_order_with_every_column(cdrs):
    rows = cdr_rows(cdrs)
    assert [(r["id"], r["callid"]) for r in rows] == [
        (2, "1-11993@127.0.0.1"), (3, "1-12048@127.0.0.1"), (1, "1-12081@127.0.0.1")]
    assert list(rows[0]) == list(KAMAILIO_CDR) + CDR_EXTRAS


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [2, 3, 1]),
    ({"since": "2026-11-23T10:57:30Z"}, [3, 1]),  # the start, not the end
    ({"until": 1795431453.5}, [2]),
    ({"since": 1795431445.123456, "until": "1795431445.123457"}, [2]),
    ({"callid": "1-12048@127.0.0.1"}, [3]),
    ({"user": "uas"}, [2]),
    ({"user": "alice"}, [2, 3]),
    ({"user": "carol"}, [1]),
    ({"code": "4xx"}, [3]),  # a NULL sip_code matches no code
    ({"code": "200"}, [2]),
    ({"end_reason": "rejected"}, [3, 1]),
    ({"end_reason": "open"}, [2]),
    ({"end_reason": "completed"}, []),
    ({"end_reason": "rejected", "user": "alice"}, [3]),
    ({"limit": 1}, [2]),
])
def test_cdr_filters(cdrs, kwargs, expected):
    assert [r["id"] for r in cdr_rows(cdrs, **kwargs)] == expected


def test_a_bad_end_reason_is_explained(cdrs):
    with pytest.raises(FilterError) as info:
        cdr_rows(cdrs, end_reason="answered")
    assert str(info.value) == ("bad end reason 'answered': give completed, cancelled, rejected, "
                               "expired, open or unanswered")


def test_reports_read_while_a_writer_holds_uncommitted_rows(db):
    with open_store(db, batch_rows=2) as store:
        for rec in (INVITE, BYE, CALLEE_BYE):
            store.add(rec)
        eventually(lambda: acc_rows(db))
        assert len(acc_rows(db)) == 2  # WAL: readers see committed batches, never block
    assert len(acc_rows(db)) == 3


def test_a_version_3_file_gains_talk_time_and_ring_duration_from_its_own_columns(db):
    with open_store(db) as store:
        store.add_cdr(CDR)
        store.add_cdr(BUSY_CDR)
    con = sqlite3.connect(db)
    with con:  # as schema 3 left it: none of schema 4's columns and tables
        for column in schema.ADDED_COLUMNS["acc_cdrs"]:
            con.execute(f"ALTER TABLE acc_cdrs DROP COLUMN {column}")
        con.execute("DROP TABLE rtcp_reports")
        con.execute("DROP TABLE call_quality")
        con.execute("UPDATE sipprobe_meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    assert [r["talk_time"] for r in cdr_rows(db)] == [None, None]  # a report reads it as is
    open_store(db).close()
    rows = select(db, "acc_cdrs")
    # answered: answer - created and end - answer; a failure's reply time was never stored
    assert [(r["ring_duration"], r["talk_time"]) for r in rows] == [(0.007, 2.004), (None, 0.0)]
    assert dict(sqlite3.connect(db).execute("SELECT key, value FROM sipprobe_meta"))[
        "schema_version"] == str(schema.SCHEMA_VERSION)


def test_database_urls_in_messages_hide_their_password(tmp_path):
    """The one `store.shown` every message about a database URL uses: no password, neither in
    the user part nor as a parameter; the rest (user, host, port, database, other parameters)
    kept so the operator knows which database it was."""
    from store import shown

    assert shown("postgresql://probe:s3cret@db.example:5433/acc") == \
        "postgresql://probe@db.example:5433/acc"
    assert shown("mysql://kam:s3cret@127.0.0.1/kamailio?unix_socket=/run/m.sock") == \
        "mysql://kam@127.0.0.1/kamailio?unix_socket=%2Frun%2Fm.sock"
    assert shown("postgresql://probe@db/acc?password=s3cret&sslmode=require") == \
        "postgresql://probe@db/acc?sslmode=require"
    assert shown("postgresql://[::1]:5432/acc") == "postgresql://[::1]:5432/acc"
    for db, proxy in (("postgresql://u:s3cret@127.0.0.1:1/x", None),
                      ("sipprobe.db", "mysql://u:s3cret@127.0.0.1:1/x"),
                      ("sipprobe.db", "postgresql://u@127.0.0.1:1/x?password=s3cret")):
        args = ["report", "acc", "--db", db] if proxy is None else \
            ["diff", "--db", db, "--proxy-db", proxy]
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "sipprobe"), *args],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 2 and "u@127.0.0.1:1/x" in r.stderr, r.stderr
        assert "s3cret" not in r.stderr + r.stdout
