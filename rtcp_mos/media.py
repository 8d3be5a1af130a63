"""The media layer: each call's session descriptions per leg, and the RTCP datagrams.

It subscribes to the signalling layer's events (sip_dissect.events): every SDP seen on a call
is appended to `call.media`, a `CallMedia`. Asked for a leg ("A": the caller's side of the
proxy, "B": the callee's side, as rtpengine labels them), it works out that leg's offer and
answer in force (`LegMedia`: RFC 3264 section 4, one offer outstanding at a time; the next SDP
from the other side answers it; a re-INVITE or UPDATE starts a new exchange) and parses the
bodies. Keeping is a list append; working out and parsing wait for first use, since most
calls never need them and doing it per message cost the replay a seventh of its time.

RTCP datagrams arrive here from the pipeline's classification (`rtcp()`), not through SIP.
"""
from __future__ import annotations

from probe.counters import Counters
from probe.records import Datagram
from sip_dissect.events import SdpSeen, Subscriber
from sip_dissect.sdp import Sdp, parse_sdp

from .rtcp import parse_compound


class LegMedia:
    """One leg's offer and answer in force, as seen (SdpSeen: time, direction, message)."""

    __slots__ = ("offer", "answer", "pending", "exchanges", "_answered", "_latest")

    def __init__(self):
        self.offer: SdpSeen | None = None
        self.answer: SdpSeen | None = None
        self.pending: SdpSeen | None = None  # an offer not answered yet
        self.exchanges = 0  # offer/answer exchanges completed (1 + re-INVITEs, UPDATEs)
        self._answered: set[tuple] = set()  # (CSeq, method) of the requests answered
        self._latest: tuple | None = None

    def seen(self, sdp: SdpSeen) -> str:
        """Record one SDP; "offer" or "answer", as RFC 3264 section 4 orders them."""
        key = (sdp.message.cseq, "INVITE" if sdp.method == "ACK" else sdp.method)
        pending = self.pending
        if pending is not None and pending.from_caller != sdp.from_caller:
            self.offer, self.answer, self.pending = pending, sdp, None
            self.exchanges += 1
            self._answered.add(key)
            self._latest = key
            return "answer"
        if sdp.status is not None and key in self._answered:
            # the same answer again: the 200 after a 183 (RFC 3261 s13.2.1), a reliable 183
            # resent (RFC 3262); in force only if no later exchange replaced it
            if key == self._latest:
                self.answer = sdp
            return "answer"
        self.pending = sdp  # a first offer, or one that replaces an unanswered one (glare)
        return "offer"

    def descriptions(self) -> tuple[Sdp | None, Sdp | None]:
        """(offer, answer) in force, parsed; the pending offer when none was answered yet."""
        offer = self.offer if self.offer is not None else self.pending
        return _parsed(offer), _parsed(self.answer)


def _parsed(seen: SdpSeen | None) -> Sdp | None:
    return None if seen is None else parse_sdp(seen.message.body)


class CallMedia:
    """A call's SDP messages in the order seen; legs worked out on demand."""

    __slots__ = ("seen",)

    def __init__(self, first: SdpSeen):
        self.seen = [first]

    @property
    def legs(self) -> dict[str, LegMedia]:
        legs: dict[str, LegMedia] = {}
        for sdp in self.seen:
            leg = legs.get(sdp.leg)
            if leg is None:
                leg = legs[sdp.leg] = LegMedia()
            leg.seen(sdp)
        return legs

    def leg(self, name: str) -> LegMedia | None:
        return self.legs.get(name)


class MediaLayer(Subscriber):
    """Keeps each call's media description; counts the RTCP datagrams it is given."""

    def __init__(self, counters: Counters):
        self.c = counters

    def sdp_seen(self, call, seen: SdpSeen) -> None:
        media = call.media
        if media is None:
            call.media = CallMedia(seen)
        else:
            media.seen.append(seen)

    def rtcp(self, d: Datagram) -> None:
        """An RTCP datagram (RFC 3550 section 6): its compound parsed (rtcp.parse_compound),
        what it noted counted (rtcp.srtcp, rtcp.reduced_size and the anomalies)."""
        c = self.c
        c["rtcp.datagrams"] += 1
        for name in parse_compound(d.payload).anomalies:
            c[name] += 1
