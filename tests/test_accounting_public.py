"""Accounting on the public captures: calls without a proxy are accounted as seen, a call
relayed by a proxy once, challenges and retransmissions never twice."""
from __future__ import annotations

from pipeline import ProbeOptions, account_files
from shared_pcaps import shared
from sip_dissect.accounting import AccOptions


def replay(name, **kw):
    records = []
    summary = account_files([shared(name)], records.append, ProbeOptions(strict=True), **kw)
    return records, summary


def test_scan_of_901_invites():
    """900 INVITEs rejected 404 are missed calls; the one answered call gives INVITE and BYE."""
    records, summary = replay("netfox_sip-fraud-901-invites.pcap")
    missed = [r for r in records if r.table == "missed_calls"]
    assert len(missed) == 900 and {r.sip_code for r in missed} == {"404"}
    assert sorted((r.method, r.sip_code) for r in records if r.table == "acc") == [
        ("BYE", "200"), ("INVITE", "200")]
    assert (summary["calls"], summary["answered"], summary["failed"]) == (901, 1, 900)
    assert summary["counters"]["sip.response_retransmission"] == 1  # the 404 sent twice


def test_cancelled_call_is_a_missed_call_with_every_column():
    records, _ = replay("junkie_sip-cancel-487-alt-port.pcap")
    (row,) = records
    assert (row.table, row.method, row.sip_code, row.sip_reason) == (
        "missed_calls", "INVITE", "487", "Request Terminated")
    assert (row.src_ip, row.dst_domain) == ("212.27.52.5", "192.168.1.2")
    assert (row.src_user, row.dst_user) == ("0178090721", "0950652801")
    assert row.callid and row.from_tag and row.to_tag


def test_call_seen_at_two_hops_of_a_proxy_is_accounted_once():
    """IPv6, fragmented INVITE, PRACK/UPDATE, retransmitted 200: SIPp UAC -> proxy -> UAS."""
    records, summary = replay("sngrep_ipv6-frag-sip-prack-update.pcap")
    assert sorted((r.table, r.method, r.sip_code) for r in records) == [
        ("acc", "BYE", "200"), ("acc", "INVITE", "200")]
    assert summary["proxies"] == ["[fd17:625c:f037:2:a00:27ff:feb9:3519]:5062"]  # as --proxy takes it
    assert summary["calls"] == 1
    invite = next(r for r in records if r.method == "INVITE")
    assert invite.src_ip == "fd17:625c:f037:2:a00:27ff:feb9:1521"  # the caller, first hop
    assert invite.dst_domain == "[fd17:625c:f037:2:a00:27ff:feb9:4222]"  # R-URI as forwarded


def test_challenges_are_not_missed_calls():
    """aaa.pcap: three 407 challenges re-sent with credentials, then 403, 403 and 480; one
    INVITE cancelled but answered 408. The challenges leave no row."""
    records, summary = replay("sngrep_aaa-sip-rtp-cancel-auth.pcap")
    assert sorted(r.sip_code for r in records) == ["403", "403", "408", "480"]
    assert {r.table for r in records} == {"missed_calls"}
    assert (summary["calls"], summary["challenged"], summary["failed"]) == (4, 3, 4)


def test_early_media_option_accounts_the_183():
    records, _ = replay("sngrep_aaa-sip-rtp-cancel-auth.pcap", acc_options=AccOptions(early_media=True))
    early = [r for r in records if r.table == "acc"]
    assert [(r.sip_code, r.sip_reason) for r in early] == [("183", "In band info available")]


def test_extra_methods_accounted_when_asked():
    plain, _ = replay("arkime_gtp-volte-ipv6-sip-tcp-rtcp.pcap")
    more, _ = replay("arkime_gtp-volte-ipv6-sip-tcp-rtcp.pcap",
                     acc_options=AccOptions(methods=frozenset({"MESSAGE"})))
    assert sorted(r.method for r in plain) == ["BYE", "INVITE"]
    assert sorted((r.method, r.sip_code) for r in more) == [
        ("BYE", "200"), ("INVITE", "200"), ("MESSAGE", "202")]


def test_answered_call_without_bye_and_call_without_final_reply():
    records, summary = replay("suricata_cloudshark-sip-invite-register.pcap")
    assert [(r.method, r.sip_code) for r in records] == [("INVITE", "200")]
    assert summary["calls"] == 2 and summary["answered"] == 1
    assert summary["counters"]["state.transaction_open_at_end"] == 1


def test_b2bua_legs_are_two_calls():
    """A B2BUA (Asterisk) starts a new Call-ID downstream: nothing links the legs in SIP, so
    each is accounted; the caller's 401-challenged INVITE is not."""
    records, summary = replay("voipshark_sip-rtp-b2bua-call-rtcp.pcap")
    assert summary["calls"] == 2 and summary["challenged"] == 1
    assert sorted((r.method, r.sip_code) for r in records) == [
        ("BYE", "200"), ("BYE", "200"), ("INVITE", "200"), ("INVITE", "200")]


def test_malformed_capture_never_raises():
    records, summary = replay("ndpi_fuzzed-aaa-malformed.pcap")
    assert summary["sip_messages"] > 0
    assert sum(v for k, v in summary["counters"].items() if k.startswith("sip.")) > 0


def test_wrong_content_length_counted_and_call_still_accounted():
    """zeek's crafted INVITE and 200 carry Content-Length values that are not numbers."""
    records, summary = replay("zeek_sip-invalid-content-length.pcap")
    assert summary["counters"]["sip.bad_content_length"] == 2
    assert [(r.method, r.sip_code) for r in records] == [("INVITE", "200")]
