"""The media layer: each call's session descriptions per leg, and the RTCP datagrams.

It subscribes to the signalling layer's events (sip_dissect.events): every SDP seen on a call
is appended to `call.media`, a `CallMedia`. Asked for a leg ("A": the caller's side of the
proxy, "B": the callee's side, as rtpengine labels them), it works out that leg's offer and
answer in force (`LegMedia`: RFC 3264 section 4, one offer outstanding at a time; the next SDP
from the other side answers it; a re-INVITE or UPDATE starts a new exchange) and parses the
bodies. Keeping is a list append; working out and parsing wait for first use, since most
calls never need them and doing it per message cost the replay a seventh of its time.

RTCP datagrams arrive here from the pipeline's classification (`rtcp()`), not through SIP.
Given a `sink`, each report block becomes an RtcpReportRecord (rtcp_reports) bound to its call
and side (binding.py) with its figures (metrics.py), and each call with reports a
CallQualityRecord per side (quality.py) once MEDIA_GRACE has passed after its end, or at
close(). Without a sink only the counters run.
"""
from __future__ import annotations

import os

import cython

from probe.counters import Counters
from probe.records import Datagram
from sip_dissect.dialog import Call
from sip_dissect.events import SdpSeen, Subscriber
from sip_dissect.sdp import Sdp, parse_sdp

from .binding import MAX_QUEUED, Binder, Binding
from .metrics import UNKNOWN_CODEC, PairState, block_metrics, rtt_seconds
from .quality import CallQuality, SideQuality
from .records import RtcpReportRecord
from .rtpengine_mos import FORMULAS, G107
from .rtcp import ntp_middle, parse_compound

SWEEP_EVERY = 5.0  # seconds of packet time between looks for calls past their grace period
# SRs and reporter/source pairs per generation (two kept)
MAX_REMEMBERED: cython.Py_ssize_t = 200_000
XR_UNAVAILABLE = 127  # RFC 3611 section 4.7.5-6: the metric is not available
STRICT = os.environ.get("SIPPROBE_STRICT") == "1"  # tests: a bug raises, not a counter
# a NamedTuple built as tuple.__new__(Class, values): the same object, without the class's
# Python-level __new__ (a frame per record, on the per-report path)
_new = tuple.__new__


class LegMedia:
    """One leg's offer and answer in force, as seen (SdpSeen: time, direction, body)."""

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
        key = (sdp.cseq, "INVITE" if sdp.method == "ACK" else sdp.method)
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

    def descriptions(self, parse=None) -> tuple[Sdp | None, Sdp | None]:
        """(offer, answer) in force, parsed (by `parse`: CallMedia.sdp, which parses each
        message once); the pending offer when none was answered yet."""
        offer = self.offer if self.offer is not None else self.pending
        parse = parse or _parsed
        return parse(offer), parse(self.answer)


def _parsed(seen: SdpSeen | None) -> Sdp | None:
    return None if seen is None else parse_sdp(seen.body)


class CallMedia:
    """A call's SDP messages in the order seen; legs worked out on demand. An extension type
    once compiled: one is made per call with SDP, on the SIP path."""

    seen: list
    indexed: cython.Py_ssize_t  # SDPs of `seen` the binder has indexed
    # id() of an SdpSeen of `seen` -> its body parsed; None until the first is (most calls
    # of a capture without RTCP never are: no dict made and freed per call)
    _sdps: object
    __slots__ = ("seen", "indexed", "_sdps")

    def __init__(self, first: SdpSeen):
        self.seen = [first]
        self.indexed = 0
        self._sdps = None

    def sdp(self, seen: SdpSeen | None) -> Sdp | None:
        """The body of `seen` (one of `seen`, or None) parsed, once: the binder reads each
        message's endpoints and then the codec of the offer and answer in force."""
        if seen is None:
            return None
        if self._sdps is None:
            self._sdps = {}
        parsed: dict = self._sdps
        key = id(seen)
        found = parsed.get(key, self)
        if found is self:
            found = parsed[key] = _parsed(seen)
        return found

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


class _Recent:
    """A bounded memory: two generations of a dict, the older dropped when the newer fills."""

    new: dict
    old: dict
    __slots__ = ("new", "old")

    def __init__(self):
        self.new = {}
        self.old = {}

    def get(self, key):
        found = self.new.get(key)
        return self.old.get(key) if found is None else found

    def put(self, key, value) -> None:
        if len(self.new) >= MAX_REMEMBERED:
            self.old, self.new = self.new, {}
        self.new[key] = value


class ReportBuilder:
    """The per-datagram half of the media layer: binds each datagram with report blocks
    (binding.py), keeps the per-pair and per-call state and makes the records. An extension
    type once compiled (its state C fields, its calls C calls): MediaLayer, a Subscriber, is
    a Python class."""

    c: object  # the Counters
    sink: object
    formula: str  # rtpengine's MOS formula
    binder: Binder
    pairs: _Recent  # (reporter SSRC, source SSRC) -> metrics.PairState
    srs: _Recent  # (SR sender SSRC, NTP middle 32 bits) -> capture time
    quality: dict  # id(call) -> its CallQuality
    next_sweep: cython.double
    __slots__ = ("c", "sink", "formula", "binder", "pairs", "srs", "quality", "next_sweep")

    def __init__(self, counters, sink, formula: str, binder: Binder):
        self.c = counters
        self.sink = sink
        self.formula = formula
        self.binder = binder
        self.pairs = _Recent()
        self.srs = _Recent()
        self.quality = {}
        self.next_sweep = 0.0

    def records(self, d, compound) -> list:
        """The records of a Datagram's report blocks (its compound parsed, with reports)."""
        dt: tuple = cython.cast(tuple, d)  # Datagram by index (probe/records.py's order)
        ts: cython.double = dt[0]
        if ts >= self.next_sweep:
            self.sweep(ts)
        # RtcpCompound and Report by index too (rtcp.py's order): reports, ..., xrs;
        # packet_type, reporter_ssrc, sender, blocks
        cp: tuple = cython.cast(tuple, compound)
        reports: tuple = cp[0]
        for report in reports:
            sender = cython.cast(tuple, report)[2]  # SenderInfo: ntp_msw, ntp_lsw, ...
            if sender is not None:
                self.srs.put((cython.cast(tuple, report)[1],
                              ntp_middle(cython.cast(tuple, sender)[0],
                                         cython.cast(tuple, sender)[1])), ts)
        src, dst, sport, dport = dt[2], dt[3], dt[4], dt[5]
        binding: Binding | None = self.binder.bind(src, sport, dst, dport,
                                                   cython.cast(tuple, reports[0])[1], ts)
        cq: CallQuality | None = None
        if binding is None:
            callid = from_tag = side = how = ""
            codec = UNKNOWN_CODEC
        else:
            call = binding.call
            callid, from_tag, side, how = call.callid, call.caller_tag, binding.side, binding.how
            codec = binding.codec
            cq = self.quality.get(id(call))
            if cq is None and any([cython.cast(tuple, r)[3] for r in reports]):
                cq = self.quality[id(call)] = CallQuality()
        xrs = cp[4]
        xr = {(x.reporter_ssrc, vm.source_ssrc): vm for x in xrs
              for vm in x.voip_metrics} if xrs else None
        head = (dt[0], callid, from_tag, side, how, src, sport, dst, dport, dt[1])
        out = []
        for report in reports:
            rep: tuple = cython.cast(tuple, report)  # Report: packet_type, reporter_ssrc, ..
            for block in rep[3]:
                vm = xr.get((rep[1], cython.cast(tuple, block)[0])) if xr else None
                out.append(self._block(head, report, block, codec, cq, side, vm))
        return out

    def _block(self, head: tuple, report, block, codec, cq: CallQuality | None, side: str,
               vm):
        c = self.c
        ts: cython.double = head[0]
        if cq is None:
            c["media.unbound_report"] += 1
        rep: tuple = cython.cast(tuple, report)  # Report and ReportBlock by index (rtcp.py)
        b: tuple = cython.cast(tuple, block)
        reporter, source = rep[1], b[0]
        if not source and not b[3]:  # no SSRC, no highest sequence number
            c["media.empty_report_block"] += 1  # "nothing received yet" (first RRs)
            return RtcpReportRecord(*head, rep[0], reporter, *b, *(None,) * 4, None, 0,
                                    *(None,) * 7)
        key = (reporter, source)
        state: PairState = self.pairs.get(key)
        if state is None:
            state = PairState()
            self.pairs.put(key, state)
        loss, copy = state.loss(block, ts)
        rtt_s = None
        lsr = b[5]
        if lsr:
            rtt_s = rtt_seconds(ts, self.srs.get((source, lsr)), b[6])
            if rtt_s is None:
                c["media.rtt_unmatched"] += 1
            else:
                state.rtt_s = rtt_s
        other = 0
        if cq is not None:
            other = cq.last_rtt_us["B" if side == "A" else "A"]
        m = block_metrics(block, loss, rtt_s, state.rtt_s, other, codec, vm, self.formula)
        xr_r = xr_lq = xr_cq = None
        if vm is not None:
            xr_r = None if vm.r_factor == XR_UNAVAILABLE else float(vm.r_factor)
            xr_lq, xr_cq = vm.mos_lq_score, vm.mos_cq_score
        if cq is not None and not copy:
            if rtt_s is not None:
                cq.last_rtt_us[side] = int(rtt_s * 1e6)
            sq: SideQuality = cq.sides[side]
            sq.add(ts, source, m, xr_cq, self.formula)
        mt: tuple = m  # BlockMetrics' order: its first ten are columns
        # one tuple of the 32 fields (RtcpReportRecord's order), items read as C indexes
        return _new(RtcpReportRecord, (
            head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7], head[8],
            head[9], rep[0], reporter, b[0], b[1], b[2], b[3], b[4], b[5], b[6], mt[0], mt[1],
            mt[2], mt[3], mt[4], mt[5], mt[6], mt[7], mt[8], mt[9], xr_r, xr_lq, xr_cq))

    def sweep(self, now) -> None:
        """Write call_quality rows of the calls whose grace period has passed at packet time
        `now` (all: None)."""
        if now is not None:
            self.next_sweep = now + SWEEP_EVERY
        for call in self.binder.expired(now):
            cq = self.quality.pop(id(call), None)
            if cq is not None:
                for rec in cq.records(call.callid, call.caller_tag, call.created):
                    self.sink(rec)


class MediaLayer(Subscriber):
    """Keeps each call's media description; turns the RTCP datagrams into report and quality
    records for `sink` (none: counts only)."""

    def __init__(self, counters: Counters, sink=None, rtpengine_formula: str = G107):
        if rtpengine_formula not in FORMULAS:
            raise ValueError(f"rtpengine formula must be one of {', '.join(FORMULAS)}")
        self.c = counters
        self.sink = sink
        self.formula = rtpengine_formula
        self.binder = Binder(counters) if sink is not None else None
        self.reports = ReportBuilder(counters, sink, rtpengine_formula, self.binder) \
            if sink is not None else None
        # calls whose first SDP came since the last RTCP datagram (the binder indexes them);
        # None until the first RTCP datagram, so that SIP without RTCP keeps no call alive
        self.queued: list | None = None
        self.live_calls: dict | None = None  # the dialog layer's calls (pipeline.account)

    def sdp_seen(self, call: Call, seen: SdpSeen) -> None:
        # on the SIP path: with RTCP seen, a list append per call; nothing more
        media: CallMedia = call.media
        if media is None:
            call.media = CallMedia(seen)
            queued = self.queued
            if queued is not None:
                if len(queued) >= MAX_QUEUED:
                    self.binder.trim_queue()
                queued.append(call)
        else:
            media.seen.append(seen)
            binder = self.binder
            if binder is not None and id(call) in binder.indexed:
                binder.changed[id(call)] = call  # indexed: its new SDP at the next check

    def rtcp(self, d: Datagram) -> None:
        """An RTCP datagram (RFC 3550 section 6): its compound parsed (rtcp.parse_compound),
        what it noted counted (rtcp.srtcp, rtcp.reduced_size and the anomalies), and with a
        sink its report blocks bound and measured."""
        c = self.c
        c["rtcp.datagrams"] += 1
        compound = parse_compound(cython.cast(tuple, d)[7])  # Datagram.payload
        for name in cython.cast(tuple, compound)[5]:  # RtcpCompound.anomalies
            c[name] += 1
        if self.binder is None:
            return
        if self.queued is None:  # the first RTCP datagram: the calls going on get indexed
            self.queued = self.binder.queued
            if self.live_calls is not None:
                self.queued += [call for call in self.live_calls.values()
                                if call.media is not None]
        if not compound.reports:
            return
        try:
            records = self.reports.records(d, compound)
        except Exception:
            if STRICT:
                raise
            c["internal.media_error"] += 1
            return
        sink = self.sink  # outside the guard: the store's errors are the caller's
        for rec in records:
            sink(rec)

    def close(self) -> None:
        """End of input: every call's quality rows, whatever its grace period."""
        if self.reports is not None:
            self.reports.sweep(None)
