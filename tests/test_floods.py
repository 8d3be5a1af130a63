"""Floods against small caps: eviction counts, bounded state, what is written. The speed and
memory of full-size floods are measured by bench/floods.py (bench/README.md), not here."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import pipeline
from crafted import account

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gen_floods  # noqa: E402


def flood(tmp_path, kind: str, n: int, rate: int = 20000) -> Path:
    path = tmp_path / f"{kind}.pcap"
    gen_floods.write(kind, n, str(path), rate)
    return path


def test_invite_flood_over_the_caps_evicts_oldest_first_and_writes_nothing(tmp_path):
    """3,000 unanswered INVITEs in 0.15 s against caps of 500: every INVITE past the cap
    evicts the oldest transaction, whose call then ends unanswered (counted, no CDR); the
    call cap is never the one reached, since the transaction's end ends its call."""
    cdrs = []
    records, summary, calls = account(flood(tmp_path, "invite", 3000),
                                      max_transactions=500, max_calls=500,
                                      subscribers=[pipeline_cdrs(cdrs)])
    c = summary["counters"]
    assert c["state.transaction_evicted"] == 2500
    assert c["state.invite_unanswered"] == 3000
    assert "state.dialog_evicted" not in c
    assert records == [] and cdrs == []
    assert [call.callid for call in calls[:3]] == ["flood-0@x", "flood-1@x", "flood-2@x"]
    assert summary["calls"] == 3000


def test_cdr_unanswered_asks_for_the_rows(tmp_path):
    cdrs = []
    account(flood(tmp_path, "invite", 300), subscribers=[pipeline_cdrs(cdrs, unanswered=True)])
    assert len(cdrs) == 300
    assert {(r.end_reason, r.sip_code) for r in cdrs} == {("unanswered", None)}


@pytest.mark.parametrize("kind", ["register", "options"])
def test_non_invite_storm_evicts_transactions_and_times_them_out(tmp_path, kind):
    """10,000 at 2,000 a second (5 s) against a cap of 1,000: 9,000 evicted; the rest end
    at the end of input (Timer F, 32 s, never reached)."""
    _, summary, calls = account(flood(tmp_path, kind, 10000, rate=2000), max_transactions=1000)
    c = summary["counters"]
    assert c["state.transaction_evicted"] == 9000
    assert c["state.transaction_open_at_end"] == 1000
    assert calls == []


def test_transactions_time_out_without_eviction_below_the_cap(tmp_path):
    """40 s of INVITEs at 200 a second: those older than Timer B (32 s + 2 s of slack) time
    out on packet time (swept every 0.25 s: up to 50 more wait for the next sweep), so the
    open state stays near 34 s worth, far below the cap."""
    _, summary, _ = account(flood(tmp_path, "invite", 8000, rate=200))
    c = summary["counters"]
    assert "state.transaction_evicted" not in c
    assert 8000 - 200 * 34 - 50 <= c["state.transaction_timeout"] <= 8000 - 200 * 34
    assert c["state.invite_unanswered"] == 8000


def pipeline_cdrs(out: list, **options):
    from sip_dissect.cdr import CdrWriter
    return CdrWriter(out.append, None, **options)
