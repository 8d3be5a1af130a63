"""The call events the signalling layer publishes (sip_dissect.events) and the media layer's
use of them (rtcp_mos.media), on real captures: the lab's Kamailio calls and public ones.
tshark's SDP and RTCP decodes are the oracle for which messages carry SDP and which datagrams
are RTCP."""
from __future__ import annotations

import subprocess

import pytest
from lab_oracle import LAB_PCAPS
from shared_pcaps import require_tshark, shared

from pipeline import account_files
from sip_dissect.events import EVENTS, Publisher, Subscriber

LAB = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/capture.pcap"))


class Recorder(Subscriber):
    """Every event, in order; each ended call kept."""

    def __init__(self):
        self.log, self.ended = [], []

    def call_started(self, call):
        self.log.append(("started", call.callid))

    def call_answered(self, call):
        self.log.append(("answered", call.callid))

    def call_ended(self, call):
        self.log.append(("ended", call.callid, call.end_reason))
        self.ended.append(call)

    def sdp_seen(self, call, seen):
        self.log.append(("sdp", seen.frame, seen.leg, seen.method, seen.status, seen.from_caller))


def replay(path, **kw) -> tuple[Recorder, dict]:
    rec = Recorder()
    summary = account_files([str(path)], lambda r: None, subscribers=[rec], **kw)
    return rec, summary


def tshark_fields(path, display_filter: str, *fields: str, heuristic_rtcp=False) -> list[list]:
    cmd = [require_tshark(), "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    if heuristic_rtcp:
        cmd += ["-o", "rtcp.heuristic_rtcp:TRUE"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_reinvite_call_events_in_order():
    """lab-reinvite: caller -> Kamailio (leg A) -> callee (leg B), answered, re-INVITE to
    sendonly, BYE. Each SDP once per leg, offer from the caller, answer in the 200s."""
    rec, _ = replay(LAB_PCAPS / "lab-reinvite" / "capture.pcap")
    (call,) = rec.ended
    cid = call.callid
    assert rec.log == [
        ("started", cid),
        ("sdp", 1, "A", "INVITE", None, True), ("sdp", 3, "B", "INVITE", None, True),
        ("sdp", 7, "B", "INVITE", 200, False), ("sdp", 8, "A", "INVITE", 200, False),
        ("answered", cid),
        ("sdp", 11, "A", "INVITE", None, True), ("sdp", 13, "B", "INVITE", None, True),
        ("sdp", 14, "B", "INVITE", 200, False), ("sdp", 15, "A", "INVITE", 200, False),
        ("ended", cid, "completed")]
    for name in ("A", "B"):
        leg = call.media.leg(name)
        assert leg.exchanges == 2 and leg.pending is None
        offer, answer = leg.descriptions()
        # the re-INVITE's offer is in force: the caller put the call on hold
        assert [m.direction for m in offer.media] == ["sendonly"]
        assert (offer.media[0].port, answer.media[0].port) == (6000, 6100)


@pytest.mark.parametrize("scenario", LAB, ids=lambda p: p.name)
def test_sdp_events_are_the_messages_tshark_decodes_sdp_in(scenario):
    """Every SIP message with an SDP body (tshark's `sdp` filter) of an accounted call is
    published once, with the m= port tshark reads; retransmissions (tshark's sip.resend: the
    proxy's copies of an INVITE nobody answers) are the same message, not published again."""
    path = scenario / "capture.pcap"
    rec, summary = replay(path)
    ours = {e[1] for e in rec.log if e[0] == "sdp"}
    expected = {int(f[0]) for f in tshark_fields(path, "sdp && sip.resend == 0", "frame.number")}
    if summary["calls"] == 0:
        assert ours == set()
        return
    assert ours == expected
    ports = {}
    for call in rec.ended:
        for leg in (call.media.legs.values() if call.media else ()):
            for seen in (leg.offer, leg.answer, leg.pending):
                if seen is not None:
                    ports[seen.frame] = seen.body
    tshark_ports = {int(f[0]): f[1] for f in
                    tshark_fields(path, "sdp", "frame.number", "sdp.media.port")}
    for frame, body in ports.items():
        assert f"m=audio {tshark_ports[frame]} ".encode() in body


def test_update_and_reliable_183_exchanges():
    """An IPv6 call through a proxy with a reliable 183 (PRACK) and UPDATEs (sngrep's
    capture): the UPDATE exchanges replace the INVITE's, a 183 repeating an answer does not
    open a new exchange."""
    rec, _ = replay(shared("sngrep_ipv6-frag-sip-prack-update.pcap"))
    (call,) = rec.ended
    for name in ("A", "B"):
        leg = call.media.leg(name)
        assert leg.pending is None
        assert (leg.offer.method, leg.answer.method, leg.answer.status) == ("UPDATE", "UPDATE", 200)
        assert leg.offer.from_caller and not leg.answer.from_caller
        assert leg.exchanges == 3  # the INVITE/183 and two UPDATEs
    assert call.media.leg("A").offer.src[0] != call.media.leg("B").offer.src[0]


def test_rtcp_reaches_the_media_layer():
    """RTCP datagrams go to the media layer by the pipeline's classification, counted as
    tshark (heuristic RTCP on) finds them."""
    path = shared("ndpi_rtcp-compound-sr-rr-loss.pcap")
    _, summary = replay(path)
    frames = tshark_fields(path, "rtcp", "frame.number", heuristic_rtcp=True)
    assert summary["counters"]["rtcp.datagrams"] == len(frames) > 0


def test_publisher_calls_only_what_a_subscriber_implements():
    class OnlyEnds(Subscriber):
        def call_ended(self, call):
            pass

    class Duck:  # not a Subscriber: its methods count by name
        def call_started(self, call):
            pass

    ends, duck = OnlyEnds(), Duck()
    pub = Publisher([ends, duck])
    assert pub.call_ended == (ends.call_ended,)
    assert pub.call_started == (duck.call_started,)
    assert pub.sdp_seen == () and pub.transaction_final == ()
    pub.add_handler("sdp_seen", print)
    assert pub.sdp_seen == (print,)
    with pytest.raises(ValueError, match="no such event"):
        pub.add_handler("call_exploded", print)
    assert set(EVENTS) == {"call_started", "sdp_seen", "call_answered", "call_ended",
                           "transaction_final", "provisional"}
