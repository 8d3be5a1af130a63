# cython: cpow=True
# (a ** b of C doubles is C pow(), as Python's float ** is; bases here are never negative)
"""Per report block figures: interval loss, jitter in ms, round-trip time, one-way delay, burst
ratio, and the two MOS (G.107 and rtpengine's). Pure functions and small state, no I/O.

- Interval loss (RFC 3550 section 6.4.4): from two consecutive reports of one reporter about
  one source, lost = difference of the cumulative number lost (signed 24 bits, modulo 2^24),
  expected = difference of the extended highest sequence number (modulo 2^32). The 8-bit
  fraction is used only for the first report of a pair and after a reset (sequence going
  backwards or jumping by more than MAX_INTERVAL_PACKETS: the source or receiver restarted).
- Jitter (section 6.4.1): interarrival jitter / clock rate, in ms.
- Round trip (section 6.4.1): A - LSR - DLSR, where A is when the report arrived in the SR
  sender's clock. A probe knows the SR's capture time, so A - LSR is the time between the SR
  and the report as captured: rtt = t(report) - t(SR whose NTP middle 32 bits are LSR) - DLSR.
  No endpoint clock is needed (the phones of the voipshark capture run 19 795 s off the
  capture clock). What it measures is the round trip between the probe and the reporter.
- One-way delay (G.107's Ta): rtt / 2 + a jitter buffer of 2 x jitter + the codec's packet
  and look-ahead (emodel.coding_delay_ms).
"""
from __future__ import annotations

from typing import NamedTuple

import cython

from .emodel import codec_impairment, coding_delay_ms, r_factor, r_to_mos
from .rtpengine_mos import G107, block_figures

NTP_UNIT: cython.double = 65536.0  # LSR and DLSR count 1/65536 s
MAX_RTT_S: cython.double = 10.0  # a longer "round trip" is a mismatched SR, not a network
RTT_SLACK_S: cython.double = 0.005  # capture timing: a round trip down to -5 ms counts as 0
# more expected in one interval is a restart, not traffic
MAX_INTERVAL_PACKETS: cython.longlong = 1 << 20
DEFAULT_CLOCK_RATE = 8000  # G.711's, with the G.711 fallback codec, for unbound reports
DEFAULT_PTIME_MS = 20.0
# a block equal to the last one of its pair within this time is the same report relayed on
# another leg (a relay forwards at once; endpoints report every few seconds, rtpengine keeps
# no two reports of an SSRC less than 1 s apart)
COPY_WINDOW_S: cython.double = 0.5
# a NamedTuple built as tuple.__new__(Class, values): the same object, without the class's
# Python-level __new__ (a frame per record, on the per-report path)
_new = tuple.__new__


@cython.ccall
def interval_loss(prev_seq: cython.longlong, prev_lost: cython.longlong, seq: cython.longlong,
                  lost: cython.longlong):
    """Percent lost between two reports (RFC 3550 section 6.4.4, A.3), wrap-safe; None when
    nothing was expected (no new packets) or on a reset (the caller falls back to the
    fraction)."""
    expected: cython.longlong = (seq - prev_seq) & 0xFFFFFFFF
    if expected == 0 or expected > MAX_INTERVAL_PACKETS:
        return None
    lost_delta: cython.longlong = (lost - prev_lost) & 0xFFFFFF
    if lost_delta >= 0x800000:
        lost_delta -= 0x1000000
    if lost_delta < -expected:  # the receiver restarted its count
        return None
    return min(max(lost_delta, 0) * 100.0 / expected, 100.0)


@cython.ccall
def fraction_pct(fraction_lost: cython.longlong) -> cython.double:
    """The 8-bit fraction lost as percent."""
    return fraction_lost * 100.0 / 256.0


@cython.ccall  # a C call from media.py once compiled (native/pxdgen.py)
def rtt_seconds(report_ts: cython.double, sr_ts, dlsr: cython.longlong):
    """Round trip from the report's and the SR's capture times; None when the SR was not
    seen or the result is not a round trip (negative beyond RTT_SLACK_S, or above MAX_RTT_S)."""
    if sr_ts is None:
        return None
    rtt: cython.double = report_ts - sr_ts - dlsr / NTP_UNIT
    if rtt < -RTT_SLACK_S or rtt > MAX_RTT_S:
        return None
    return rtt if rtt > 0.0 else 0.0


def burst_ratio(vm, ptime_ms: float | None) -> float:
    """G.107 BurstR from an XR VoIP Metrics block (RFC 3611 section 4.7.2): a two-state
    model whose loss state lasts burst_duration and loss-free state gap_duration on average,
    in packets of ptime; BurstR = 1 / (p + q) with p = ptime / gap, q = ptime / burst
    (G.107 Annex A's definition through the transition probabilities). 1 when unknown."""
    if vm is None or not vm.burst_duration or not vm.gap_duration:
        return 1.0
    ptime = ptime_ms or DEFAULT_PTIME_MS
    p, q = ptime / vm.gap_duration, ptime / vm.burst_duration
    return max(1.0 / (p + q), 1.0) if p + q > 0 else 1.0


class Codec(NamedTuple):
    """What a stream carries, from its SDP: encoding name, clock rate, ptime (ms or None)."""

    encoding: str | None
    clock_rate: int
    ptime: float | None


UNKNOWN_CODEC = Codec(None, DEFAULT_CLOCK_RATE, None)


class BlockMetrics(NamedTuple):
    loss_pct: float | None
    jitter_ms: float
    rtt_ms: float | None
    delay_ms: float
    codec: str | None
    codec_fallback: int  # 1: G.113 gives no Ie/Bpl for the codec (or it is unknown)
    burst_ratio: float
    r_factor: float | None
    mos: float | None
    mos_rtpengine: float | None
    rtpengine_rtt_us: int  # the end-to-end RTT rtpengine would use (0: none)
    rtpengine_jitter_ms: int
    rtpengine_loss: int
    rtpengine_e1: int  # rtpengine's MOS x 10 as it stores it (0: none)


_CODEC_FIGURES: dict = {}  # Codec -> _codec_figures(codec): a few per capture
MAX_CODECS = 1000  # distinct codecs remembered (SDP is the sender's to invent)


def _codec_figures(codec: Codec) -> tuple:
    """(coding delay ms, Ie, Bpl, fallback 0/1) of a codec, worked out once (a report block
    would otherwise upper-case and look up its encoding name twice)."""
    impairment = codec_impairment(codec.encoding)
    figures = (coding_delay_ms(codec.encoding, codec.ptime), impairment.ie, impairment.bpl,
               int(impairment.fallback or codec.encoding is None))
    if len(_CODEC_FIGURES) >= MAX_CODECS:
        _CODEC_FIGURES.clear()
    _CODEC_FIGURES[codec] = figures
    return figures


@cython.ccall
def block_metrics(block, loss_pct, rtt_s, last_rtt_s: cython.double,
                  other_rtt_us: cython.longlong, codec, vm, formula: str = G107):
    """The figures of one block, a tuple in BlockMetrics' order. `loss_pct`: interval loss
    (None: none expected); `rtt_s`: this block's round trip or None; `last_rtt_s`: the latest
    round trip known for the pair, used for the delay when the block has none;
    `other_rtt_us`: the other side's latest round trip, which rtpengine adds to this leg's;
    `codec`: a Codec; `vm`: the reporter's XR VoIP Metrics about the same source, or None;
    `formula`: rtpengine's MOS formula (rtpengine_mos.FORMULAS: g107 since rtpengine 2024-10,
    legacy before, as in Debian 12's rtpengine 10.5)."""
    # ReportBlock and Codec read by index: a C tuple item once compiled, where each
    # block.name is a call of the NamedTuple's descriptor
    b: tuple = cython.cast(tuple, block)
    cd: tuple = cython.cast(tuple, codec)
    clock: cython.longlong = cd[1] or DEFAULT_CLOCK_RATE
    jitter_ts: cython.longlong = b[4]
    jitter_ms: cython.double = jitter_ts * 1000.0 / clock
    rtt: cython.double = rtt_s if rtt_s is not None else last_rtt_s
    figures = _CODEC_FIGURES.get(codec)
    if figures is None:
        figures = _codec_figures(codec)
    coding_ms, ie, bpl, fallback = figures
    delay: cython.double = rtt * 500.0 + 2.0 * jitter_ms + coding_ms
    burst: cython.double = 1.0 if vm is None else burst_ratio(vm, cd[2])
    r = mos = None
    r_d: cython.double
    if loss_pct is not None:
        r_d = r_factor(delay, loss_pct, burst, ie, bpl)
        r, mos = r_d, r_to_mos(r_d)
    # rtpengine (ssrc.c): this leg's RTT plus the other leg's last; whole ms of jitter; the
    # fraction as percent; CQ mode: no MOS without an RTT
    rtt_us: cython.longlong = 0
    rtt_d: cython.double
    rtt_ms = None
    if rtt_s is not None:
        rtt_d = rtt_s
        rtt_ms = rtt_d * 1000.0
        rtt_us = cython.cast(cython.longlong, rtt_d * 1e6) + other_rtt_us  # int(): truncates
    r_jitter, r_loss, e1 = block_figures(jitter_ts, clock, b[1], rtt_us, formula)
    # a plain tuple in BlockMetrics' order: its two readers index it (media.py, quality.py)
    return (loss_pct, jitter_ms, rtt_ms, delay, cd[0], fallback, burst, r, mos,
            e1 / 10 if e1 else None, rtt_us, r_jitter, r_loss, e1)


class PairState:
    """What the previous report of one reporter about one source said (interval loss)."""

    seq: cython.longlong  # extended highest sequence number; -1: no report yet
    lost: cython.longlong  # cumulative number lost
    content: object  # the block without its source SSRC (tuple), None: no report yet
    ts: cython.double
    loss_pct: object  # float | None
    rtt_s: cython.double  # the latest round trip of the pair (0: none yet)
    __slots__ = ("seq", "lost", "content", "ts", "loss_pct", "rtt_s")

    def __init__(self):
        self.seq = -1
        self.lost = 0
        self.content = None
        self.ts = 0.0
        self.loss_pct = None
        self.rtt_s = 0.0

    def loss(self, block, ts: cython.double = 0.0) -> tuple:
        """(interval loss, copy): a block equal to the last one within COPY_WINDOW_S is the
        same report seen again (relayed on a second leg) and gets the same figure."""
        b: tuple = cython.cast(tuple, block)  # ReportBlock by index, as in block_metrics
        content = b[1:]
        if content == self.content and ts - self.ts < COPY_WINDOW_S:
            return self.loss_pct, True
        highest_seq: cython.longlong = b[3]
        pct: object = None  # float | None
        if self.seq >= 0:
            pct = interval_loss(self.seq, self.lost, highest_seq, b[2])
            if pct is None and highest_seq != self.seq:
                pct = fraction_pct(b[1])  # a reset
        else:
            pct = fraction_pct(b[1])  # the first report of the pair
        self.seq, self.lost, self.content, self.ts, self.loss_pct = \
            highest_seq, b[2], content, ts, pct
        return pct, False
