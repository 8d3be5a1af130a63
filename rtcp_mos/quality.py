"""A call's voice quality per side: the call_quality row, aggregated from its report blocks.

Each report counts once although a relay puts it on two legs (the copies are equal block for
block and come within metrics.COPY_WINDOW_S: metrics.PairState tells). G.107 figures are plain minimum / average / maximum;
rtpengine's are aggregated as rtpengine does (rtpengine_mos.RtpengineSsrcStats per reported
SSRC) and combined over the side's SSRCs as Kamailio's rtpengine module does with
mos_A_label / mos_B_label (rtpengine_mos.kamailio_mos_pvs).
"""
from __future__ import annotations

from .records import CallQualityRecord
from .rtpengine_mos import G107, RtpengineSsrcStats, kamailio_mos_pvs

SIDES = ("A", "B")


class SideQuality:
    """Sums and extremes of one side's reports."""

    __slots__ = ("reports", "codec", "mos_n", "sums", "counts", "worst", "best", "xr_cq_min",
                 "rtpengine")

    def __init__(self):
        self.reports = 0
        self.codec: str | None = None
        self.mos_n = 0
        self.sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # mos, loss, jitter, rtt, delay
        self.counts = [0, 0, 0, 0, 0]
        self.worst: tuple | None = None  # (mos, ts, loss, jitter, rtt, delay)
        self.best: float | None = None
        self.xr_cq_min: float | None = None
        self.rtpengine: dict[int, RtpengineSsrcStats] = {}

    def add(self, ts: float, source_ssrc: int, m, xr_cq: float | None,
            formula: str = G107) -> None:
        """One report block's metrics (metrics.BlockMetrics); `formula` rtpengine's."""
        # the fields in one unpacking (BlockMetrics' order): a C tuple walk once compiled,
        # where each m.name is an attribute lookup through the class
        (loss_pct, jitter_ms, rtt_ms, delay_ms, codec, _, _, _, mos, _, rtpengine_rtt_us,
         rtpengine_jitter_ms, rtpengine_loss, rtpengine_e1) = m
        self.reports += 1
        if codec is not None:
            self.codec = codec
        for i, value in enumerate((mos, loss_pct, jitter_ms, rtt_ms, delay_ms)):
            if value is not None:
                self.sums[i] += value
                self.counts[i] += 1
        if mos is not None:
            if self.worst is None or mos < self.worst[0]:
                self.worst = (mos, ts, loss_pct, jitter_ms, rtt_ms, delay_ms)
            if self.best is None or mos > self.best:
                self.best = mos
        if xr_cq is not None and (self.xr_cq_min is None or xr_cq < self.xr_cq_min):
            self.xr_cq_min = xr_cq
        stats = self.rtpengine.get(source_ssrc)
        if stats is None:
            stats = self.rtpengine[source_ssrc] = RtpengineSsrcStats()
        rtt_leg = 0 if rtt_ms is None else int(rtt_ms * 1000)
        stats.add(int(ts * 1e6), rtpengine_rtt_us, rtt_leg, rtpengine_jitter_ms,
                  rtpengine_loss, formula, mos=rtpengine_e1)

    def averages(self) -> list[float | None]:
        return [s / n if n else None for s, n in zip(self.sums, self.counts)]

    def rtpengine_mos(self) -> tuple[float | None, float | None, float | None]:
        """(min, average, max) as Kamailio's mos_*_pv for this side; None where unset."""
        pvs = kamailio_mos_pvs([s.ng_stats() for s in self.rtpengine.values()])
        return tuple(float(pvs[k]) if k in pvs else None
                     for k in ("mos_min_pv", "mos_average_pv", "mos_max_pv"))


class CallQuality:
    """Both sides of one call."""

    __slots__ = ("sides", "last_rtt_us")

    def __init__(self):
        self.sides = {"A": SideQuality(), "B": SideQuality()}
        self.last_rtt_us = {"A": 0, "B": 0}  # rtpengine adds the other leg's last round trip

    def records(self, callid: str, from_tag: str, start: float) -> list:
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
