"""Calls survive file boundaries: a real capture cut in two at every SIP message, the halves
replayed one after the other into one database, gives the rows of one replay of the whole
capture, times included (sip_dissect/carry.py, docs/reliability.md)."""
from __future__ import annotations

import marshal
import sqlite3
from pathlib import Path

import pytest

import pipeline
from pcap_split import sip_frames, split
from shared_pcaps import shared
from sip_dissect import carry
from store.tables import QUALITY_SUMMARY

ROOT = Path(__file__).resolve().parents[1]
# the quality summary comes from the media layer, which is not carried: a call's RTCP reports
# are bound through the SDP its run saw (docs/reliability.md)
NOT_COMPARED = {"id"} | {c.name for c in QUALITY_SUMMARY}
CAPTURES = [str(ROOT / "pcaps/lab-basic-call/capture.pcap"),
            str(ROOT / "pcaps/lab-cancel-487/capture.pcap"),
            str(ROOT / "pcaps/lab-reinvite/capture.pcap"),
            "voipshark_sip-rtp-b2bua-call-rtcp.pcap",  # B2BUA, 401 challenge, UPDATE, 2 legs
            "sngrep_aaa-sip-rtp-cancel-auth.pcap"]  # CANCEL, 403/408/480, retransmissions


def rows(db: Path, not_compared=NOT_COMPARED) -> dict[str, list]:
    """Each accounting table's rows as sorted (column, value) tuples, without `not_compared`."""
    conn = sqlite3.connect(db)
    out = {}
    for table in ("acc", "missed_calls", "acc_cdrs"):
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cur.description]
        out[table] = sorted(tuple((n, v) for n, v in zip(names, r) if n not in not_compared)
                            for r in cur)
    conn.close()
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: Path(c).parent.name
                         if c.startswith("/") else c.split("_")[0])
def test_split_at_every_sip_message_gives_the_rows_of_one_replay(capture, tmp_path):
    path = Path(capture if capture.startswith("/") else shared(capture))
    pipeline.replay_files([str(path)], str(tmp_path / "whole.db"))
    whole = rows(tmp_path / "whole.db")
    assert whole["acc_cdrs"]
    points = sip_frames(path)
    assert len(points) > 5
    for at in points:
        first, second, db = (tmp_path / f"{at}a.pcap", tmp_path / f"{at}b.pcap",
                             tmp_path / f"{at}.db")
        split(path, at, first, second)
        pipeline.replay_files([str(first)], str(db))
        pipeline.replay_files([str(second)], str(db))
        assert rows(db) == whole, f"cut before frame index {at}"


def test_the_call_of_issue_14_is_completed_by_the_second_half(tmp_path):
    """The measurement of issue 14: the first half of a 34.1 s call, then the second half,
    left the row open at 7.2 s. Cut after the answer (7.2 s), before the BYEs."""
    path = Path(shared("voipshark_sip-rtp-b2bua-call-rtcp.pcap"))
    first, second, db = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "x.db"
    bye = next(i for i in sip_frames(path) if _is_bye(path, i))
    split(path, bye, first, second)
    one = pipeline.replay_files([str(first)], str(db))
    assert one["cdrs_inserted"] == 2
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT end_reason, duration FROM acc_cdrs WHERE callid = ?",
                          ["3cfe1c77155241bb89eb003ab8e2f87b"]).fetchone()
    assert before[0] == "open" and before[1] < 8
    carried = conn.execute("SELECT count(*) FROM open_calls WHERE callid != ''").fetchone()[0]
    assert carried >= 2  # the two legs' calls (and the REGISTER/OPTIONS still remembered)
    two = pipeline.replay_files([str(second)], str(db))
    assert two["cdrs_completed"] == 2 and two["cdrs_inserted"] == 0
    assert two["counters"]["carry.calls_taken_up"] == carried
    after = conn.execute("SELECT end_reason, duration, ended_by, talk_time FROM acc_cdrs "
                         "WHERE callid = ?", ["3cfe1c77155241bb89eb003ab8e2f87b"]).fetchone()
    assert after == ("completed", 34.087, "callee", 26.921)
    # no call goes on in what the second run left (only its last transactions, lingering to
    # recognise retransmissions; a B2BUA relays nothing: no proxy learned)
    state = carry._CALL_PLAIN.index("state")
    left = dict(conn.execute("SELECT callid, state FROM open_calls").fetchall())
    assert left and "" not in left
    assert all(call[state] == "TERMINATED" for callid, text in left.items() if callid
               for call in marshal.loads(text)[4])
    # without carrying (the behaviour before): the row stays open
    pipeline.replay_files([str(first)], str(tmp_path / "old.db"), carry_calls=False)
    pipeline.replay_files([str(second)], str(tmp_path / "old.db"), carry_calls=False)
    old = sqlite3.connect(tmp_path / "old.db").execute(
        "SELECT end_reason FROM acc_cdrs WHERE callid = ?",
        ["3cfe1c77155241bb89eb003ab8e2f87b"]).fetchone()
    assert old == ("open",)


def _is_bye(path: Path, index: int) -> bool:
    from pcap_split import records
    return b"BYE sip:" in records(path)[1][index]


def test_a_state_that_cannot_be_read_is_counted_and_kept(tmp_path):
    path = ROOT / "pcaps/lab-basic-call/capture.pcap"
    db = tmp_path / "x.db"
    pipeline.replay_files([str(path)], str(db))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO open_calls VALUES ('bogus', 0, '__import__(\"os\").system(\"x\")')")
    conn.commit()
    summary = pipeline.replay_files([str(path)], str(db))
    assert summary["counters"]["carry.bad_state"] == 1
    assert summary["duplicates"] == summary["acc_rows"] + summary["missed_rows"]
    assert conn.execute("SELECT count(*) FROM open_calls WHERE callid = 'bogus'").fetchone() == (1,)


def test_a_state_written_before_format_3_is_taken_up(tmp_path):
    """tests/carry-format-2.marshal: the open_calls rows that sipprobe at commit 4cf032a
    (carry format 2: each transaction's SipHead kept whole) left after the first half of issue
    14's call (cut before the first BYE). This version reads them: the second half completes
    the call as when one version ran both halves."""
    path = Path(shared("voipshark_sip-rtp-b2bua-call-rtcp.pcap"))
    first, second, db = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "x.db"
    bye = next(i for i in sip_frames(path) if _is_bye(path, i))
    split(path, bye, first, second)
    pipeline.replay_files([str(first)], str(db), carry_calls=False)  # the rows, no state
    old = marshal.loads((ROOT / "tests/carry-format-2.marshal").read_bytes())
    assert {marshal.loads(state)[0] for _, _, state in old} == {2}
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO open_calls VALUES (?, ?, ?)", old)
    two = pipeline.replay_files([str(second)], str(db))
    assert "carry.bad_state" not in two["counters"]
    assert two["counters"]["carry.calls_taken_up"] == len(old)  # a B2BUA: no proxies learned
    assert two["cdrs_completed"] == 2
    after = conn.execute("SELECT end_reason, duration, ended_by, talk_time FROM acc_cdrs "
                         "WHERE callid = ?", ["3cfe1c77155241bb89eb003ab8e2f87b"]).fetchone()
    assert after == ("completed", 34.087, "callee", 26.921)


def test_the_sweep_keeps_a_later_transaction_under_a_swept_ones_key():
    """Two carried groups can restore two finished transactions under one key (a UA reusing a
    branch across calls); the later holds the key. When the sweep forgets the earlier, the
    later stays, for the retransmissions it still absorbs, until its own linger ends."""
    from probe.counters import Counters
    from probe.records import Datagram
    from sip_dissect.scan import SipHead
    from sip_dissect.transaction import Transaction, TransactionLayer

    key = ("z9hG4bKreused", "192.0.2.10:5060", "OPTIONS")
    msg = SipHead(**{**dict.fromkeys(SipHead._fields), "method": "OPTIONS", "call_id": "c",
                     "from_tag": "t", "to_tag": "", "cseq": 1})
    layer = TransactionLayer(Counters())
    earlier, later = (Transaction(key, msg, Datagram(ts, 1, "192.0.2.10", "192.0.2.1", 5060,
                                                     5060, "udp", b""), "OPTIONS")
                      for ts in (0.0, 1000.0))
    for txn in (earlier, later):
        txn.final_status, txn.final_ts = 200, txn.created
        layer._finished.append(txn)
    layer.by_key[key] = later
    layer.sweep(500.0)  # past the earlier's linger (32 s), before the later's end
    assert layer.by_key[key] is later and list(layer._finished) == [later]
    layer.sweep(2000.0)
    assert key not in layer.by_key
