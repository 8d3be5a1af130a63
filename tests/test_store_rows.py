"""store/rows.py and the writer's statements of many rows: the same rows as one record at a time,
whatever a chunk holds."""
from __future__ import annotations

import sqlite3

import pytest

from store import rows, schema, worker
from store.writer import open_store
from tests.test_store import BUSY, CDR, CDR_OPEN, INVITE, PROXY_404_CDR, select
from tests.test_store_writer import ODD_TEXT


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "sipprobe.db")


def plain_chunk(n: int) -> list:
    return [INVITE._replace(callid=f"{i}-rows@127.0.0.1", cseq=i) for i in range(n)]


# --- rows: the parameters of the writer's statements -----------------------------------------

def test_acc_params_name_every_column_but_id():
    assert sorted(rows.ACC_PARAMS) == sorted(schema.COLUMN_NAMES[1:])
    assert sorted(rows.CDR_PARAMS) == sorted(set(schema.CDR_COLUMN_NAMES[1:])
                                             - set(schema.SUMMARY_NAMES))  # the writer's


def test_an_acc_row_holds_each_column_s_value():
    times = rows.TimeTexts(False)
    (row,) = rows.acc_rows([tuple(INVITE)], times)
    assert dict(zip(rows.ACC_PARAMS, row)) == {
        **{f: getattr(INVITE, f) for f in rows.ACC_FIELDS if f not in ("table", "time")},
        "time_epoch": INVITE.time, "time": "2026-11-23 10:57:25"}


def test_a_cdr_row_holds_each_column_s_value():
    rec = CDR._replace(duration=2.0114999)
    (row,) = rows.cdr_rows([tuple(rec)], rows.TimeTexts(False))
    assert dict(zip(rows.CDR_PARAMS, row)) == {
        **{f: getattr(rec, f) for f in rows.CDR_FIELDS[3:]},
        "start_epoch": rec.start_time, "end_epoch": rec.end_time,
        "start_time": "2026-11-23 10:57:25", "end_time": "2026-11-23 10:57:27",
        "duration": 2.011}


@pytest.mark.parametrize("build, record", [(rows.acc_rows, tuple(INVITE)[:-1]),
                                           (rows.acc_rows, tuple(INVITE) + ("extra",)),
                                           (rows.cdr_rows, tuple(CDR)[:-1])])
def test_a_record_with_other_fields_is_refused(build, record):
    with pytest.raises(ValueError, match="fields"):
        build([record], rows.TimeTexts(False))


def test_a_short_record_in_a_chunk_is_left_out_and_the_others_written(db):
    open_store(db).close()
    writer = worker.Writer(db, db, False)
    chunk = [tuple(r) for r in plain_chunk(40)]
    chunk.insert(5, chunk[5][:-1])
    writer.rows(chunk, [tuple(CDR), tuple(CDR_OPEN)[:-2]])
    counts, rejected = writer.commit()
    writer.close()
    assert counts["acc"] == 40 and counts["acc_cdrs"] == 1
    assert len(rejected) == 2 and all(r.startswith("ValueError") for r in rejected)


# --- statements of many rows ------------------------------------------------------------------

def test_chunks_of_many_statements_insert_in_order_and_skip_duplicates(db):
    n = 3 * worker.GROUP_ROWS + 5  # whole statements and a rest
    records = []
    for i, rec in enumerate(plain_chunk(n)):
        records.append(rec)
        if i % 9 == 4:
            records.append(BUSY._replace(callid=f"{i}-busy"))
        if i % 11 == 3:
            records.append(records[i // 2])  # a duplicate, in this statement or an earlier one
    with open_store(db) as store:
        for rec in records:
            store.add(rec)
    acc = [r for r in records if r.table == "acc"]
    unique_acc = list(dict.fromkeys(acc))
    assert store.counts() == {"acc": n, "missed_calls": len(records) - len(acc),
                              "duplicates": len(acc) - n, "acc_cdrs": 0, "cdrs_completed": 0}
    stored = select(db, "acc")
    assert [r["id"] for r in stored] == list(range(1, n + 1))
    assert [(r["callid"], r["cseq"], r["time_epoch"], r["time"]) for r in stored] \
        == [(r.callid, r.cseq, r.time, "2026-11-23 10:57:25") for r in unique_acc]
    assert [r["callid"] for r in select(db, "missed_calls")] == [
        r.callid for r in records if r.table == "missed_calls"]
    with open_store(db) as again:
        for rec in records:
            again.add(rec)
    assert again.counts()["duplicates"] == len(records)


def test_odd_records_among_many_are_rows_of_their_own_once(db):
    odd = [INVITE._replace(callid=text, cseq=i) for i, text in enumerate(ODD_TEXT)]
    odd.append(INVITE._replace(callid="int-code", sip_code=200))
    records = plain_chunk(2 * worker.GROUP_ROWS) + odd
    for _ in range(2):
        with open_store(db) as store:
            for rec in records + records[:5]:
                store.add(rec)
            store.add_cdr(PROXY_404_CDR)
            store.add_cdr(CDR._replace(callid='quo"te'))
    assert [(r["callid"], r["cseq"], r["sip_code"]) for r in select(db, "acc")] == [
        (r.callid, r.cseq, str(r.sip_code)) for r in records]
    assert [r["callid"] for r in select(db, "acc_cdrs")] == [PROXY_404_CDR.callid, 'quo"te']
    assert store.counts()["duplicates"] == len(records) + 5


# --- the file -----------------------------------------------------------------------------

def test_a_new_file_has_the_larger_pages_and_an_old_one_keeps_its_own(db, tmp_path):
    open_store(db).close()
    assert sqlite3.connect(db).execute("PRAGMA page_size").fetchone() == (schema.PAGE_SIZE,)
    old = str(tmp_path / "old.db")
    with open_store(old) as store:  # as sipprobe wrote files before: SQLite's 4096-byte pages
        pass
    con = sqlite3.connect(old)
    con.execute("PRAGMA journal_mode=delete")
    con.execute("PRAGMA page_size=4096")
    con.execute("VACUUM")
    con.close()
    with open_store(old) as store:
        store.add(INVITE)
    con = sqlite3.connect(old)
    assert con.execute("PRAGMA page_size").fetchone() == (4096,)
    assert con.execute("SELECT callid FROM acc").fetchall() == [(INVITE.callid,)]


def test_many_cdrs_a_statement_complete_open_calls_and_keep_finished_ones(db):
    def cdr(i, rec=CDR):
        return rec._replace(callid=f"{i}-many", start_time=CDR.start_time + i)

    with open_store(db) as store:
        for i in range(100):
            store.add_cdr(cdr(i, CDR_OPEN if i < 70 else CDR))
    before = {r["callid"]: r for r in select(db, "acc_cdrs")}
    with open_store(db) as store:  # a later capture: every call's end, new calls among them
        for i in range(3 * worker.GROUP_ROWS):
            store.add_cdr(cdr(i, CDR._replace(duration=9.0)))
            if i % 10 == 0:
                store.add_cdr(cdr(1000 + i, CDR_OPEN))
        store.add_cdr(cdr(2000, CDR_OPEN))  # open then finished in one chunk: completed
        store.add_cdr(cdr(2000))
        store.add_cdr(cdr(3000))  # finished then open: stays finished
        store.add_cdr(cdr(3000, CDR_OPEN))
    assert store.counts() == {"acc": 0, "missed_calls": 0, "duplicates": 0, "acc_cdrs": 12,
                              "cdrs_completed": 71}
    after = {r["callid"]: r for r in select(db, "acc_cdrs")}
    assert all(after[c]["id"] == r["id"] for c, r in before.items())
    assert [c for c, r in after.items() if r["duration"] == 9.0] == [
        f"{i}-many" for i in range(70)]
    assert {c: r["end_reason"] for c, r in after.items() if r["end_reason"] == "open"} == {
        f"{1000 + i}-many": "open" for i in range(0, 3 * worker.GROUP_ROWS, 10)}
    assert after["2000-many"]["end_reason"] == after["3000-many"]["end_reason"] == "completed"
