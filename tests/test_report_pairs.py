"""`report pairs`: Siremis' kamailio_cdrs() pairing of acc INVITE and BYE rows.

Two oracles per lab capture: the procedure's pairing (asipto/siremis docs/database.md), ported
to Python below and run on the acc rows the real Kamailio wrote (kamailio-acc.json), and the
dialog CDRs (acc_cdrs): Kamailio's own and sipprobe's, call by call."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from lab_oracle import LAB_PCAPS, PROXY
from pipeline import ProbeOptions, replay_files
from store import FilterError
from store.pairs import COLUMNS, REPORT_COLUMNS, pairs_stream
from store.query import Filters, stream

SCENARIOS = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/capture.pcap"))
ROOT = LAB_PCAPS.parent


def siremis_cdrs(acc: list[dict]) -> list[tuple]:
    """kamailio_cdrs() on a list of acc rows (Kamailio's, epoch seconds as the proxy's
    DATETIME keeps them): per INVITE row, the BYE row of the same Call-ID with the same or
    crossed tags, earliest first; duration = BYE time - INVITE time; uk_cft keeps the first
    INVITE of a (Call-ID, From tag, To tag)."""
    out, seen = [], set()
    for inv in acc:
        if inv["method"] != "INVITE":
            continue
        tags = (inv["from_tag"], inv["to_tag"])
        byes = sorted((b["time_epoch"], b["id"]) for b in acc if b["method"] == "BYE"
                      and b["callid"] == inv["callid"]
                      and (b["from_tag"], b["to_tag"]) in (tags, tags[::-1]))
        key = (inv["callid"], *tags)
        if not byes or key in seen:
            continue
        seen.add(key)
        start = datetime.fromtimestamp(inv["time_epoch"], timezone.utc)
        out.append((inv["src_user"], inv["src_domain"], inv["dst_user"], inv["dst_domain"],
                    inv["dst_ouser"], start.strftime("%Y-%m-%d %H:%M:%S"),
                    byes[0][0] - inv["time_epoch"], inv["callid"], *tags, inv["src_ip"]))
    return out


def kamailio_tables(scenario) -> dict:
    return {t: v["rows"] for t, v in
            json.loads((scenario / "kamailio-acc.json").read_text())["tables"].items()}


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    """Each lab capture replayed into its own database."""
    root = tmp_path_factory.mktemp("pairs")
    out = {}
    for scenario in SCENARIOS:
        db = str(root / f"{scenario.name}.db")
        replay_files([str(scenario / "capture.pcap")], db, ProbeOptions(strict=True),
                     proxies=[PROXY])
        out[scenario.name] = db
    return out


def pairs(db, **filters) -> list[dict]:
    return [dict(zip(REPORT_COLUMNS, r)) for r in pairs_stream(db, Filters.parse(**filters))]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_pairs_equal_siremis_on_kamailios_own_acc_rows(scenario, dbs):
    want = siremis_cdrs(sorted(kamailio_tables(scenario)["acc"],
                               key=lambda r: (r["time_epoch"], r["id"])))
    got = [tuple(p[c] for c in COLUMNS) for p in pairs(dbs[scenario.name])]
    assert sorted(got) == sorted(want)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_pairs_agree_with_acc_cdrs_call_by_call(scenario, dbs):
    """Each call with a BYE: its CDR (sipprobe's and Kamailio's) and its pair. The pair starts
    at the answer (the INVITE row's 2xx) and lasts to the BYE row in whole seconds, so it is
    acc_cdrs' talk_time to the proxy's one-second resolution, and ends with Kamailio's CDR."""
    db = dbs[scenario.name]
    got = {(p["sip_call_id"], p["sip_from_tag"], p["sip_to_tag"]): p for p in pairs(db)}
    cols = ("callid", "from_tag", "to_tag", "end_reason", "answer_time", "end_epoch",
            "talk_time", "start_epoch", "ring_duration")
    ours = [dict(zip(cols, r)) for r in stream("acc_cdrs", db, columns=cols)]
    completed = {(c["callid"], c["from_tag"], c["to_tag"]): c for c in ours
                 if c["end_reason"] == "completed"}
    assert set(got) == set(completed)
    for key, cdr in completed.items():
        p = got[key]
        assert abs(p["call_start_epoch"] - cdr["answer_time"]) < 0.05, key  # the same 2xx
        assert p["call_start_time"] == datetime.fromtimestamp(
            int(p["call_start_epoch"]), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        # whole seconds of each end: at most one second from the exact talk time
        assert abs(p["duration"] - cdr["talk_time"]) < 1.0 + 1e-6, key
    kamailio = [c for c in kamailio_tables(scenario)["acc_cdrs"] if c["sip_code"] == "200"]
    assert {(c["callid"], c["from_tag"], c["to_tag"]) for c in kamailio} == set(got)
    for c in kamailio:
        p = got[(c["callid"], c["from_tag"], c["to_tag"])]
        # Kamailio's CDR: INVITE at start_time, BYE at end_time (both seconds); the pair
        # covers the answered part of it
        assert c["start_time_epoch"] <= int(p["call_start_epoch"]) <= c["end_time_epoch"]
        assert int(p["call_start_epoch"]) + p["duration"] == c["end_time_epoch"]
        assert p["duration"] <= c["duration"] + 1


def test_the_callee_hanging_up_pairs_through_crossed_tags(dbs):
    db = dbs["lab-callee-bye"]
    byes = [dict(zip(("from_tag", "to_tag"), r)) for r in
            stream("acc", db, Filters(method="BYE"), columns=("from_tag", "to_tag"))]
    (p,) = pairs(db)
    assert (byes[0]["from_tag"], byes[0]["to_tag"]) == (p["sip_to_tag"], p["sip_from_tag"])
    assert (p["ended_by"], p["src_username"], p["dst_username"], p["duration"]) == \
        ("callee", "alice", "byer", 2)


def test_unanswered_failed_and_open_calls_give_no_pair(dbs):
    for name in ("lab-busy-486", "lab-cancel-487", "lab-no-answer-408", "lab-no-bye",
                 "lab-notfound-404", "lab-ringing-no-answer", "lab-auth-407"):
        n = len(pairs(dbs[name]))
        assert n == (1 if name == "lab-auth-407" else 0), name  # 407 then answered: one call


def test_filters_and_cli_output(dbs):
    db = dbs["lab-concurrent"]
    every = pairs(db)
    assert len(every) == 20 and {p["duration"] for p in every} <= {1, 2}
    assert [p["sip_call_id"] for p in pairs(db, callid="7-12221@127.0.0.1")] == \
        ["7-12221@127.0.0.1"]
    first = every[0]["call_start_epoch"]
    assert all(p["call_start_epoch"] >= first + 0.5 for p in pairs(db, since=first + 0.5))
    assert pairs(db, user="nobody") == [] and len(pairs(db, user="alice")) == 20
    with pytest.raises(FilterError, match="do not apply to pairs"):
        pairs_stream(db, Filters(method="BYE"))
    run = subprocess.run([sys.executable, "-m", "cli", "report", "pairs", "--db", db, "-f",
                          "csv", "--user", "alice"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split(",") == list(REPORT_COLUMNS) and len(lines) == 21
    run = subprocess.run([sys.executable, "-m", "cli", "report", "pairs", "--db", db, "--wide"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0 and "call_start_time (UTC)" in run.stdout
    assert run.stdout.count("12221@127.0.0.1") == 20


def test_earliest_bye_and_one_row_per_dialog(dbs, tmp_path):
    """What no lab capture has, written into a copy of lab-basic-call's acc table: a second,
    later BYE (crossed tags) and a second INVITE row of the same dialog (a re-INVITE, in a
    proxy whose flags account them). Siremis takes the earliest BYE, and its unique key on
    (Call-ID, From tag, To tag) keeps the first INVITE only."""
    import shutil
    import sqlite3

    db = str(tmp_path / "copy.db")
    shutil.copy(dbs["lab-basic-call"], db)
    (before,) = pairs(db)
    with sqlite3.connect(db) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(acc)") if r[1] != "id"]
        for method, swap, later, cseq in (("BYE", True, 30.0, 99), ("INVITE", False, 10.0, 98)):
            row = dict(zip(cols, conn.execute(
                f"SELECT {', '.join(cols)} FROM acc WHERE method = ?", [method]).fetchone()))
            if swap:
                row["from_tag"], row["to_tag"] = row["to_tag"], row["from_tag"]
            row["time_epoch"] += later
            row["cseq"] = cseq
            conn.execute(f"INSERT INTO acc ({', '.join(cols)}) VALUES "
                         f"({', '.join('?' * len(cols))})", list(row.values()))
    (after,) = pairs(db)
    assert after == before and after["ended_by"] == "caller"
