"""Signalling cases no real capture covers, crafted with scapy (tests/crafted.py) and replayed
through pipeline.account_files in strict mode: forks, request-URI rewriting, retransmissions,
RFC 2543 peers, redirects, unanswered and timed-out INVITEs, proxy-originated BYEs, dialog
expiry, malformed messages, and the same call over IPv6 and TCP. Each asserts the exact rows,
summary and counters, so a change in behaviour shows here. tests/run.sh runs them compiled and
again interpreted (SIPPROBE_PURE=1)."""
from __future__ import annotations

import pytest

from crafted import (A_RTP, B_RTP, T0, Party, account, relay, sdp, sip_message, sip_request,
                     sip_response, via, write_sip_capture)
from sip_dissect import signalling
from sip_dissect.accounting import AccOptions
from sip_dissect.records import AccRecord

A, P, B = Party("192.0.2.10"), Party("192.0.2.1"), Party("198.51.100.20")
A6, P6, B6 = Party("2001:db8::10"), Party("2001:db8::1"), Party("2001:db8:1::20")
ALICE = '"Alice" <sip:alice@example.com>;tag=a1'
BOB = "<sip:bob@example.com>"
CALL_ID = "c1@example.com"


def host(party: Party) -> str:
    return f"[{party.ip}]" if ":" in party.ip else party.ip


def rows(records) -> list[AccRecord]:
    """Times to the millisecond: every crafted packet time is a whole millisecond."""
    return [r._replace(time=round(r.time, 3)) for r in records]


def acc(method: str, t: float, *, table: str = "acc", to_tag: str = "b1", code: str = "200",
        reason: str = "OK", src_ip: str = A.ip, dst_user: str = "bob", dst_domain: str = B.ip,
        cseq: int = 1, callid: str = CALL_ID, from_tag: str = "a1",
        dst_ouser: str = "bob") -> AccRecord:
    return AccRecord(table=table, method=method, from_tag=from_tag, to_tag=to_tag, callid=callid,
                     sip_code=code, sip_reason=reason, time=round(T0 + t, 3), src_user="alice",
                     src_domain="example.com", src_ip=src_ip, dst_ouser=dst_ouser,
                     dst_user=dst_user, dst_domain=dst_domain, cseq=cseq)


def invite(a: Party, branch: str | None, tr: str = "UDP", *, call_id: str = CALL_ID,
           uri: str = "sip:bob@example.com", from_: str = ALICE, cseq: int = 1) -> bytes:
    return sip_request("INVITE", uri, [via(a, branch, tr)], from_=from_, to=BOB, call_id=call_id,
                       cseq=cseq, headers=[("Contact", f"<sip:alice@{a.hostport}>")],
                       body=sdp(a.ip, A_RTP, "alice"))


def proxied_call(t0: float = 0.0, *, a=A, p=P, b=B, tr: str = "UDP", call_id: str = CALL_ID,
                 contact: str | None = None, to_tag: str = "b1", bye: bool = True,
                 n: str = "1") -> list:
    """A calls bob@example.com through proxy P, which forwards to bob's registered contact at
    B (RFC 3665 section 3.2 with a proxy): INVITE, 100, 180, 200, ACK, 8 s later BYE, 200.
    Times are seconds after T0 + t0; `n` keeps branches unique across calls."""
    contact = contact or f"sip:bob@{b.hostport}"
    t = T0 + t0
    inv = invite(a, f"z9hG4bKinv{n}", tr, call_id=call_id)
    fwd = relay(inv, via=via(p, f"z9hG4bKpinv{n}", tr), uri=contact,
                headers=[("Record-Route", f"<sip:{p.hostport};lr>")])
    bob_contact = [("Contact", f"<{contact}>")]
    ringing = sip_response(fwd, 180, "Ringing", to_tag=to_tag, headers=bob_contact)
    ok = sip_response(fwd, 200, "OK", to_tag=to_tag, headers=bob_contact,
                      body=sdp(b.ip, B_RTP, "bob"))
    legs = [(t, a, p, inv), (t + 0.005, p, a, sip_response(inv, 100, "Trying")),
            (t + 0.010, p, b, fwd), (t + 0.020, b, p, sip_response(fwd, 100, "Trying")),
            (t + 0.200, b, p, ringing), (t + 0.205, p, a, relay(ringing)),
            (t + 2.000, b, p, ok), (t + 2.005, p, a, relay(ok))]
    legs += in_dialog(t0 + 2.05, "ACK", 1, a=a, p=p, b=b, tr=tr, call_id=call_id,
                      contact=contact, to_tag=to_tag, branch=f"ack{n}")
    if bye:
        legs += in_dialog(t0 + 10.0, "BYE", 2, a=a, p=p, b=b, tr=tr, call_id=call_id,
                          contact=contact, to_tag=to_tag, branch=f"bye{n}")
    return legs


def in_dialog(t0: float, method: str, cseq: int, *, a=A, p=P, b=B, tr: str = "UDP",
              call_id: str = CALL_ID, contact: str | None = None, to_tag: str = "b1",
              branch: str = "x") -> list:
    """A's in-dialog request routed through P to B's contact, and B's 200 relayed back (an
    INVITE's 200 then ACKed end to end)."""
    contact = contact or f"sip:bob@{b.hostport}"
    t = T0 + t0
    req = sip_request(method, contact, [via(a, f"z9hG4bK{branch}", tr)], from_=ALICE,
                      to=f"{BOB};tag={to_tag}", call_id=call_id, cseq=cseq,
                      headers=[("Route", f"<sip:{p.hostport};lr>")])
    fwd = relay(req, via=via(p, f"z9hG4bKp{branch}", tr))
    legs = [(t, a, p, req), (t + 0.005, p, b, fwd)]
    if method == "ACK":
        return legs
    ok = sip_response(fwd, 200, "OK")
    legs += [(t + 0.05, b, p, ok), (t + 0.055, p, a, relay(ok))]
    if method == "INVITE":
        legs += in_dialog(t0 + 0.1, "ACK", cseq, a=a, p=p, b=b, tr=tr, call_id=call_id,
                          contact=contact, to_tag=to_tag, branch=f"{branch}ack")
    return legs


def as_received(request: bytes, ip: str) -> bytes:
    """`request` with ;received= added to its top Via, as the next hop records it."""
    return relay(relay(request, via=via(P, "z9hG4bKtmp"), received=ip))


def run(tmp_path, legs, transport: str = "udp", **kw):
    return account(write_sip_capture(tmp_path / "crafted.pcap", legs, transport), **kw)


def test_plain_proxied_call(tmp_path):
    """The baseline every variant below departs from."""
    records, summary, calls = run(tmp_path, proxied_call())
    assert rows(records) == [acc("INVITE", 2.005), acc("BYE", 10.055, cseq=2)]
    assert summary.pop("engine").startswith(("native", "pure Python"))
    assert summary == {
        "files": [str(tmp_path / "crafted.pcap")], "frames_matched": 14, "sip_messages": 14,
        "proxies": ["192.0.2.1:5060"],
        "calls": 1, "answered": 1, "failed": 0, "challenged": 0, "acc_rows": 2,
        "missed_rows": 0, "counters": {"sip.ack_2xx": 2}}
    (call,) = calls
    assert (call.callee_tags, call.confirmed_tag, call.end_reason, call.ended_by) == (
        ("b1",), "b1", "completed", "caller")
    assert (call.answer_time, call.end_time) == (pytest.approx(T0 + 2.005),
                                                 pytest.approx(T0 + 10.0))


# -- forking (RFC 3261 section 16.7) ---------------------------------------------------------

DESK, MOBILE = Party("198.51.100.20"), Party("198.51.100.21")


@pytest.mark.parametrize("loser", ["cancelled_after_answer", "busy_before_answer"])
def test_forked_invite_accounted_once_with_the_answering_branch(tmp_path, loser):
    """P forks bob@example.com to his desk phone and his mobile (two client transactions, each
    linked to A's by the second Via). Both ring with their own To tag; the desk phone answers.
    The mobile either is CANCELled by P and answers 487, or was busy (486) before the answer:
    P absorbs it. One acc row, with the desk's To tag and request-URI."""
    t = T0
    inv = invite(A, "z9hG4bKinv1")
    desk_uri, mobile_uri = f"sip:bob-desk@{DESK.hostport}", f"sip:bob-mobile@{MOBILE.hostport}"
    rr = [("Record-Route", f"<sip:{P.hostport};lr>")]
    to_desk = relay(inv, via=via(P, "z9hG4bKfork1"), uri=desk_uri, headers=rr)
    to_mobile = relay(inv, via=via(P, "z9hG4bKfork2"), uri=mobile_uri, headers=rr)
    desk_ring = sip_response(to_desk, 180, "Ringing", to_tag="desk")
    mobile_ring = sip_response(to_mobile, 180, "Ringing", to_tag="mobile")
    desk_ok = sip_response(to_desk, 200, "OK", to_tag="desk",
                           headers=[("Contact", f"<{desk_uri}>")], body=sdp(DESK.ip, B_RTP, "bob"))
    legs = [(t, A, P, inv), (t + 0.005, P, A, sip_response(inv, 100, "Trying")),
            (t + 0.010, P, DESK, to_desk), (t + 0.011, P, MOBILE, to_mobile),
            (t + 0.200, DESK, P, desk_ring), (t + 0.205, P, A, relay(desk_ring)),
            (t + 0.300, MOBILE, P, mobile_ring), (t + 0.305, P, A, relay(mobile_ring)),
            (t + 2.000, DESK, P, desk_ok), (t + 2.005, P, A, relay(desk_ok))]
    ack_mobile = sip_request("ACK", mobile_uri, [via(P, "z9hG4bKfork2")], from_=ALICE,
                             to=f"{BOB};tag=mobile", call_id=CALL_ID, cseq=1)
    if loser == "cancelled_after_answer":
        # section 16.7 step 10: a 2xx makes the proxy CANCEL the other branches (9.1: same
        # branch as the INVITE it cancels, only the proxy's Via)
        cancel = sip_request("CANCEL", mobile_uri, [via(P, "z9hG4bKfork2")], from_=ALICE, to=BOB,
                             call_id=CALL_ID, cseq=1)
        legs += [(t + 2.010, P, MOBILE, cancel),
                 (t + 2.020, MOBILE, P, sip_response(cancel, 200, "OK", to_tag="mobile")),
                 (t + 2.030, MOBILE, P, sip_response(to_mobile, 487, "Request Terminated",
                                                     to_tag="mobile")),
                 (t + 2.035, P, MOBILE, ack_mobile)]
    else:
        legs += [(t + 1.000, MOBILE, P, sip_response(to_mobile, 486, "Busy Here",
                                                     to_tag="mobile")),
                 (t + 1.005, P, MOBILE, ack_mobile)]
    legs += in_dialog(2.05, "ACK", 1, b=DESK, contact=desk_uri, to_tag="desk", branch="ack1")
    legs += in_dialog(10.0, "BYE", 2, b=DESK, contact=desk_uri, to_tag="desk", branch="bye1")
    records, summary, calls = run(tmp_path, legs)
    assert rows(records) == [
        acc("INVITE", 2.005, to_tag="desk", dst_user="bob-desk", dst_domain=DESK.ip),
        acc("BYE", 10.055, to_tag="desk", dst_user="bob-desk", dst_domain=DESK.ip, cseq=2)]
    assert (summary["calls"], summary["answered"], summary["failed"]) == (1, 1, 0)
    assert (summary["acc_rows"], summary["missed_rows"]) == (2, 0)
    assert summary["counters"] == {"sip.ack_2xx": 2, "sip.ack_non2xx": 1}
    (call,) = calls
    assert (call.callee_tags, call.confirmed_tag, call.end_reason) == (
        ("desk", "mobile"), "desk", "completed")


# -- request-URI rewritten by a location lookup ----------------------------------------------

def test_request_uri_rewritten_by_the_proxy(tmp_path):
    """The caller dials sip:bob@example.com; P's location lookup forwards to the contact
    sip:bob-contact@10.0.0.9:5062. Kamailio's $rU/$rd are the rewritten URI, $tU the To."""
    b = Party("10.0.0.9", 5062)
    records, summary, _ = run(tmp_path, proxied_call(b=b, contact=f"sip:bob-contact@{b.hostport}"))
    assert rows(records) == [
        acc("INVITE", 2.005, dst_user="bob-contact", dst_domain="10.0.0.9", dst_ouser="bob"),
        acc("BYE", 10.055, dst_user="bob-contact", dst_domain="10.0.0.9", dst_ouser="bob",
            cseq=2)]
    assert summary["proxies"] == ["192.0.2.1:5060"]


# -- retransmissions (RFC 3261 section 17) ---------------------------------------------------

def test_retransmissions_are_counted_never_accounted(tmp_path):
    """A direct call over lossy UDP: the INVITE sent 3 times (Timer A: 0.5 s, 1 s), the 200
    twice (its ACK lost, section 13.3.1.4), the BYE twice, each BYE answered. One row per
    transaction, timed by the first final reply."""
    inv = invite(A, "z9hG4bKinv1")
    ringing = sip_response(inv, 180, "Ringing", to_tag="b1")
    ok = sip_response(inv, 200, "OK", to_tag="b1", headers=[("Contact", f"<sip:bob@{B.hostport}>")],
                      body=sdp(B.ip, B_RTP, "bob"))
    in_dlg = dict(from_=ALICE, to=f"{BOB};tag=b1", call_id=CALL_ID)
    ack = sip_request("ACK", f"sip:bob@{B.hostport}", [via(A, "z9hG4bKack1")], cseq=1, **in_dlg)
    bye = sip_request("BYE", f"sip:bob@{B.hostport}", [via(A, "z9hG4bKbye1")], cseq=2, **in_dlg)
    bye_ok = sip_response(bye, 200, "OK")
    t = T0
    legs = [(t, A, B, inv), (t + 0.5, A, B, inv), (t + 1.5, A, B, inv),
            (t + 1.51, B, A, sip_response(inv, 100, "Trying")), (t + 1.6, B, A, ringing),
            (t + 2.0, B, A, ok), (t + 2.05, A, B, ack), (t + 2.5, B, A, ok), (t + 2.55, A, B, ack),
            (t + 10.0, A, B, bye), (t + 10.5, A, B, bye), (t + 10.55, B, A, bye_ok),
            (t + 10.6, B, A, bye_ok)]
    records, summary, _ = run(tmp_path, legs)
    # no proxy: the request-URIs as the caller sent them
    assert rows(records) == [acc("INVITE", 2.0, dst_domain="example.com"),
                             acc("BYE", 10.55, cseq=2)]
    assert summary["counters"] == {"sip.request_retransmission": 2 + 1,
                                   "sip.response_retransmission": 1 + 1, "sip.ack_2xx": 2}
    assert (summary["sip_messages"], summary["calls"], summary["proxies"]) == (13, 1, [])


# -- RFC 2543 peers (RFC 3261 section 17.2.3, last paragraphs) --------------------------------

@pytest.mark.parametrize("branch", [None, "1"], ids=["no_branch", "branch_without_cookie"])
def test_rfc2543_caller_through_a_proxy(tmp_path, branch):
    """A's Vias carry no z9hG4bK branch, and name it by host name, so P adds ;received= to
    that Via in what it relays and returns (RFC 3261 section 18.2.1). Transactions still
    match on Call-ID, CSeq, From tag and the Via's sent-by; the ACK of the 2xx reuses the
    INVITE's Via, as RFC 2543 UAs do."""
    a = Party("pc33.example.com")
    inv = sip_request("INVITE", "sip:bob@example.com", [via(a, branch)], from_=ALICE, to=BOB,
                      call_id=CALL_ID, cseq=1, body=sdp(A.ip, A_RTP, "alice"))
    fwd = relay(inv, via=via(P, "z9hG4bKpinv1"), uri=f"sip:bob@{B.hostport}", received=A.ip)
    ok = sip_response(fwd, 200, "OK", to_tag="b1", body=sdp(B.ip, B_RTP, "bob"))
    in_dlg = dict(from_=ALICE, to=f"{BOB};tag=b1", call_id=CALL_ID)
    ack = sip_request("ACK", f"sip:bob@{B.hostport}", [via(a, branch)], cseq=1, **in_dlg)
    bye = sip_request("BYE", f"sip:bob@{B.hostport}", [via(a, branch)], cseq=2, **in_dlg)
    bye_fwd = relay(bye, via=via(P, "z9hG4bKpbye1"), received=A.ip)
    bye_ok = sip_response(bye_fwd, 200, "OK")
    t = T0
    legs = [(t, A, P, inv), (t + 0.01, P, B, fwd), (t + 2.0, B, P, ok),
            (t + 2.005, P, A, relay(ok)),
            (t + 2.05, A, P, ack), (t + 2.055, P, B, relay(ack, via=via(P, "z9hG4bKpack1"))),
            (t + 10.0, A, P, bye), (t + 10.005, P, B, bye_fwd), (t + 10.05, B, P, bye_ok),
            (t + 10.055, P, A, relay(bye_ok))]
    records, summary, calls = run(tmp_path, legs)
    assert rows(records) == [acc("INVITE", 2.005), acc("BYE", 10.055, cseq=2)]
    assert summary["counters"] == {"sip.ack_2xx": 2}
    assert summary["proxies"] == ["192.0.2.1:5060"]
    assert [c.end_reason for c in calls] == ["completed"]


def test_rfc2543_caller_cancels(tmp_path):
    """An RFC 2543 caller CANCELs (same Via as its INVITE, section 9.1): the CANCEL is matched
    to the INVITE, so the call ends "cancelled" and report_cancels accounts the CANCEL."""
    a = Party("pc33.example.com")
    inv = sip_request("INVITE", "sip:bob@example.com", [via(a, None)], from_=ALICE, to=BOB,
                      call_id=CALL_ID, cseq=1, body=sdp(A.ip, A_RTP, "alice"))
    fwd = relay(inv, via=via(P, "z9hG4bKpinv1"), uri=f"sip:bob@{B.hostport}", received=A.ip)
    cancel = sip_request("CANCEL", "sip:bob@example.com", [via(a, None)], from_=ALICE, to=BOB,
                         call_id=CALL_ID, cseq=1)
    p_cancel = sip_request("CANCEL", f"sip:bob@{B.hostport}", [via(P, "z9hG4bKpinv1")],
                           from_=ALICE, to=BOB, call_id=CALL_ID, cseq=1)
    terminated = sip_response(fwd, 487, "Request Terminated", to_tag="b1")
    ack_487 = sip_request("ACK", "sip:bob@example.com", [via(a, None)], from_=ALICE,
                          to=f"{BOB};tag=b1", call_id=CALL_ID, cseq=1)
    p_ack = sip_request("ACK", f"sip:bob@{B.hostport}", [via(P, "z9hG4bKpinv1")], from_=ALICE,
                        to=f"{BOB};tag=b1", call_id=CALL_ID, cseq=1)
    # P answers the CANCEL itself (section 16.10), with A's Via as P received it
    cancel_ok = sip_response(as_received(cancel, A.ip), 200, "OK", to_tag="kmlocal")
    t = T0
    legs = [(t, A, P, inv), (t + 0.01, P, B, fwd),
            (t + 0.2, B, P, sip_response(fwd, 180, "Ringing", to_tag="b1")),
            (t + 3.0, A, P, cancel), (t + 3.001, P, A, cancel_ok),
            (t + 3.002, P, B, p_cancel), (t + 3.01, B, P, sip_response(p_cancel, 200, "OK")),
            (t + 3.02, B, P, terminated), (t + 3.025, P, B, p_ack),
            (t + 3.03, P, A, relay(terminated)), (t + 3.05, A, P, ack_487)]
    records, summary, calls = run(tmp_path, legs, acc_options=AccOptions(report_cancels=True))
    assert rows(records) == [
        acc("CANCEL", 3.001, to_tag="kmlocal", dst_domain="example.com"),
        acc("INVITE", 3.03, table="missed_calls", code="487", reason="Request Terminated")]
    assert [(c.end_reason, c.final_code) for c in calls] == [("cancelled", 487)]
    assert summary["counters"] == {"sip.ack_non2xx": 2}


# -- redirect --------------------------------------------------------------------------------

def test_302_redirect_is_a_missed_call(tmp_path):
    """B redirects (302, Contact elsewhere); stock Kamailio relays the 3xx upstream (only
    WITH_BLOCK3XX turns it into a 404) and its missed_calls row carries the 302."""
    inv = invite(A, "z9hG4bKinv1")
    fwd = relay(inv, via=via(P, "z9hG4bKpinv1"), uri=f"sip:bob@{B.hostport}")
    moved = sip_response(fwd, 302, "Moved Temporarily", to_tag="b1",
                         headers=[("Contact", "<sip:bob@203.0.113.7>")])
    acks = [sip_request("ACK", uri, [via(who, br)], from_=ALICE, to=f"{BOB};tag=b1",
                        call_id=CALL_ID, cseq=1)
            for who, br, uri in ((P, "z9hG4bKpinv1", f"sip:bob@{B.hostport}"),
                                 (A, "z9hG4bKinv1", "sip:bob@example.com"))]
    t = T0
    legs = [(t, A, P, inv), (t + 0.01, P, B, fwd), (t + 0.5, B, P, moved),
            (t + 0.505, P, B, acks[0]), (t + 0.51, P, A, relay(moved)), (t + 0.52, A, P, acks[1])]
    records, summary, calls = run(tmp_path, legs)
    assert rows(records) == [acc("INVITE", 0.51, table="missed_calls", code="302",
                                 reason="Moved Temporarily")]
    assert (summary["calls"], summary["failed"], summary["missed_rows"]) == (1, 1, 1)
    assert summary["counters"] == {"sip.ack_non2xx": 2}
    assert [(c.end_reason, c.final_code) for c in calls] == [("rejected", 302)]


# -- INVITEs without a final reply -----------------------------------------------------------

def _ringing_forever() -> list:
    inv = invite(A, "z9hG4bKinv1")
    return [(T0, A, B, inv), (T0 + 0.2, B, A, sip_response(inv, 180, "Ringing", to_tag="b1"))]


def test_invite_without_final_reply_is_open_at_end(tmp_path):
    records, summary, calls = run(tmp_path, _ringing_forever())
    assert records == []
    assert summary["counters"] == {"state.transaction_open_at_end": 1}
    assert [(c.state, c.end_reason, c.end_time) for c in calls] == [("TERMINATED", "open", None)]


def test_invite_without_final_reply_times_out_on_packet_time(tmp_path):
    """301 s later another call: the first INVITE, ringing since T0 + 0.2, timed out on
    packet time 120 s after it was sent (fr_inv_timer; Kamailio counts from the 1xx, 0.2 s
    later, within the 2 s the probe waits for the proxy's own 408), failed as the proxy fails
    it (408) at that moment; the later call is accounted."""
    later = proxied_call(301.0, call_id="c2@example.com", n="2")
    records, summary, calls = run(tmp_path, _ringing_forever() + later)
    assert rows(records) == [acc("INVITE", 303.005, callid="c2@example.com"),
                             acc("BYE", 311.055, callid="c2@example.com", cseq=2)]
    assert summary["counters"] == {"state.transaction_timeout": 1, "state.invite_timeout": 1,
                                   "sip.ack_2xx": 2}
    first = calls[0]
    assert (first.callid, first.end_reason, first.final_code, first.final_reason) == (
        "c1@example.com", "rejected", 408, "Request Timeout")
    assert first.end_time == pytest.approx(T0 + 120.0)


def test_invite_timeout_is_configurable(tmp_path):
    """--invite-timeout 60: the same ringing INVITE fails 60 s after it was sent."""
    later = proxied_call(301.0, call_id="c2@example.com", n="2")
    _, summary, calls = run(tmp_path, _ringing_forever() + later, invite_timeout=60.0)
    assert calls[0].end_time == pytest.approx(T0 + 60.0)
    assert summary["failed"] == 1


def test_invite_nobody_answered_ends_unanswered_after_timer_b(tmp_path):
    """An INVITE that got no reply at all and that no proxy relayed (a scanner's): after
    Timer B (32 s) it ends `unanswered`, counted, and gives no CDR (none is written unless
    asked for)."""
    inv = invite(A, "z9hG4bKinv1")
    later = proxied_call(40.0, call_id="c2@example.com", n="2")
    _, summary, calls = run(tmp_path, [(T0, A, B, inv)] + later)
    assert [(c.callid, c.end_reason) for c in calls][0] == ("c1@example.com", "unanswered")
    assert summary["counters"]["state.invite_unanswered"] == 1
    assert summary["counters"]["state.transaction_timeout"] == 1


# -- proxy-originated BYE --------------------------------------------------------------------

@pytest.mark.parametrize("proxies,described", [
    ([("192.0.2.1", 5060)], ["192.0.2.1:5060"]),
    ([("192.0.2.1", None)], ["192.0.2.1", "192.0.2.1:5060"]),
    ([], ["192.0.2.1:5060"]),
], ids=["proxy_given", "proxy_ip_given", "proxy_learned"])
def test_bye_sent_by_the_proxy_itself(tmp_path, proxies, described):
    """P ends the dialog itself (dialog timeout, dlg.end_dlg): a BYE to each side, carrying
    only P's Via. Kamailio accounts no request it originates; the call ends, by the proxy."""
    legs = proxied_call(bye=False)
    to_caller = sip_request("BYE", f"sip:alice@{A.hostport}", [via(P, "z9hG4bKdlg1")],
                            from_=f"{BOB};tag=b1", to=ALICE, call_id=CALL_ID, cseq=1)
    to_callee = sip_request("BYE", f"sip:bob@{B.hostport}", [via(P, "z9hG4bKdlg2")],
                            from_=ALICE, to=f"{BOB};tag=b1", call_id=CALL_ID, cseq=2)
    t = T0 + 30
    legs += [(t, P, A, to_caller), (t + 0.001, P, B, to_callee),
             (t + 0.05, A, P, sip_response(to_caller, 200, "OK")),
             (t + 0.051, B, P, sip_response(to_callee, 200, "OK"))]
    records, summary, calls = run(tmp_path, legs, proxies=proxies)
    assert rows(records) == [acc("INVITE", 2.005)]
    assert [(c.end_reason, c.ended_by, round(c.end_time, 3)) for c in calls] == [
        ("completed", "proxy", round(t, 3))]
    assert summary["counters"] == {"sip.ack_2xx": 2}
    assert summary["proxies"] == described


# -- dialog expiry ---------------------------------------------------------------------------

def test_answered_call_without_bye_expires_on_packet_time(tmp_path):
    """No BYE ever comes for the first call; three hours of packet time later a second call
    starts. With dialog_timeout=600 the first ends "expired" at its last activity (the 200
    relayed); the second, also without BYE, is "open" at the end of the input."""
    legs = proxied_call(bye=False) + proxied_call(3 * 3600.0, call_id="c2@example.com",
                                                  bye=False, n="2")
    records, summary, calls = run(tmp_path, legs, dialog_timeout=600)
    assert rows(records) == [acc("INVITE", 2.005),
                             acc("INVITE", 3 * 3600 + 2.005, callid="c2@example.com")]
    assert [(c.callid, c.end_reason, c.ended_by, c.end_time and round(c.end_time, 3))
            for c in calls] == [(CALL_ID, "expired", "", round(T0 + 2.005, 3)),
                                ("c2@example.com", "open", "", None)]
    assert summary["counters"] == {"state.dialog_expired": 1, "sip.ack_2xx": 4}


def test_call_expires_on_any_later_message(tmp_path):
    """Expiry runs on packet time whatever arrives: an OPTIONS keep-alive three hours after a
    call that never saw its BYE ends it "expired", with no later INVITE needed."""
    options = sip_request("OPTIONS", f"sip:{P.hostport}", [via(A, "z9hG4bKka")], from_=ALICE,
                          to=f"<sip:{P.hostport}>", call_id="ka@example.com", cseq=1)
    legs = proxied_call(bye=False) + [(T0 + 3 * 3600.0, A, P, options)]
    records, summary, calls = run(tmp_path, legs, dialog_timeout=600)
    assert [(c.callid, c.end_reason, round(c.end_time, 3)) for c in calls] == [
        (CALL_ID, "expired", round(T0 + 2.005, 3))]
    assert summary["counters"]["state.dialog_expired"] == 1


def test_in_dialog_requests_keep_a_dialog_alive(tmp_path):
    """Session refreshes (re-INVITE every 10 min, RFC 4028) keep the first call alive past
    dialog_timeout=1800 although a second call starts at 2500 s: it ends by its BYE at 3600 s,
    as Kamailio's dialog timer is reset by in-dialog requests (timeout_noreset=0)."""
    legs = proxied_call(bye=False)
    for i, t in enumerate((600.0, 1200.0, 1800.0, 2400.0)):
        legs += in_dialog(t, "INVITE", 2 + i, branch=f"reinv{i}")
    legs += in_dialog(3600.0, "BYE", 6, branch="bye1")
    legs += proxied_call(2500.0, call_id="c2@example.com", n="2")
    records, summary, calls = run(tmp_path, sorted(legs, key=lambda leg: leg[0]),
                                  dialog_timeout=1800)
    assert [(c.callid, c.end_reason, c.ended_by, round(c.end_time, 3)) for c in calls] == [
        ("c2@example.com", "completed", "caller", round(T0 + 2510.0, 3)),
        (CALL_ID, "completed", "caller", round(T0 + 3600.0, 3))]
    assert [(r.callid, r.method, r.cseq) for r in records] == [
        (CALL_ID, "INVITE", 1), ("c2@example.com", "INVITE", 1), ("c2@example.com", "BYE", 2),
        (CALL_ID, "BYE", 6)]
    assert "state.dialog_expired" not in summary["counters"]


# -- malformed signalling --------------------------------------------------------------------

def _broken(start: str, headers: list[tuple[str, str]]) -> bytes:
    return sip_message(start, headers)


def test_malformed_signalling_is_counted_and_later_calls_accounted(tmp_path):
    """Requests without Call-ID, CSeq or Via, with an unreadable CSeq (letters, no method, a
    non-ASCII digit) or Via; responses to nothing (unknown branch, Via without branch, CSeq
    method that never was) or without CSeq/Via. None raises; each is counted; the call after
    them is accounted whole."""
    v = ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbad")
    frm, to, cid = ("From", ALICE), ("To", BOB), ("Call-ID", "bad@example.com")
    cseq = ("CSeq", "1 INVITE")
    inv = "INVITE sip:bob@example.com SIP/2.0"
    ok = "SIP/2.0 200 OK"
    requests = [
        [v, frm, to, cseq],  # no Call-ID
        [v, frm, to, ("Call-ID", ""), cseq],  # empty Call-ID
        [v, frm, to, cid],  # no CSeq
        [v, frm, to, cid, ("CSeq", "abc INVITE")],
        [v, frm, to, cid, ("CSeq", "1")],
        [v, frm, to, cid, ("CSeq", "\u00b2 INVITE")],  # str.isdigit() is true, int() fails
        [v, frm, to, cid, ("CSeq", "99999999999 INVITE")],  # beyond 2**32 (section 8.1.1.5)
        [frm, to, cid, cseq],  # no Via
        [("Via", "garbage"), frm, to, cid, cseq],
    ]
    responses = [
        [("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnever"), frm, to, cid, cseq],
        [("Via", "SIP/2.0/UDP 192.0.2.10:5060"), frm, to, cid, cseq],  # no branch: RFC 2543 key
        [v, frm, to, cid, ("CSeq", "1 FROBNICATE")],
        [v, frm, to, cid],  # no CSeq
        [frm, to, cid, cseq],  # no Via
    ]
    legs = [(T0 + i * 0.1, A, B, _broken(inv, h)) for i, h in enumerate(requests)]
    legs += [(T0 + 1 + i * 0.1, B, A, _broken(ok, h)) for i, h in enumerate(responses)]
    # Content-Length values int() cannot read although str.isdigit() is true (over UDP the
    # datagram bounds the message: counted, then handled as the orphan response it is)
    legs += [(T0 + 2 + i * 0.1, B, A, sip_message(ok, responses[0], content_length=cl))
             for i, cl in enumerate(("\u00b2", "9" * 5000))]
    legs += proxied_call(5.0)
    records, summary, calls = run(tmp_path, legs)
    assert rows(records) == [acc("INVITE", 7.005), acc("BYE", 15.055, cseq=2)]
    assert summary["counters"] == {"sip.missing_mandatory_header": len(requests) + 2,
                                   "state.orphan_response": 3 + 2, "sip.bad_content_length": 2,
                                   "sip.ack_2xx": 2}
    assert [c.end_reason for c in calls] == ["completed"]


@pytest.mark.parametrize("port", ["\u00b2", "9" * 5000], ids=["superscript", "5000_digits"])
def test_unreadable_uri_ports_do_not_break_accounting(tmp_path, port):
    """A port written with a superscript digit (str.isdigit() accepts it, int() does not) or
    with more digits than int() converts, in the To URI and the forwarded request-URI. The
    row is written, the port ignored."""
    inv = sip_request("INVITE", "sip:bob@example.com", [via(A, "z9hG4bKinv1")], from_=ALICE,
                      to=f"<sip:bob@example.com:{port}>", call_id=CALL_ID, cseq=1)
    fwd = relay(inv, via=via(P, "z9hG4bKpinv1"), uri=f"sip:bob@198.51.100.20:{port}")
    ok = sip_response(fwd, 200, "OK", to_tag="b1")
    legs = [(T0, A, P, inv), (T0 + 0.01, P, B, fwd), (T0 + 2.0, B, P, ok),
            (T0 + 2.005, P, A, relay(ok))]
    records, _, _ = run(tmp_path, legs)
    assert rows(records) == [acc("INVITE", 2.005)]


# -- the same call over IPv6 and TCP ---------------------------------------------------------

@pytest.mark.parametrize("family,transport", [("ipv4", "tcp"), ("ipv6", "udp"), ("ipv6", "tcp")])
def test_ipv6_and_tcp_give_the_rows_of_udp_ipv4(tmp_path, family, transport):
    a, p, b = (A, P, B) if family == "ipv4" else (A6, P6, B6)
    legs = proxied_call(a=a, p=p, b=b, tr=transport.upper())
    records, summary, calls = run(tmp_path, legs, transport)
    reference, ref_summary, _ = run(tmp_path, proxied_call())

    def same_hosts(r: AccRecord) -> AccRecord:
        return r._replace(src_ip=A.ip, dst_domain=B.ip)

    assert [same_hosts(r) for r in rows(records)] == rows(reference)
    assert [(r.src_ip, r.dst_domain) for r in records] == [(a.ip, host(b))] * 2
    for key in ("sip_messages", "calls", "answered", "acc_rows", "missed_rows"):
        assert summary[key] == ref_summary[key], key
    # TCP adds its connections (A-P and P-B, each direction)
    assert summary["counters"] == {**ref_summary["counters"],
                                   **({"tcp.streams": 4} if transport == "tcp" else {})}
    assert [c.end_reason for c in calls] == ["completed"]


@pytest.mark.parametrize("family,transport", [("ipv4", "udp"), ("ipv4", "tcp"), ("ipv6", "tcp")])
def test_reply_generated_by_a_learned_proxy_is_not_accounted(tmp_path, family, transport):
    """No --proxy: P is learned from the call it relays. Then P answers an INVITE itself
    (404 after a failed location lookup): Kamailio accounts nothing it did not relay. Over
    TCP P relays from an ephemeral port, so the port its Via names is learned too."""
    a, p, b = (A, P, B) if family == "ipv4" else (A6, P6, B6)
    tr = transport.upper()
    inv = invite(a, "z9hG4bKinv9", tr, call_id="c9@example.com")
    legs = proxied_call(a=a, p=p, b=b, tr=tr) + [
        (T0 + 20, a, p, inv),
        (T0 + 20.01, p, a, sip_response(inv, 404, "Not Found", to_tag="kmlocal"))]
    records, summary, _ = run(tmp_path, legs, transport)
    assert [(r.method, r.callid) for r in records] == [("INVITE", CALL_ID), ("BYE", CALL_ID)]
    assert (f"[{p.ip}]:5060" if ":" in p.ip else f"{p.ip}:5060") in summary["proxies"]
    assert (summary["calls"], summary["failed"]) == (2, 1)


# -- a bug in the signalling layers (pipeline.account_files) ---------------------------------

def test_a_bug_on_one_message_is_counted_unless_strict(tmp_path, monkeypatch):
    """As the decoder does: without strict mode an exception while handling one message is
    counted (internal.signalling_error) and the replay goes on; strict mode raises DecodeBug
    with the frame number; an exception from the caller's sink (a store error) always
    propagates, never swallowed as a signalling bug."""
    import pipeline
    from probe.decode import DecodeBug
    from sip_dissect import signalling

    path = write_sip_capture(tmp_path / "two.pcap", proxied_call() + proxied_call(
        60.0, call_id="c2@example.com", n="2"))
    original = signalling.Signalling

    class BreaksOnFirstBye(original):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            add = self.add

            def breaking(d):
                if d.payload.startswith(b"BYE ") and CALL_ID.encode() in d.payload:
                    raise RuntimeError("simulated bug")
                return add(d)
            self.add = breaking

    monkeypatch.setattr(signalling, "Signalling", BreaksOnFirstBye)
    records = []
    summary = pipeline.account_files([str(path)], records.append,
                                     pipeline.ProbeOptions(strict=False))
    assert [(r.callid, r.method) for r in records] == [
        (CALL_ID, "INVITE"), ("c2@example.com", "INVITE"), ("c2@example.com", "BYE")]
    assert summary["counters"]["internal.signalling_error"] == 2  # the BYE on both legs
    assert summary["counters"]["state.orphan_response"] == 2  # their 200s
    with pytest.raises(DecodeBug, match="frame 11: RuntimeError"):
        pipeline.account_files([str(path)], records.append, pipeline.ProbeOptions(strict=True))
    monkeypatch.setattr(signalling, "Signalling", original)

    def full_disk(rec):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        pipeline.account_files([str(path)], full_disk, pipeline.ProbeOptions(strict=False))


def test_a_cdr_store_error_propagates_too(tmp_path):
    """The CDR half of the store gets the same treatment as the acc half: its error ends the
    replay, even without strict mode, instead of being counted as a signalling bug."""
    import pipeline
    from sip_dissect.accounting import ProxySet
    from store import StoreError

    class CdrsFail:
        def add_cdr(self, rec):
            raise StoreError("disk full")

    path = write_sip_capture(tmp_path / "one.pcap", proxied_call())
    cdrs = pipeline._cdr_writer(CdrsFail(), ProxySet(), None)
    with pytest.raises(StoreError, match="disk full"):
        pipeline.account_files([str(path)], lambda rec: None,
                               pipeline.ProbeOptions(strict=False), subscribers=[cdrs])


def test_tcp_content_length_too_long_for_int(tmp_path):
    """A Content-Length of 5000 digits on a TCP stream (int() refuses more than 4300): the
    stream's bytes are dropped and counted, the call on the other connections accounted."""
    bad = sip_message("INVITE sip:bob@example.com SIP/2.0",
                      [("Via", "SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKbig"), ("From", ALICE),
                       ("To", BOB), ("Call-ID", "big@example.com"), ("CSeq", "1 INVITE")],
                      content_length="9" * 5000)
    legs = [(T0, Party(A.ip, 5070), P, bad)] + proxied_call(1.0, tr="TCP")
    records, summary, _ = run(tmp_path, legs, "tcp")
    assert rows(records) == [acc("INVITE", 3.005), acc("BYE", 11.055, cseq=2)]
    assert summary["counters"] == {"sip.body_too_large": 1, "sip.ack_2xx": 2,
                                   "tcp.streams": 3 * 2}  # three connections, both ways
