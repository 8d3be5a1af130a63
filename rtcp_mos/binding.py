"""Which call and side an RTCP datagram belongs to, from the calls' SDP.

Every SDP a call carried (offer, answer, re-INVITE, UPDATE, PRACK; both legs of a relayed
call) names where its sender wants RTCP: `sdp.Media.rtcp` (a=rtcp, the RTP port with
a=rtcp-mux, else RTP port + 1; RFC 3605, 5761, 3550 section 11). That endpoint is the sender's:
an SDP from the caller's side of the dialog is side A, from the callee's side B, on either leg
of a relay (rtpengine's labels: its own addresses on leg A answer for the callee, on leg B
offer for the caller). A datagram binds, in this order:

1. by source: it comes from an endpoint an SDP named: that SDP's side;
2. by destination: it goes to one (the sender is behind NAT and its SDP address is private):
   the other side;
3. by SSRC: its reporter's SSRC was bound before (NAT on both ends).

Indexing is lazy: once RTCP has been seen (before, the calls going on are taken from the dialog
layer at the first RTCP datagram), a call's first SDP queues it (the media layer appends it to
`queued`), and its bodies are parsed when the next RTCP datagram comes, so SIP-only traffic
parses no SDP and keeps no call alive; later
SDPs (the answer, re-INVITEs, UPDATEs) are only appended, and indexed when a datagram binds
to a call with SDP not indexed yet, or misses (at most once a second). A call stays indexed until
MEDIA_GRACE seconds after its end (late RRs and the RTCP BYE follow the SIP BYE); then
`expired()` hands it back and forgets it.
"""
from __future__ import annotations

import cython

from .metrics import DEFAULT_CLOCK_RATE, Codec

MEDIA_GRACE = 10.0  # seconds after a call's end during which its reports still bind
MAX_QUEUED = 100_000  # calls waiting for indexing; only grows without RTCP (then harmless)
# seconds of packet time between looks for new SDP of indexed calls
CHECK_EVERY: cython.double = 1.0
MAX_SSRCS = 100_000  # learned SSRCs per generation (two generations kept)
NOT_AUDIO_CODECS = frozenset(("TELEPHONE-EVENT", "CN", "RED", "COMFORT-NOISE"))
SOURCE, DESTINATION, SSRC = "source", "destination", "ssrc"


class Stream:
    """A call's RTCP endpoint: the call, the side whose SDP named it, what it carries."""

    call: object
    side: str
    leg: str
    index: cython.Py_ssize_t  # of the m= line in its SDP
    codec: object  # Codec
    __slots__ = ("call", "side", "leg", "index", "codec")

    def __init__(self, call, side: str, leg: str, index: cython.Py_ssize_t):
        self.call, self.side, self.leg, self.index = call, side, leg, index
        self.codec = Codec(None, DEFAULT_CLOCK_RATE, None)


class Binding:
    """Where a datagram belongs: a call, the side that sent it, how it was found."""

    call: object
    side: str
    codec: object  # Codec
    how: str
    __slots__ = ("call", "side", "codec", "how")

    def __init__(self, call, side: str, codec, how: str):
        self.call, self.side, self.codec, self.how = call, side, codec, how


def codec_in_force(media) -> dict[tuple[str, int], Codec]:
    """(leg, m= index) -> the codec the leg's answer in force chose (its first audio format;
    the offer's while unanswered), with its clock rate and ptime (RFC 3264 section 6.1)."""
    out = {}
    for leg_name, leg in media.legs.items():
        offer, answer = leg.descriptions(media.sdp)
        for i, m in enumerate((answer or offer).media if (answer or offer) else ()):
            other = offer.media[i] if offer is not None and i < len(offer.media) else None
            ptime = m.ptime if m.ptime is not None else (other.ptime if other else None)
            for fmt in m.formats:
                rtpmap = m.codec(fmt)
                if rtpmap is not None and rtpmap.encoding.upper() not in NOT_AUDIO_CODECS:
                    out[(leg_name, i)] = Codec(rtpmap.encoding, rtpmap.clock_rate, ptime)
                    break
    return out


class Binder:
    """The endpoint index of the calls with media, and the SSRCs learned."""

    c: object  # the Counters
    endpoints: dict  # (address, port) -> Stream
    queued: list  # calls with a first SDP not indexed yet (the layer appends)
    indexed: dict  # id(call) -> (call, its endpoint keys)
    changed: dict  # id(call) -> call: indexed calls with SDP since (the layer adds them)
    _checked_at: cython.double  # packet time indexed calls were last checked for new SDP
    _ssrcs: dict  # reporter SSRC -> the Binding it was last bound by (its call, side, codec)
    _older_ssrcs: dict
    __slots__ = ("c", "endpoints", "queued", "indexed", "changed", "_checked_at", "_ssrcs",
                 "_older_ssrcs")

    def __init__(self, counters):
        self.c = counters
        self.endpoints = {}
        self.queued = []
        self.indexed = {}
        self.changed = {}
        self._checked_at = -1.0
        self._ssrcs = {}
        self._older_ssrcs = {}

    def trim_queue(self) -> None:
        """The queue is full (SIP without any RTCP): forget its older half."""
        queued = self.queued
        self.c["media.index_queue_full"] += len(queued) // 2
        del queued[:len(queued) // 2]

    def _index_queued(self) -> None:
        queued = self.queued
        calls, queued[:] = list(queued), []  # the layer holds this very list
        for call in calls:
            media = call.media
            if media is not None and id(call) not in self.indexed:
                self._index(call, media)

    def _index_changed(self, now: cython.double) -> None:
        """Calls indexed before that got SDP since (an answer, a re-INVITE to hold and back):
        index their new bodies, in the order the calls were first indexed (a later SDP naming
        the same endpoint wins). Run on a miss, at most once per CHECK_EVERY of packet time
        (unbound traffic misses on every datagram)."""
        if 0.0 <= now - self._checked_at < CHECK_EVERY:
            return
        self._checked_at = now
        changed = self.changed
        if not changed:
            return
        for key, (call, _) in list(self.indexed.items()):
            if key in changed:
                media = call.media
                if media.indexed < len(media.seen):
                    self._index(call, media)

    def _index(self, call, media) -> None:
        endpoints = self.endpoints
        keys = list(self.indexed[id(call)][1]) if id(call) in self.indexed else []
        for seen in media.seen[media.indexed:]:
            sdp = media.sdp(seen)
            if sdp is None:
                continue
            side = "A" if seen.from_caller else "B"
            for i, m in enumerate(sdp.media):
                ep = m.rtcp
                if ep is not None:
                    key = (ep.address, ep.port)
                    endpoints[key] = Stream(call, side, seen.leg, i)
                    keys.append(key)
        media.indexed = len(media.seen)
        self.changed.pop(id(call), None)
        codecs = codec_in_force(media)
        for key in keys:
            stream = endpoints.get(key)
            if stream is not None and stream.call is call:
                stream.codec = codecs.get((stream.leg, stream.index), stream.codec)
        self.indexed[id(call)] = (call, keys)

    def bind(self, src: str, sport, dst: str, dport, reporter_ssrc,
             now: cython.double = 0.0):
        """The call and side of a datagram from (src, sport) to (dst, dport) at `now`, sent
        by `reporter_ssrc` (None: unknown): a Binding, or None."""
        if self.queued:
            self._index_queued()
        endpoints = self.endpoints
        stream: Stream | None = endpoints.get((src, sport))
        if stream is not None and stream.call.media.indexed < len(stream.call.media.seen):
            self._checked_at = -1.0  # this call has SDP not indexed: check now
        if stream is None or self._checked_at < 0:
            self._index_changed(now)
            stream = endpoints.get((src, sport))
        if stream is not None:
            found = Binding(stream.call, stream.side, stream.codec, SOURCE)
        else:
            stream = endpoints.get((dst, dport))
            if stream is not None and stream.call.media.indexed < len(stream.call.media.seen):
                self._checked_at = -1.0  # this call has SDP not indexed: check now
                self._index_changed(now)
                stream = endpoints.get((dst, dport))
            if stream is not None:
                found = Binding(stream.call, "B" if stream.side == "A" else "A",
                                stream.codec, DESTINATION)
            elif reporter_ssrc is not None:
                known: Binding | None = self._ssrcs.get(reporter_ssrc) \
                    or self._older_ssrcs.get(reporter_ssrc)
                if known is None or id(known.call) not in self.indexed:
                    return None
                return Binding(known.call, known.side, known.codec, SSRC)
            else:
                return None
        if reporter_ssrc is not None:
            self._learn(reporter_ssrc, found)
        return found

    def _learn(self, ssrc, what: Binding) -> None:
        ssrcs = self._ssrcs
        if len(ssrcs) >= MAX_SSRCS and ssrc not in ssrcs:
            self._older_ssrcs, self._ssrcs = ssrcs, {}  # the older generation is dropped
            ssrcs = self._ssrcs
        ssrcs[ssrc] = what

    def expired(self, now) -> list:
        """Calls ended more than MEDIA_GRACE before `now` (every indexed call when None: end
        of input), forgotten here."""
        gone = []
        for key, (call, keys) in list(self.indexed.items()):
            end = call.end_time  # None while the call goes on
            if now is not None and (end is None or now - end <= MEDIA_GRACE):
                continue
            del self.indexed[key]
            self.changed.pop(key, None)
            for ep in keys:
                stream = self.endpoints.get(ep)
                if stream is not None and stream.call is call:
                    del self.endpoints[ep]
            gone.append(call)
        if now is not None:
            return gone
        self._ssrcs, self._older_ssrcs = {}, {}
        return gone
