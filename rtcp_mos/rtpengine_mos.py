# cython: cpow=True
# (a ** b of C doubles is C pow(), as Python's float ** is; bases here are never negative)
"""rtpengine's MOS, reproduced: the value Sipwise rtpengine computes per RTCP report block and the
per-SSRC minimum / average / maximum it returns to Kamailio's rtpengine module.

Read from rtpengine's daemon/ssrc.c (mos_from_rx, mos_calc_nb, mos_calc_fb, mos_calc_legacy,
ssrc_receiver_report), daemon/call_interfaces.c (ng_stats_ssrc_1) and daemon/main.c (--mos), at
commit e8b82121fa0b (2026-08-17); Kamailio's src/modules/rtpengine/rtpengine.c
(parse_call_stats_1) for the pvs. Fixed-point arithmetic and C's truncating division are kept,
so the tenths agree with rtpengine's own test suite (t/auto-daemon-tests-mos-fullband.pl).
docs/quality.md compares it with G.107.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import cython

G107 = "g107"        # mos_calc_nb: rtpengine's default ("G.107 simplified")
G107_2 = "g107.2"    # mos_calc_fb: --mos=G.107.2, 48 kHz codecs only
LEGACY = "legacy"    # mos_calc_legacy: before 2024-10, and builds without transcoding
FORMULAS = (G107, G107_2, LEGACY)


# The integer formulas' inputs are clamped to this (2^40): every product then fits the 64 bits
# of rtpengine's int64_t (and of the C long long they run in once compiled). Nothing changes:
# a round trip, jitter or loss that large gives the lowest MOS (10) in mos_calc_nb and
# mos_calc_legacy either way. mos_calc_fb (doubles, whose delay term levels off) is not clamped.
INPUT_LIMIT: cython.longlong = 1 << 40


@cython.cfunc
@cython.inline
def _cdiv(a: cython.longlong, b: cython.longlong) -> cython.longlong:
    """C99 integer division by a positive `b`: truncates toward zero."""
    return a // b if a >= 0 else -(-a // b)


def mos_from_rx(rx_e5) -> int:
    """ssrc.c mos_from_rx: G.107 Annex B on R in units of 1e-5, returned as MOS x 10 (10-45)."""
    if rx_e5 < 0:
        return 10
    if rx_e5 > 10000000:
        return 45
    return _mos_from_rx(rx_e5)


@cython.cfunc
def _mos_from_rx(rx_e5: cython.longlong) -> cython.longlong:
    if rx_e5 < 0:
        return 10
    if rx_e5 > 10000000:
        return 45
    rx: cython.longlong = _cdiv(rx_e5, 100)               # e3
    mos: cython.longlong = 100 + _cdiv(35 * rx, 10000)    # e2
    cubic: cython.longlong = _cdiv((rx - 60000) * (100000 - rx), 1000)  # e3
    cubic = _cdiv(rx * cubic, 1000)                       # e3
    mos += _cdiv(cubic * 7, 10000000)                     # e2
    return max(_cdiv(mos, 10), 10)


@cython.cfunc
def _nb(rtt_us: cython.longlong, jitter_ms: cython.longlong,
        packetloss: cython.longlong) -> cython.longlong:
    """mos_calc_nb. Delay d = RTT/2 + jitter enters as Cole-Rosenbluth's 0.024 d + 0.11 (d -
    177.3); loss enters through a quadratic in r = 93.2 - loss:
    Rx = 0.18 r^2 - 27.9 r + 1126.62 - Id, whose minimum is at r = 77.5 (loss 15.7 %), so MOS
    rises again with more loss and reaches 4.5 from 34 % on (and r = 0 above 93 %)."""
    d: cython.longlong = rtt_us // 2 + jitter_ms * 1000   # microseconds = ms e3
    id_: cython.longlong = (24 * d) // 1000
    if d > 177300:
        id_ += ((d - 177300) * 11) // 100
    r: cython.longlong = 9320 - packetloss * 100 if packetloss <= 93 else 0    # e2
    rx: cython.longlong = (18 * r * r) // 10 - 279 * r * 100 + 112662000 - id_ * 100
    return _mos_from_rx(rx)


def _fb(rtt_us: int, jitter_ms: int, packetloss: int) -> int:
    """mos_calc_fb: G.107.2 (fullband, Ro 148, Opus-like Ie 10.2 and Bpl 4.3), in doubles."""
    ta = rtt_us / 1000.0 / 2.0 + jitter_ms
    ppl = float(packetloss)
    iee = 10.2 + (132.0 - 10.2) * (ppl / (ppl + 4.3))
    if ta <= 100:
        id_ = 0.0
    else:
        x = math.log2(ta) - math.log2(100)
        id_ = 1.48 * 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    rx = 148.0 - 0.0 - id_ - iee + 0.0
    return mos_from_rx(int(rx / 1.48 * 100000))           # C's double -> int64 truncates


@cython.cfunc
def _legacy(rtt_us: cython.longlong, jitter_ms: cython.longlong,
            packetloss: cython.longlong) -> cython.longlong:
    """mos_calc_legacy (PingPlotter's formula): eff = RTT/1000 + 2 jitter + 10 ms,
    R = 93.2 - eff/40 (eff < 160) or 93.2 - (eff - 120)/10, minus 2.5 per percent of loss."""
    eff: cython.longlong = rtt_us // 1000 + jitter_ms * 2 + 10
    r: cython.longlong
    if eff < 160:
        r = 93200000 - (eff * 100000) // 4                  # e6
    else:
        r = 93200000 - (eff * 100000 - 12000000)
    r -= packetloss * 2500000
    return _mos_from_rx(_cdiv(r, 10))


@cython.cfunc
def _integer_formula(formula: str, rtt_us: cython.longlong, jitter_ms: cython.longlong,
                     packetloss: cython.longlong) -> cython.longlong:
    """mos_calc_nb or mos_calc_legacy on whole, non-negative inputs, clamped to INPUT_LIMIT."""
    rtt_us = min(rtt_us, INPUT_LIMIT)
    jitter_ms = min(jitter_ms, INPUT_LIMIT)
    packetloss = min(packetloss, INPUT_LIMIT)
    if formula == LEGACY:
        return _legacy(rtt_us, jitter_ms, packetloss)
    return _nb(rtt_us, jitter_ms, packetloss)


def rtpengine_mos_e1(rtt_us: int, jitter_ms: int, packetloss_pct: int, formula: str = G107,
                     mode: str = "CQ") -> int:
    """The MOS x 10 rtpengine stores for one report block (0: no MOS).

    `rtt_us`: end-to-end round trip, microseconds (this leg's RTT from LSR/DLSR plus the other
    leg's last one, or RTCP XR's in ms x 1000; 0 when the other leg has none). `jitter_ms` and
    `packetloss_pct` as `rtpengine_jitter_ms` and `rtpengine_packetloss` derive them. `mode` CQ
    (default) gives no MOS without an RTT; LQ ignores the RTT, except in the legacy formula, whose
    LQ branch zeroes a variable it then does not use (ssrc.c).
    """
    if formula not in FORMULAS:
        raise ValueError(f"formula must be one of {', '.join(FORMULAS)}")
    rtt, jitter, loss = max(int(rtt_us), 0), max(int(jitter_ms), 0), max(int(packetloss_pct), 0)
    mode = mode.upper()
    if mode == "CQ" and not rtt:
        return 0
    if mode == "LQ" and formula != LEGACY:
        rtt = 0
    if formula == G107_2:
        return _fb(rtt, jitter, loss)
    return _integer_formula(formula, min(rtt, INPUT_LIMIT), min(jitter, INPUT_LIMIT),
                            min(loss, INPUT_LIMIT))


@cython.ccall  # a C call from metrics.py once compiled (native/pxdgen.py)
def block_figures(jitter_ts: cython.longlong, clock_rate: cython.longlong,
                  fraction_lost: cython.longlong, rtt_us: cython.longlong,
                  formula: str = G107) -> tuple:
    """(jitter ms, packet loss %, MOS x 10) of one report block as rtpengine derives them
    (rtpengine_jitter_ms, rtpengine_packetloss, rtpengine_mos_e1 in CQ mode) from its raw
    jitter and 8-bit fraction lost, the stream's clock rate and the end-to-end round trip in
    microseconds (0: none, then no MOS): one call per block, in C integers once compiled."""
    jitter = jitter_ts & 0xFFFFFFFF
    jitter_ms: cython.longlong = ((jitter * 1000) & 0xFFFFFFFF) // clock_rate \
        if clock_rate else jitter
    loss: cython.longlong = (fraction_lost & 0xFF) * 100 // 256
    e1: cython.longlong = 0
    if rtt_us > 0:
        if formula == G107 or formula == LEGACY:
            e1 = _integer_formula(formula, rtt_us, jitter_ms, loss)
        else:
            e1 = rtpengine_mos_e1(rtt_us, jitter_ms, loss, formula)
    return jitter_ms, loss, e1


def rtpengine_mos(rtt_us: int, jitter_ms: int, packetloss_pct: int, formula: str = G107,
                  mode: str = "CQ") -> Optional[float]:
    """rtpengine's MOS (1.0-4.5, in tenths) for one report block; None where it computes none."""
    mos = rtpengine_mos_e1(rtt_us, jitter_ms, packetloss_pct, formula, mode)
    return mos / 10 if mos else None


def rtpengine_packetloss(fraction_lost: int) -> int:
    """The percent rtpengine derives from an RR's 8-bit fraction lost: floor(f * 100 / 256)."""
    return (int(fraction_lost) & 0xFF) * 100 // 256


def rtpengine_jitter_ms(jitter_ts: int, clock_rate: int) -> int:
    """An RR's interarrival jitter in ms as rtpengine computes it: 32-bit unsigned
    jitter * 1000 (wrapping), divided by the clock rate (the jitter as is without one)."""
    jitter = int(jitter_ts) & 0xFFFFFFFF
    return ((jitter * 1000) & 0xFFFFFFFF) // clock_rate if clock_rate else jitter


# --- aggregation ----------------------------------------------------------------------------------

class StatsBlock(NamedTuple):
    """One kept report block (ssrc.h struct ssrc_stats_block)."""
    reported_us: int
    mos: int            # MOS x 10, 0 when none was computed
    rtt_us: int
    rtt_leg_us: int
    jitter_ms: int
    packetloss: int


class RtpengineSsrcStats:
    """The MOS bookkeeping rtpengine keeps per SSRC (ssrc_receiver_report) and reports on delete
    or query (ng_stats_ssrc_1): a block reported less than a second after the last kept one is
    dropped; "lowest MOS" is the first block with the smallest non-zero MOS; "highest MOS" the
    first with the largest MOS, where the first block counts even without a MOS; "average MOS"
    sums the blocks that have one and divides each sum by their number (at least 1), in
    integers."""

    blocks: list  # of StatsBlock
    lowest: object  # StatsBlock | None
    highest: object
    no_mos_count: cython.Py_ssize_t
    _sums: list  # mos, rtt, rtt_leg, jitter, packetloss
    __slots__ = ("blocks", "lowest", "highest", "no_mos_count", "_sums")

    def __init__(self) -> None:
        self.blocks = []
        self.lowest = None
        self.highest = None
        self.no_mos_count = 0
        self._sums = [0, 0, 0, 0, 0]

    def add(self, reported_us, rtt_us, rtt_leg_us, jitter_ms, packetloss, formula: str = G107,
            mode: str = "CQ", mos=None) -> Optional[StatsBlock]:
        """Compute a block's MOS and keep it as rtpengine does; returns it, None if dropped.
        `mos`: the block's MOS x 10 when the caller has it already (rtpengine_mos_e1 of the
        same inputs)."""
        if mos is None:
            mos = rtpengine_mos_e1(rtt_us, jitter_ms, packetloss, formula, mode)
        # tuple.__new__: the same NamedTuple without its Python-level __new__
        values: tuple = (int(reported_us), mos, int(rtt_us), int(rtt_leg_us), int(jitter_ms),
                         int(packetloss))
        blocks = self.blocks
        # the kept blocks read by index (a C tuple item once compiled): reported_us, mos
        if blocks and values[0] - cython.cast(tuple, blocks[-1])[0] < 1000000:
            return None
        block = tuple.__new__(StatsBlock, values)
        blocks.append(block)
        if mos and (self.lowest is None or mos < cython.cast(tuple, self.lowest)[1]):
            self.lowest = block
        if self.highest is None or mos > cython.cast(tuple, self.highest)[1]:
            self.highest = block
        if not mos:
            self.no_mos_count += 1
        else:
            sums = self._sums
            sums[0] += mos
            sums[1] += values[2]
            sums[2] += values[3]
            sums[3] += jitter_ms
            sums[4] += packetloss
        return block

    def ng_stats(self) -> Optional[dict]:
        """The "average MOS", "lowest MOS" and "highest MOS" dicts of the ng reply (MOS x 10,
        times in us, "reported at" in seconds); None while rtpengine would report none."""
        if not self.blocks or self.lowest is None or self.highest is None:
            return None
        samples = max(len(self.blocks) - self.no_mos_count, 1)
        mos, rtt, rtt_leg, jitter, loss = [s // samples for s in self._sums]
        return {"average MOS": {"MOS": mos, "round-trip time": rtt, "round-trip time leg": rtt_leg,
                                "jitter": jitter, "packet loss": loss, "samples": samples},
                "lowest MOS": _entry(self.lowest), "highest MOS": _entry(self.highest)}


def _entry(b: StatsBlock) -> dict:
    return {"MOS": b.mos, "round-trip time": b.rtt_us, "round-trip time leg": b.rtt_leg_us,
            "jitter": b.jitter_ms, "packet loss": b.packetloss,
            "reported at": b.reported_us // 1000000}


def kamailio_mos_pvs(ssrc_stats: list[dict], created_s: int = 0) -> dict:
    """What Kamailio's rtpengine module writes into mos_min_pv / mos_max_pv / mos_average_pv and
    their _at, _packetloss, _jitter, _roundtrip, _roundtrip_leg, _samples companions from the ng_stats() of the
    SSRCs it considers (all of the call's, or up to four of one side's with mos_A_label /
    mos_B_label): the smallest "lowest MOS", the largest "highest MOS", and the integer mean of
    the "average MOS" entries; a MOS printed as "4.3", an "at" as minutes:seconds since the call
    was created, and the average's "at" is not meaningful (its entry has no "reported at")."""
    out: dict = {}
    stats = [s for s in ssrc_stats if s]
    if not stats:
        return out
    lowest = min((s["lowest MOS"] for s in stats), key=lambda e: e["MOS"])
    highest = max((s["highest MOS"] for s in stats), key=lambda e: e["MOS"])
    avgs = [s["average MOS"] for s in stats]
    n = len(avgs)
    average = {k: sum(a[k] for a in avgs) // n
               for k in ("MOS", "packet loss", "jitter", "round-trip time",
                         "round-trip time leg", "samples")}
    for name, e in (("min", lowest), ("max", highest), ("average", average)):
        out[f"mos_{name}_pv"] = f"{e['MOS'] // 10}.{e['MOS'] % 10}"
        if "reported at" in e:
            at = e["reported at"] - created_s
            out[f"mos_{name}_at_pv"] = f"{int(at / 60)}:{abs(int(math.fmod(at, 60))):02d}"
        out[f"mos_{name}_packetloss_pv"] = e["packet loss"]
        out[f"mos_{name}_jitter_pv"] = e["jitter"]
        out[f"mos_{name}_roundtrip_pv"] = e["round-trip time"]
        out[f"mos_{name}_roundtrip_leg_pv"] = e["round-trip time leg"]
        out[f"mos_{name}_samples_pv"] = e.get("samples", -1)   # -1: the entry has none
    return out
