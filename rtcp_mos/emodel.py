# cython: cpow=True
# (a ** b of C doubles is C pow(), as Python's float ** is; bases here are never negative)
"""The E-model of ITU-T G.107 (06/2015): transmission rating R and MOS from one-way delay, packet
loss and the codec, every other parameter at its Table 3 default.

Pure functions, no I/O. `g107(ta_ms, ppl, burst_r, ie, bpl)` returns every impairment behind R
so that a report can show where the quality went; `codec_impairment(encoding)` gives a codec's
Ie/Bpl pair from ITU-T G.113 Appendix I; `coding_delay_ms` its share of the one-way delay.
docs/quality.md states the formulas, defaults, clamps and sources.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import cython
# libm's exp, sqrt and log10, which Python's math calls too (the same bits): C calls once
# compiled, where math.exp would be a Python call per use; Python's math when interpreted
from cython.cimports.libc.math import exp, log10, sqrt

# G.107 Table 3 default values (the "default connection"); T (mean one-way delay of the echo
# path) is Ta and Tr (round trip of the listener-echo loop) is 2 Ta, as for a four-wire path
SLR, LSTR, DS, DR, NC, NFOR, PS, PR, QDU = 8.0, 18.0, 3.0, 3.0, -70.0, -64.0, 35.0, 35.0, 1.0
# those the per-report terms read: C doubles once compiled (native/pxdgen.py's .pxd)
RLR: cython.double = 2.0
STMR: cython.double = 15.0
TELR: cython.double = 65.0
WEPL: cython.double = 110.0
A: cython.double = 0.0
# G.107 (06/2015) clause 7.5: delay sensitivity sT and minimum perceivable delay mT, defaults
ST: cython.double = 1.0
MT: cython.double = 100.0
OLR = SLR + RLR
INF: cython.double = math.inf
MAX_DELAY_MS: cython.double = 1e6   # a clamp, not G.107's: beyond any call, and keeps infinity out


class EModel(NamedTuple):
    """R, MOS and the terms of R = Ro - Is - Id - Ie_eff + A (G.107 clause 7.1, eq. 7-1)."""
    R: float         # transmission rating factor
    MOS: float       # estimated conversational MOS, Annex B (1.0 ... 4.5)
    Ro: float        # basic signal-to-noise ratio (clause 7.2)
    Is: float        # simultaneous impairments Iolr + Ist + Iq (clause 7.3)
    Id: float        # delay impairments Idte + Idle + Idd (clause 7.4)
    Idte: float      # talker echo (clause 7.4, eq. 7-27)
    Idle: float      # listener echo (eq. 7-31)
    Idd: float       # absolute delay Ta (eq. 7-33)
    Ie_eff: float    # effective equipment impairment with packet loss (clause 7.5, eq. 7-36)
    A: float         # advantage factor (clause 7.6)
    Ta: float        # the inputs after clamping: one-way delay, ms
    Ppl: float       # packet loss, percent
    BurstR: float    # burst ratio (1 = random loss)
    Ie: float        # codec equipment impairment
    Bpl: float       # codec packet-loss robustness


def _number(value, default: float, low: float, high: float = math.inf) -> float:
    """A usable input: None or NaN become the default, the rest is clamped into [low, high]."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    if math.isnan(x):
        return default
    return min(max(x, low), high)


@cython.cfunc
@cython.inline
def _lg(x: cython.double) -> cython.double:
    return log10(x)


def _ro() -> tuple[float, float]:
    """Ro and No, G.107 clause 7.2 (eq. 7-2 to 7-8). Constant at the defaults."""
    nos = PS - SLR - DS - 100 + 0.004 * (PS - OLR - DS - 14) ** 2
    pre = PR + 10 * _lg(1 + 10 ** ((10 - LSTR) / 10))
    nor = RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = NFOR + RLR
    no = 10 * _lg(10 ** (NC / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    return 15 - 1.5 * (SLR + no), no


@cython.cfunc
def _ist(stmro: cython.double) -> cython.double:
    """Sidetone impairment, eq. 7-13."""
    return (12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
            - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
            - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29)


def _iolr_iq(ro: float, no: float) -> tuple[float, float]:
    """Iolr and Iq, clause 7.3 (eq. 7-10 to 7-12, 7-14 to 7-20): constant at the defaults."""
    xolr = OLR + 0.2 * (64 + no - RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    q = 37 - 15 * _lg(QDU)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * _lg(1 + 10 ** y + 10 ** z)
    return iolr, iq


@cython.cfunc
def _ist_at(t: cython.double) -> cython.double:
    """Ist at the delay T (eq. 7-9, 7-13): of Is = Iolr + Ist + Iq (clause 7.3), the only
    term that depends on the delay."""
    stmro: cython.double = -10 * _lg(10 ** (-STMR / 10) + exp(-t / 4) * 10 ** (-TELR / 10))
    return _ist(stmro)


# the parts of R that do not depend on the inputs, computed once (a report block needs an R)
_RO_NO = _ro()
_RO: cython.double = _RO_NO[0]
_NO: cython.double = _RO_NO[1]
_IOLR_IQ = _iolr_iq(_RO, _NO)
_IOLR: cython.double = _IOLR_IQ[0]
_IQ: cython.double = _IOLR_IQ[1]


@cython.cfunc
def _idte(no: cython.double, t: cython.double, ist: cython.double) -> cython.double:
    """Talker echo, eq. 7-21 to 7-27 (with the STMR < 9 and STMR > 20 variants)."""
    terv: cython.double = TELR - 40 * _lg((1 + t / 10) / (1 + t / 150)) + 6 * exp(-0.3 * t * t)
    if STMR < 9:
        terv += ist / 2
    roe: cython.double = -1.5 * (no - RLR)
    re: cython.double = 80 + 2.5 * (terv - 14)
    idte: cython.double = ((roe - re) / 2 + sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - exp(-t)) + 0.0
    if STMR > 20:
        idte = sqrt(idte * idte + ist * ist)
    return idte


@cython.cfunc
def _idle(ro: cython.double, tr: cython.double) -> cython.double:
    """Listener echo, eq. 7-30 and 7-31."""
    rle: cython.double = 10.5 * (WEPL + 7) * (tr + 1) ** -0.25
    return (ro - rle) / 2 + sqrt((ro - rle) ** 2 / 4 + 169)


@cython.cfunc
def _idd(ta: cython.double) -> cython.double:
    """Absolute delay, eq. 7-32 to 7-34: 0 up to mT = 100 ms, then with X = lg(Ta/mT) / lg 2."""
    if ta <= MT:
        return 0.0
    x: cython.double = _lg(ta / MT) / _lg(2)
    six: cython.double = 6 * ST
    return 25 * ((1 + x ** six) ** (1 / six) - 3 * (1 + (x / 3) ** six) ** (1 / six) + 2)


@cython.ccall  # a C call from r_and_mos once compiled
def ie_eff(ie: cython.double, ppl: cython.double, burst_r: cython.double,
           bpl: cython.double) -> cython.double:
    """Effective equipment impairment, G.107 clause 7.5 eq. 7-36:
    Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl). Above 95 only for bursty loss (BurstR > 1)."""
    if ppl <= 0:
        return ie
    return ie + (95 - ie) * ppl / (ppl / burst_r + bpl)


@cython.ccall
def r_to_mos(r: cython.double) -> cython.double:
    """G.107 Annex B (eq. B-4): MOS 1 for R < 0, 4.5 above 100, the cubic between; held at 1.0
    where the cubic dips below it (0 < R < 6.5, by up to 0.005), as rtpengine's mos_from_rx
    does, so that MOS never rises while R falls."""
    if r is None or r != r or r < 0:  # r != r: NaN
        return 1.0
    if r > 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


@cython.annotation_typing(False)  # any input is taken: None, NaN, text
def g107(ta_ms: Optional[float] = 0.0, ppl: Optional[float] = 0.0,
         burst_r: Optional[float] = 1.0, ie: Optional[float] = 0.0,
         bpl: Optional[float] = 25.1) -> EModel:
    """R and MOS of G.107 for a one-way (mouth-to-ear) delay `ta_ms`, packet loss `ppl` in percent,
    burst ratio `burst_r` and the codec's `ie`/`bpl` (default: G.711 with PLC, G.113 Table I.3).

    Inputs are clamped, never refused: delay 0-1e6 ms, loss 0-100, BurstR >= 1, Ie 0-95, Bpl >= 1
    (G.113's smallest is 4.3); None or NaN take the default. T = Ta and Tr = 2 Ta.
    """
    ta = _number(ta_ms, 0.0, 0.0, MAX_DELAY_MS)
    loss = _number(ppl, 0.0, 0.0, 100.0)
    burst = _number(burst_r, 1.0, 1.0)
    ie_ = _number(ie, 0.0, 0.0, 95.0)
    bpl_ = _number(bpl, 25.1, 1.0)
    ro, no = _RO, _NO
    ist = _ist_at(ta)
    is_ = _IOLR + ist + _IQ
    idte, idle, idd = _idte(no, ta, ist), _idle(ro, 2 * ta), _idd(ta)
    id_ = idte + idle + idd
    ief = ie_eff(ie_, loss, burst, bpl_)
    r = ro - is_ - id_ - ief + A
    return EModel(R=r, MOS=r_to_mos(r), Ro=ro, Is=is_, Id=id_, Idte=idte, Idle=idle, Idd=idd,
                  Ie_eff=ief, A=A, Ta=ta, Ppl=loss, BurstR=burst, Ie=ie_, Bpl=bpl_)


@cython.cfunc
@cython.inline
def _clamp(x: cython.double, default: cython.double, low: cython.double,
           high: cython.double) -> cython.double:
    """_number for a float: NaN the default, then min(max(x, low), high) as Python orders it."""
    if x != x:
        return default
    if low > x:
        x = low
    return high if high < x else x


@cython.ccall  # a C call from metrics.py once compiled (native/pxdgen.py)
def r_factor(ta_ms: cython.double, ppl: cython.double, burst_r: cython.double,
             ie: cython.double, bpl: cython.double) -> cython.double:
    """R of `g107` for float inputs, computed in the same order (the same bits), without the
    terms: what each report block needs, in C doubles once compiled."""
    ta: cython.double = _clamp(ta_ms, 0.0, 0.0, MAX_DELAY_MS)
    loss: cython.double = _clamp(ppl, 0.0, 0.0, 100.0)
    burst: cython.double = _clamp(burst_r, 1.0, 1.0, INF)
    ie_: cython.double = _clamp(ie, 0.0, 0.0, 95.0)
    bpl_: cython.double = _clamp(bpl, 25.1, 1.0, INF)
    ist: cython.double = _ist_at(ta)
    is_: cython.double = _IOLR + ist + _IQ
    id_: cython.double = _idte(_NO, ta, ist) + _idle(_RO, 2 * ta) + _idd(ta)
    return _RO - is_ - id_ - ie_eff(ie_, loss, burst, bpl_) + A


@cython.ccall
def r_and_mos(ta_ms: cython.double, ppl: cython.double, burst_r: cython.double,
              ie: cython.double, bpl: cython.double) -> tuple:
    """(R, MOS) of `g107` for float inputs (r_factor and r_to_mos)."""
    r: cython.double = r_factor(ta_ms, ppl, burst_r, ie, bpl)
    return r, r_to_mos(r)


class Simplified(NamedTuple):
    """R and MOS of the Cole-Rosenbluth simplification (see `simplified`)."""
    R: float
    MOS: float
    Id: float       # 0.024 d + 0.11 (d - 177.3) H(d - 177.3)
    Ie_eff: float   # gamma1 + gamma2 ln(1 + gamma3 e), e the loss fraction
    Ta: float
    Ppl: float


# Cole & Rosenbluth, "Voice over IP performance monitoring", ACM SIGCOMM CCR 31(2), 2001,
# eq. (3)-(5): Ie fitted to G.113 loss curves, for the two codecs the paper fitted
SIMPLIFIED_FITS = {"G.711": (0.0, 30.0, 15.0), "G.729A": (11.0, 40.0, 10.0)}


@cython.annotation_typing(False)  # any input is taken: None, NaN, text
def simplified(ta_ms: Optional[float] = 0.0, ppl: Optional[float] = 0.0,
               codec: str = "G.711") -> Simplified:
    """R = 94.2 - Id(d) - Ie(e) of Cole & Rosenbluth (2001), the E-model reduced to delay and
    loss; rtpengine's default MOS uses its delay term. `codec` is "G.711" or "G.729A"."""
    d = _number(ta_ms, 0.0, 0.0, MAX_DELAY_MS)
    loss = _number(ppl, 0.0, 0.0, 100.0)
    g1, g2, g3 = SIMPLIFIED_FITS[codec]
    id_ = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ief = g1 + g2 * math.log(1 + g3 * loss / 100)
    r = 94.2 - id_ - ief
    return Simplified(R=r, MOS=r_to_mos(r), Id=id_, Ie_eff=ief, Ta=d, Ppl=loss)


# --- codecs: ITU-T G.113 (11/2007) Appendix I ----------------------------------------------------

class CodecImpairment(NamedTuple):
    """A codec's E-model inputs: Ie (G.113 Table I.1) and Bpl (Table I.3) on G.107's narrowband
    scale. `fallback` is True when G.113 publishes no pair for the codec and G.711 with PLC's
    (0, 25.1) stands in; `source` says which table row was used or why the fallback."""
    ie: float
    bpl: float
    name: str
    source: str
    fallback: bool = False


_T11, _T13 = "ITU-T G.113 (11/2007) Appendix I Table I.1", "Table I.3"
G711_PLC = CodecImpairment(0.0, 25.1, "G.711 with PLC (G.711 Appendix I)",
                           f"{_T11} (Ie 0), {_T13} (Bpl 25.1)")
G711_NO_PLC = CodecImpairment(0.0, 4.3, "G.711 without PLC", f"{_T11} (Ie 0), {_T13} (Bpl 4.3)")
G729A = CodecImpairment(11.0, 19.0, "G.729A + VAD, 20 ms packets",
                        f"{_T11} (Ie 11), {_T13} (Bpl 19.0)")
G723_63 = CodecImpairment(15.0, 16.1, "G.723.1 6.3 kbit/s + VAD, 30 ms packets",
                          f"{_T11} (Ie 15), {_T13} (Bpl 16.1)")
GSM_EFR = CodecImpairment(5.0, 10.0, "GSM-EFR, 20 ms packets", f"{_T11} (Ie 5), {_T13} (Bpl 10.0)")

# SDP encoding names (RFC 3551, RFC 4867, RFC 7587, ...), upper-cased
_BY_ENCODING = {"PCMU": G711_PLC, "PCMA": G711_PLC, "G711": G711_PLC,
                "G729": G729A, "G729A": G729A, "G729AB": G729A,
                "G723": G723_63, "G7231": G723_63,
                "GSM-EFR": GSM_EFR}
# Known to the table's authors but without a usable narrowband pair, with the reason
_NO_PAIR = {
    "GSM": "G.113 Table I.1 gives GSM-FR Ie 20 but no Bpl",
    "G726-32": "G.113 Table I.1 gives G.726 32 kbit/s Ie 7 but no Bpl",
    "G728": "G.113 Table I.1 gives G.728 16 kbit/s Ie 7 but no Bpl",
    "AMR": "G.113 Appendix I has no AMR pair (AMR 12.2 is GSM-EFR's algorithm, not its table row)",
    "ILBC": "G.113 Appendix I has no iLBC pair",
    "SPEEX": "G.113 Appendix I has no Speex pair",
    "G722": "wideband: its Ie,wb/Bpl,wb (G.113 Appendix IV) are on G.107.1's 129-point scale",
    "AMR-WB": "wideband: its Ie,wb/Bpl,wb (G.113 Appendix IV) are on G.107.1's 129-point scale",
    "G7221": "wideband: G.722.1 is rated on G.107.1's scale",
    "OPUS": "G.113 has no Opus pair (fullband codecs are rated by G.107.2)",
    "SILK": "G.113 has no SILK pair",
}


def codec_impairment(encoding: Optional[str]) -> CodecImpairment:
    """The Ie/Bpl pair for an SDP encoding name ("PCMU", "g729", "GSM-EFR"...), case-insensitive;
    a codec G.113 gives no pair for gets G.711-with-PLC's, with `fallback=True` and the reason."""
    key = (encoding or "").strip().upper().replace(".", "")
    found = _BY_ENCODING.get(key)
    if found is not None:
        return found
    why = _NO_PAIR.get(key, f"no G.113 pair known for {encoding or 'an unknown codec'!r}")
    return G711_PLC._replace(source=f"{why}; G.711 with PLC assumed ({G711_PLC.source})",
                             fallback=True)


# --- coding delay ---------------------------------------------------------------------------------

class CodingDelay(NamedTuple):
    """A codec's frame and look-ahead, ms, and where they are specified."""
    frame_ms: float
    lookahead_ms: float
    source: str


_DELAYS = {
    "PCMU": CodingDelay(0.125, 0.0, "ITU-T G.711: sample by sample"),
    "PCMA": CodingDelay(0.125, 0.0, "ITU-T G.711: sample by sample"),
    "G722": CodingDelay(0.125, 0.0, "ITU-T G.722: sample by sample (QMF filter delay not counted)"),
    "G729": CodingDelay(10.0, 5.0, "ITU-T G.729 clause 1: 10 ms frames, 5 ms look-ahead"),
    "G723": CodingDelay(30.0, 7.5, "ITU-T G.723.1 clause 1: 30 ms frames, 7.5 ms look-ahead"),
    "AMR": CodingDelay(20.0, 5.0, "3GPP TS 26.090: 20 ms frames, 5 ms look-ahead"),
    "AMR-WB": CodingDelay(20.0, 5.0, "3GPP TS 26.190: 20 ms frames, 5 ms look-ahead"),
    "ILBC": CodingDelay(30.0, 10.0, "RFC 3951 section 1: 30 ms mode, 40 ms algorithmic delay"),
    "OPUS": CodingDelay(20.0, 6.5, "RFC 6716 section 2: 20 ms frames, 26.5 ms algorithmic delay"),
}


def coding_delay_ms(encoding: Optional[str], ptime_ms: Optional[float] = None) -> float:
    """The codec's share of the one-way delay: one packet of audio (`ptime_ms`, default 20 ms or
    the codec's frame when longer) plus its look-ahead. Unknown codecs count the packet only."""
    d = _DELAYS.get((encoding or "").strip().upper().replace(".", "").replace("G7231", "G723"))
    ptime = _number(ptime_ms, max(20.0, d.frame_ms if d else 20.0), 0.0)
    return ptime + (d.lookahead_ms if d else 0.0)
