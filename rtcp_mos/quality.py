"""A call's voice quality per side: the call_quality row, aggregated from its report blocks.

Each report counts once although a relay puts it on two legs (the copies are equal block for
block and come within metrics.COPY_WINDOW_S: metrics.PairState tells). G.107 figures are plain minimum / average / maximum;
rtpengine's are aggregated as rtpengine does (rtpengine_mos.RtpengineSsrcStats per reported
SSRC) and combined over the side's SSRCs as Kamailio's rtpengine module does with
mos_A_label / mos_B_label (rtpengine_mos.kamailio_mos_pvs).
"""
from __future__ import annotations

import cython

from .records import CallQualityRecord
from .rtpengine_mos import G107, RtpengineSsrcStats, kamailio_mos_pvs

SIDES = ("A", "B")


class SideQuality:
    """Sums and extremes of one side's reports."""

    reports: cython.Py_ssize_t
    codec: object  # str | None
    # sums and counts of the figures a report has: C doubles and integers once compiled
    mos_sum: cython.double
    loss_sum: cython.double
    jitter_sum: cython.double
    rtt_sum: cython.double
    delay_sum: cython.double
    mos_n: cython.Py_ssize_t
    loss_n: cython.Py_ssize_t
    jitter_n: cython.Py_ssize_t
    rtt_n: cython.Py_ssize_t
    delay_n: cython.Py_ssize_t
    worst: object  # (mos, ts, loss, jitter, rtt, delay) | None
    best: object  # float | None
    xr_cq_min: object  # float | None
    rtpengine: dict  # reported SSRC -> RtpengineSsrcStats
    __slots__ = ("reports", "codec", "mos_sum", "loss_sum", "jitter_sum", "rtt_sum",
                 "delay_sum", "mos_n", "loss_n", "jitter_n", "rtt_n", "delay_n", "worst", "best",
                 "xr_cq_min", "rtpengine")

    def __init__(self):
        self.reports = 0
        self.codec = None
        self.mos_sum = self.loss_sum = self.jitter_sum = self.rtt_sum = self.delay_sum = 0.0
        self.mos_n = self.loss_n = self.jitter_n = self.rtt_n = self.delay_n = 0
        self.worst = None
        self.best = None
        self.xr_cq_min = None
        self.rtpengine = {}

    def add(self, ts: cython.double, source_ssrc, m, xr_cq, formula: str = G107) -> None:
        """One report block's metrics (metrics.BlockMetrics); `formula` rtpengine's."""
        # the fields by index (BlockMetrics' order): C tuple items once compiled, where each
        # m.name is a call of the NamedTuple's descriptor
        mt: tuple = cython.cast(tuple, m)
        loss_pct, jitter_ms, rtt_ms, delay_ms, codec = mt[0], mt[1], mt[2], mt[3], mt[4]
        mos = mt[8]
        self.reports += 1
        if codec is not None:
            self.codec = codec
        if mos is not None:
            self.mos_sum += mos
            self.mos_n += 1
        if loss_pct is not None:
            self.loss_sum += loss_pct
            self.loss_n += 1
        if jitter_ms is not None:
            self.jitter_sum += jitter_ms
            self.jitter_n += 1
        if rtt_ms is not None:
            self.rtt_sum += rtt_ms
            self.rtt_n += 1
        if delay_ms is not None:
            self.delay_sum += delay_ms
            self.delay_n += 1
        if mos is not None:
            if self.worst is None or mos < cython.cast(tuple, self.worst)[0]:
                self.worst = (mos, ts, loss_pct, jitter_ms, rtt_ms, delay_ms)
            if self.best is None or mos > self.best:
                self.best = mos
        if xr_cq is not None and (self.xr_cq_min is None or xr_cq < self.xr_cq_min):
            self.xr_cq_min = xr_cq
        stats: RtpengineSsrcStats = self.rtpengine.get(source_ssrc)
        if stats is None:
            stats = self.rtpengine[source_ssrc] = RtpengineSsrcStats()
        rtt_leg = 0 if rtt_ms is None else int(rtt_ms * 1000)
        stats.add(int(ts * 1e6), mt[10], rtt_leg, mt[11], mt[12], formula, "CQ", mt[13])

    def averages(self) -> list:
        """Average mos, loss, jitter, rtt and delay; None where no report had it."""
        return [self.mos_sum / self.mos_n if self.mos_n else None,
                self.loss_sum / self.loss_n if self.loss_n else None,
                self.jitter_sum / self.jitter_n if self.jitter_n else None,
                self.rtt_sum / self.rtt_n if self.rtt_n else None,
                self.delay_sum / self.delay_n if self.delay_n else None]

    def rtpengine_mos(self) -> tuple:
        """(min, average, max) as Kamailio's mos_*_pv for this side (kamailio_mos_pvs over the
        ng_stats of the side's SSRCs, the "4.3" texts as floats); None where unset. Worked out
        from the per-SSRC figures directly: the same numbers without building the pv dicts and
        texts (tests/test_quality.py compares the two)."""
        low = high = None
        total = n = 0
        for value in self.rtpengine.values():
            stats: RtpengineSsrcStats = value
            if not stats.blocks or stats.lowest is None or stats.highest is None:
                continue  # ng_stats() is None: rtpengine reports nothing for this SSRC
            lowest = cython.cast(tuple, stats.lowest)[1]  # StatsBlock.mos
            highest = cython.cast(tuple, stats.highest)[1]
            if low is None or lowest < low:
                low = lowest
            if high is None or highest > high:
                high = highest
            total += stats._sums[0] // max(len(stats.blocks) - stats.no_mos_count, 1)
            n += 1
        if not n:
            return None, None, None
        return low / 10, total // n / 10, high / 10

    def rtpengine_mos_pvs(self) -> dict:
        """Kamailio's mos_*_pv values for this side (rtpengine_mos.kamailio_mos_pvs)."""
        return kamailio_mos_pvs([s.ng_stats() for s in self.rtpengine.values()])


class CallQuality:
    """Both sides of one call."""

    sides: dict  # "A", "B" -> SideQuality
    last_rtt_us: dict  # rtpengine adds the other leg's last round trip
    __slots__ = ("sides", "last_rtt_us")

    def __init__(self):
        self.sides = {"A": SideQuality(), "B": SideQuality()}
        self.last_rtt_us = {"A": 0, "B": 0}

    def records(self, callid: str, from_tag: str, start) -> list:
        """The call_quality records of both sides; `start`: the call's creation time."""
        out = []
        for side in SIDES:
            q = self.sides[side]
            mos_avg, loss, jitter, rtt, delay = q.averages()
            worst = q.worst or (None,) * 6
            r_min, r_avg, r_max = q.rtpengine_mos() if q.reports else (None, None, None)
            out.append(CallQualityRecord(
                callid, from_tag, side, start, q.reports, q.codec,
                worst[0], worst[1], mos_avg, q.best, loss, jitter, rtt, delay,
                worst[2], worst[3], worst[4], worst[5], r_min, r_avg, r_max, q.xr_cq_min))
        return out
