"""acc and missed_calls rows equal to those a real Kamailio 5.6 wrote, on the lab captures
kept in pcaps/lab-* (regenerated and rechecked by tests/test_lab_live.py)."""
from __future__ import annotations

import pytest

from lab_oracle import LAB_PCAPS, NOTHING_RELAYED, assert_same_rows, kamailio_rows, replay
from sip_dissect.accounting import AccOptions

SCENARIOS = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/capture.pcap"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_rows_equal_kamailio_with_proxy_given(scenario):
    records, summary = replay(scenario)
    assert_same_rows(scenario, records)
    assert summary["acc_rows"] == len(kamailio_rows(scenario, "acc"))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name not in NOTHING_RELAYED],
                         ids=lambda p: p.name)
def test_rows_equal_kamailio_with_proxy_detected(scenario):
    """Without --proxy the proxy is found by the Via it adds when it relays a request."""
    records, summary = replay(scenario, proxies=())
    assert_same_rows(scenario, records)
    assert "127.0.0.1:5060" in summary["proxies"]


def test_proxy_generated_404_needs_the_proxy_named():
    """A stateless 404 from the proxy is not accounted by Kamailio; with nothing relayed in the
    capture the proxy cannot be detected, so only --proxy gives the proxy's answer."""
    scenario = LAB_PCAPS / "lab-notfound-proxy-404"
    records, _ = replay(scenario)
    assert records == []
    records, summary = replay(scenario, proxies=())
    assert [(r.table, r.sip_code) for r in records] == [("missed_calls", "404")]
    assert summary["proxies"] == []


def test_call_counted_once_although_seen_on_both_legs():
    records, summary = replay(LAB_PCAPS / "lab-concurrent")
    assert summary["sip_messages"] == 280  # 20 calls x 7 messages x 2 legs
    assert (summary["calls"], summary["answered"]) == (20, 20)
    assert len(records) == 40


def test_auth_challenge_is_one_call_not_two():
    records, summary = replay(LAB_PCAPS / "lab-auth-407")
    assert (summary["calls"], summary["challenged"], summary["answered"]) == (1, 1, 1)
    assert [(r.method, r.cseq) for r in records if r.method == "INVITE"] == [("INVITE", 2)]


def test_report_cancels_accounts_the_cancel():
    records, _ = replay(LAB_PCAPS / "lab-cancel-487", acc_options=AccOptions(report_cancels=True))
    assert sorted((r.table, r.method, r.sip_code) for r in records) == [
        ("acc", "CANCEL", "200"), ("missed_calls", "INVITE", "487")]


def test_failed_transaction_puts_failed_invites_in_acc_too():
    records, _ = replay(LAB_PCAPS / "lab-busy-486", acc_options=AccOptions(failed_transaction=True))
    assert sorted((r.table, r.sip_code) for r in records) == [("acc", "486"), ("missed_calls", "486")]


def test_detect_direction_swaps_tags_of_the_callees_bye():
    plain, _ = replay(LAB_PCAPS / "lab-callee-bye")
    swapped, _ = replay(LAB_PCAPS / "lab-callee-bye", acc_options=AccOptions(detect_direction=True))
    invite = next(r for r in plain if r.method == "INVITE")
    bye_plain = next(r for r in plain if r.method == "BYE")
    bye_swapped = next(r for r in swapped if r.method == "BYE")
    assert (bye_plain.from_tag, bye_plain.to_tag) == (invite.to_tag, invite.from_tag)
    assert (bye_swapped.from_tag, bye_swapped.to_tag) == (invite.from_tag, invite.to_tag)


def test_missed_local_replies_needs_the_switch():
    """The capture of a script that sets the missed-call flag before routing: Kamailio wrote
    its own 404 as a missed call; sipprobe does so only when told (stock scripts do not)."""
    scenario = LAB_PCAPS / "lab-missed-early-notfound-proxy-404"
    stock, _ = replay(scenario, acc_options=AccOptions())
    assert stock == []
    records, _ = replay(scenario)  # the scenario's own options: missed_local_replies
    [row] = records
    assert (row.table, row.method, row.sip_code, row.sip_reason) == (
        "missed_calls", "INVITE", "404", "Not Found")
    # the proxy's own tag, tm's form: 32 hex digits of MD5, '-', 8 hex digits
    assert len(row.to_tag) == 41 and row.to_tag[32] == "-"


def test_missed_local_replies_skips_stateless_replies():
    """sl_send_reply's 403 has no transaction, so Kamailio's acc never saw it; its To tag
    carries sl's '.' separator, which is how the probe knows."""
    scenario = LAB_PCAPS / "lab-missed-early-blocked-403"
    assert kamailio_rows(scenario, "missed_calls") == []
    records, summary = replay(scenario, acc_options=AccOptions(missed_local_replies=True))
    assert records == [] and summary["calls"] == 1


def test_missed_local_replies_with_failed_transaction_also_writes_acc():
    """Kamailio's failed_transaction_flag applies to the proxy's own reply as to a relayed one
    (acc_logic.c should_acc_reply), so both switches give an acc row too."""
    records, _ = replay(LAB_PCAPS / "lab-missed-early-notfound-proxy-404",
                        acc_options=AccOptions(missed_local_replies=True, failed_transaction=True))
    assert sorted((r.table, r.sip_code) for r in records) == [("acc", "404"),
                                                              ("missed_calls", "404")]


def test_serial_forking_missed_call_is_the_first_failed_attempt():
    """Stock flags: acc writes the missed call when the first attempt fails and resets the
    flag; the 404 the caller finally got is in no row (Kamailio's own rows, lab serial-reject)."""
    scenario = LAB_PCAPS / "lab-serial-reject"
    records, _ = replay(scenario)
    assert [(r.table, r.sip_code) for r in records] == [("missed_calls", "486")]
    per_branch, _ = replay(scenario, acc_options=AccOptions(missed_per_branch=True))
    assert [(r.table, r.sip_code) for r in per_branch] == [("missed_calls", "486"),
                                                           ("missed_calls", "404")]
    assert per_branch[0].to_tag != per_branch[1].to_tag  # each attempt's own callee tag


def test_serial_forking_answered_call_keeps_the_missed_attempt():
    records, _ = replay(LAB_PCAPS / "lab-serial-answer")
    assert sorted((r.table, r.method, r.sip_code) for r in records) == [
        ("acc", "BYE", "200"), ("acc", "INVITE", "200"), ("missed_calls", "INVITE", "486")]


def test_parallel_branches_are_one_attempt():
    """Two branches relayed at once that both fail: one ON_FAILURE in tm, one row, even per
    branch (crafted: the lab proxy forks serially only)."""
    from sip_dissect.accounting import failed_attempts

    class Branch:
        def __init__(self, created, status, final_ts):
            self.created, self.final_status, self.final_ts = created, status, final_ts

    class Txn:
        downstream = (Branch(1.0, 486, 2.0), Branch(1.0, 404, 2.5), Branch(3.0, 480, 4.0))

    assert [b.final_status for b in failed_attempts(Txn())] == [404]  # lower 4xx picked
    Txn.downstream = (Branch(1.0, 486, 2.0), Branch(1.0, 603, 2.5))
    assert failed_attempts(Txn()) == []  # one attempt only: the final reply's row
