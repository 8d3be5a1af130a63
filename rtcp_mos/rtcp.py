"""RTCP compound packets (RFC 3550 section 6 and appendix A.2; RFC 3611 XR; RFC 5506
reduced size; RFC 5761 mux; RFC 3711 section 3.4 SRTCP recognised, not decrypted).

Every RTCP packet starts with one header word (RFC 3550 section 6.4.1):

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |V=2|P|    RC   |      PT       |             length            |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

`parse_compound` never raises: what does not parse is a `rtcp.*` counter name in `anomalies`
(docs/rtcp.md lists them) and the packets before it are kept. Fields are read with
precompiled `struct.Struct.unpack_from`, since the probe parses every RTCP packet it sees.
"""
from __future__ import annotations

from struct import Struct
from typing import NamedTuple

import cython

from probe.native import load

PACKET_TYPES = {200: "SR", 201: "RR", 202: "SDES", 203: "BYE", 204: "APP",
                205: "RTPFB", 206: "PSFB", 207: "XR"}

_HEADER = Struct("!BBH")  # V/P/count, PT, length in 32-bit words minus one
_WORD = Struct("!I")
_SR_HEAD = Struct("!6I")  # reporter SSRC + sender info (RFC 3550 section 6.4.1)
_BLOCK = Struct("!6I")  # one report block
_APP_HEAD = Struct("!I4s")
# RFC 3611 section 4.7, after the block header: SSRC; loss, discard, burst and gap densities;
# burst and gap durations; round-trip and end-system delays; signal, noise (signed dBm), RERL,
# Gmin; R, external R, MOS-LQ, MOS-CQ; RX config, reserved, JB nominal; JB maximum, abs max
_VOIP = Struct("!I4B4H2b2B4BBxHHH")
VOIP_METRICS_WORDS = 8  # the VoIP Metrics block's length field (36 bytes)
SRTCP_TAG_LENGTHS = (10, 4, 0)  # HMAC-SHA1-80 (RFC 4568 6.2), -32, AEAD (RFC 7714: tag inside)
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 (NTP era 0) to 1970
# a NamedTuple built as tuple.__new__(Class, values): the same object, without the class's
# Python-level __new__ (a frame per record, on the per-report path)
_new = tuple.__new__


class SenderInfo(NamedTuple):
    """An SR's sender information (RFC 3550 section 6.4.1)."""

    ntp_msw: int  # NTP timestamp, seconds since 1900
    ntp_lsw: int  # NTP timestamp, fraction of a second in 1/2^32
    rtp_timestamp: int  # the same instant in the RTP clock
    packet_count: int  # RTP packets sent since the stream started
    octet_count: int  # RTP payload octets sent

    @property
    def ntp_seconds(self) -> float:
        """The NTP timestamp as seconds since 1900."""
        return self.ntp_msw + self.ntp_lsw / 4294967296.0

    @property
    def unix_time(self) -> float:
        """The NTP timestamp as seconds since 1970 (era 0, i.e. before 2036)."""
        return self.ntp_msw - NTP_UNIX_OFFSET + self.ntp_lsw / 4294967296.0

    @property
    def ntp_middle(self) -> int:
        """The middle 32 bits of the NTP timestamp: what a receiver echoes as LSR."""
        return ntp_middle(self.ntp_msw, self.ntp_lsw)


@cython.ccall  # a C call from media.py once compiled (native/pxdgen.py)
def ntp_middle(ntp_msw, ntp_lsw):
    """The middle 32 bits of an NTP timestamp (RFC 3550 section 6.4.1, LSR)."""
    return ((ntp_msw & 0xFFFF) << 16) | (ntp_lsw >> 16)


class ReportBlock(NamedTuple):
    """One reception report block (RFC 3550 section 6.4.1), values as on the wire."""

    source_ssrc: int  # the stream this block reports on
    fraction_lost: int  # raw 8 bits: lost / 256 since the previous report
    cumulative_lost: int  # signed 24-bit: negative when duplicates outnumber losses
    highest_seq: int  # extended highest sequence number: cycles << 16 | sequence
    jitter: int  # interarrival jitter, in RTP timestamp units
    lsr: int  # middle 32 bits of the last SR's NTP time (0: no SR yet)
    dlsr: int  # delay since that SR, in 1/65536 s


class Report(NamedTuple):
    """An SR or RR. `sender` is None for an RR, and for SRTCP, whose sender info is encrypted."""

    packet_type: str  # "SR" or "RR"
    reporter_ssrc: int
    sender: SenderInfo | None
    blocks: tuple[ReportBlock, ...]


class SdesChunk(NamedTuple):
    """One SDES chunk (RFC 3550 section 6.5): a source and its items."""

    ssrc: int
    cname: str | None  # the CNAME item (type 1), UTF-8 decoded
    items: tuple[tuple[int, bytes], ...]  # every item: (type, value bytes)


class Bye(NamedTuple):
    """BYE (RFC 3550 section 6.6)."""

    ssrcs: tuple[int, ...]
    reason: str | None


class App(NamedTuple):
    """APP (RFC 3550 section 6.7); its data is not interpreted."""

    subtype: int
    ssrc: int
    name: str  # four ASCII characters
    length: int  # application data bytes


class VoipMetrics(NamedTuple):
    """The XR VoIP Metrics report block (RFC 3611 section 4.7, BT=7), values as on the wire."""

    source_ssrc: int
    loss_rate: int  # fraction lost x 256 (8-bit fixed point)
    discard_rate: int  # fraction discarded (late, early) x 256
    burst_density: int  # fraction lost or discarded within bursts x 256
    gap_density: int  # likewise within gaps
    burst_duration: int  # mean burst duration, ms
    gap_duration: int  # mean gap duration, ms
    round_trip_delay: int  # ms (RTCP or other means)
    end_system_delay: int  # ms
    signal_level: int  # dBm, signed; 127 = unavailable
    noise_level: int  # dBm, signed; 127 = unavailable
    rerl: int  # residual echo return loss, dB; 127 = unavailable
    gmin: int  # gap threshold, packets (16 recommended)
    r_factor: int  # 0-100; 127 = unavailable
    ext_r_factor: int  # 0-100; 127 = unavailable
    mos_lq: int  # MOS listening quality x 10 (10-50); 127 = unavailable
    mos_cq: int  # MOS conversational quality x 10; 127 = unavailable
    rx_config: int  # PLC (2 bits), jitter buffer adaptive (2 bits), JB rate (4 bits)
    jb_nominal: int  # ms
    jb_maximum: int  # ms
    jb_abs_max: int  # ms

    @property
    def mos_lq_score(self) -> float | None:
        return None if self.mos_lq == 127 else self.mos_lq / 10

    @property
    def mos_cq_score(self) -> float | None:
        return None if self.mos_cq == 127 else self.mos_cq / 10


class Xr(NamedTuple):
    """An XR packet (RFC 3611 section 2): the VoIP Metrics blocks decoded, the rest by type."""

    reporter_ssrc: int
    voip_metrics: tuple[VoipMetrics, ...]
    other_blocks: tuple[int, ...]  # block types (BT) recognised and skipped, in order


class RtcpCompound(NamedTuple):
    """One datagram's compound packet, parsed."""

    reports: tuple[Report, ...]  # SR and RR in order
    sdes: tuple[SdesChunk, ...]  # the chunks of every SDES packet
    byes: tuple[Bye, ...]
    apps: tuple[App, ...]
    xrs: tuple[Xr, ...]
    anomalies: tuple[str, ...]  # `rtcp.*` counter names, one entry per occurrence
    srtcp: bool  # SRTCP recognised (RFC 3711 section 3.4): see _srtcp_trailer


def looks_like_rtcp(payload: bytes) -> bool:
    """The BPF test again, in Python: version 2 and packet type 200-207."""
    return len(payload) >= 8 and payload[0] & 0xC0 == 0x80 and 200 <= payload[1] <= 207


def packet_spans(payload: bytes) -> tuple[list[tuple[int, int, int]], str | None]:
    """(packet type, start, end) of each packet of a compound, and the first anomaly (`rtcp.*`)
    or None. Builds no records, so `sipprobe stats` can count on its hot path."""
    spans: list[tuple[int, int, int]] = []
    pos, size = 0, len(payload)
    while pos + 4 <= size:
        if payload[pos] & 0xC0 != 0x80:
            return spans, ("rtcp.trailing_bytes" if spans else "rtcp.bad_version")
        pt = payload[pos + 1]
        if pt not in PACKET_TYPES:
            return spans, ("rtcp.trailing_bytes" if spans else "rtcp.unknown_type")
        end = pos + ((payload[pos + 2] << 8) | payload[pos + 3]) * 4 + 4
        if end > size:
            return spans, "rtcp.bad_length"
        spans.append((pt, pos, end))
        pos = end
    return spans, (None if pos == size else "rtcp.trailing_bytes")


def parse_compound(payload: bytes) -> RtcpCompound:
    """parse_compound_py's result, from the C parser (rtcp_mos/_rtcpscan.c: the SR/RR, SDES
    and BYE compounds endpoints send) when it is built, else, or when it hands the compound
    back, from Python."""
    if parse_compound_c is not None:
        found = parse_compound_c(payload)
        if found is not None:
            return found
    return parse_compound_py(payload)


def parse_compound_py(payload: bytes) -> RtcpCompound:
    """Parse every packet of a compound (RFC 3550 section 6.1) with the validity checks of
    appendix A.2: version 2 in every packet; the first packet SR or RR (otherwise a reduced-
    size compound, RFC 5506, parsed and counted `rtcp.reduced_size`); the padding bit only on
    the last packet; the packets' lengths adding up to the datagram. Unknown packet types are
    skipped by their length (section 6.1: ignored), RTPFB/PSFB (RFC 4585) too.

    SRTCP is recognised by its trailer (see `_srtcp_trailer`): then only the clear first
    header and reporter SSRC are returned, as a Report without sender info or blocks."""
    size = len(payload)
    reports: list[Report] = []
    sdes: list[SdesChunk] = []
    byes: list[Bye] = []
    apps: list[App] = []
    xrs: list[Xr] = []
    anomalies: list[str] = []
    pos = 0
    stop: str | None = None
    first_end = 0
    while pos + 4 <= size:
        b0, pt, words = _HEADER.unpack_from(payload, pos)
        if b0 & 0xC0 != 0x80:
            stop = "rtcp.trailing_bytes" if pos else "rtcp.bad_version"
            break
        end = pos + 4 + words * 4
        if end > size:
            stop = "rtcp.bad_length"
            break
        body_end = end
        if b0 & 0x20:  # padding: its last byte counts the padding bytes, itself included
            pad = payload[end - 1] if words else 0
            if pad == 0 or pad > words * 4:
                anomalies.append("rtcp.bad_padding")
            else:
                body_end = end - pad
            if end != size:
                anomalies.append("rtcp.padding_not_last")
        if pos == 0:
            first_end = end
            if pt != 200 and pt != 201:
                anomalies.append("rtcp.reduced_size")
        start = pos + 4
        count = b0 & 0x1F
        if pt == 200 or pt == 201:
            _report(payload, pt, start, body_end, count, reports, anomalies)
        elif pt == 202:
            _sdes(payload, start, body_end, count, sdes, anomalies)
        elif pt == 203:
            _bye(payload, start, body_end, count, byes, anomalies)
        elif pt == 204:
            if start + 8 > body_end:
                anomalies.append("rtcp.truncated_packet")
            else:
                ssrc, name = _APP_HEAD.unpack_from(payload, start)
                apps.append(App(count, ssrc, name.decode("latin-1"), body_end - start - 8))
        elif pt == 207:
            _xr(payload, start, body_end, xrs, anomalies)
        elif pt != 205 and pt != 206:
            anomalies.append("rtcp.unknown_type")
        pos = end
    if stop is None and pos == size:
        return _new(RtcpCompound, (tuple(reports), tuple(sdes), tuple(byes), tuple(apps),
                                   tuple(xrs), tuple(anomalies), False))
    if first_end:
        encrypted = _srtcp_trailer(payload, first_end, -1 if stop == "rtcp.bad_length" else pos)
        if encrypted is not None:
            return _srtcp(payload, encrypted, reports, sdes, byes, apps, xrs, anomalies)
    anomalies.append(stop or "rtcp.trailing_bytes")
    return RtcpCompound(tuple(reports), tuple(sdes), tuple(byes), tuple(apps), tuple(xrs),
                        tuple(anomalies), False)


def _srtcp_trailer(payload: bytes, first_end: int, clean_end: int) -> bool | None:
    """Whether the bytes after the clear packets are an SRTCP trailer (RFC 3711 section 3.4):
    True when encrypted, False when only authenticated, None when not SRTCP.

    SRTCP leaves the first 8 bytes clear, encrypts the rest with a stream cipher (so the
    ciphertext keeps the 32-bit alignment of the packets) and appends a word of the E flag
    and a 31-bit index, an optional MKI and the authentication tag. The index counts packets
    from 0 (RFC 3711 section 3.3.1), so its top 7 bits are 0 for the first 2^24 packets of a
    stream (2.6 years at one every 5 s): the word's first byte is 0x80 (E=1) or 0x00.
    Encrypted: the walk broke or left bytes after the first packet, and the word 4 + tag
    bytes before the end starts with 0x80 and lies a whole number of words after the first
    packet, for a tag of 10 bytes (HMAC-SHA1-80, what both SDES crypto suites use for SRTCP,
    RFC 4568 section 6.2), 4 or 0 (AEAD, RFC 7714: the tag is inside the ciphertext).
    Authenticated only: every packet walked cleanly and 14 or 8 bytes follow, starting 0x00.
    Limits: an MKI moves the index and is not recognised; plain RTCP followed by junk passes
    when a candidate byte happens to be 0x80 (about 1 in 85 broken compounds).
    """
    size = len(payload)
    if clean_end > 0 and size - clean_end in (14, 8) and payload[clean_end] == 0:
        return False
    for tag in SRTCP_TAG_LENGTHS:
        index_at = size - 4 - tag
        if index_at >= first_end and (index_at - first_end) & 3 == 0 \
                and payload[index_at] == 0x80:
            return True
    return None


def _srtcp(payload: bytes, encrypted: bool, reports, sdes, byes, apps, xrs,
           anomalies) -> RtcpCompound:
    """The SRTCP result: with E=1 only the first header and SSRC, which are clear."""
    if not encrypted:
        return RtcpCompound(tuple(reports), tuple(sdes), tuple(byes), tuple(apps), tuple(xrs),
                            (*anomalies, "rtcp.srtcp"), True)
    b0, pt, _ = _HEADER.unpack_from(payload, 0)
    clear: tuple[Report, ...] = ()
    if pt == 200 or pt == 201:
        clear = (Report(PACKET_TYPES[pt], _WORD.unpack_from(payload, 4)[0], None, ()),)
    flags = ("rtcp.reduced_size", "rtcp.srtcp") if pt != 200 and pt != 201 else ("rtcp.srtcp",)
    return RtcpCompound(clear, (), (), (), (), flags, True)


def _report(payload: bytes, pt: int, p: int, end: int, count: int, out: list,
            anomalies: list) -> None:
    """SR or RR (RFC 3550 sections 6.4.1, 6.4.2); bytes after the blocks are a profile-
    specific extension (ignored)."""
    if pt == 200:
        if p + 24 > end:
            anomalies.append("rtcp.truncated_packet")
            return
        ssrc, msw, lsw, rtp_ts, packets, octets = _SR_HEAD.unpack_from(payload, p)
        sender: SenderInfo | None = _new(SenderInfo, (msw, lsw, rtp_ts, packets, octets))
        p += 24
    else:
        if p + 4 > end:
            anomalies.append("rtcp.truncated_packet")
            return
        ssrc = _WORD.unpack_from(payload, p)[0]
        sender = None
        p += 4
    blocks = []
    for _ in range(count):
        if p + 24 > end:
            anomalies.append("rtcp.truncated_packet")  # RC says more blocks than fit
            break
        source, word, ext, jitter, lsr, dlsr = _BLOCK.unpack_from(payload, p)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(_new(ReportBlock, (source, word >> 24, lost, ext, jitter, lsr, dlsr)))
        p += 24
    out.append(_new(Report, ("SR" if pt == 200 else "RR", ssrc, sender, tuple(blocks))))


def _sdes(payload: bytes, p: int, end: int, count: int, out: list, anomalies: list) -> None:
    """SDES chunks (RFC 3550 section 6.5): SSRC, items (type, length, text) up to a null
    item, then padding to the next word."""
    for _ in range(count):
        if p + 4 > end:
            anomalies.append("rtcp.truncated_packet")
            return
        ssrc = _WORD.unpack_from(payload, p)[0]
        p += 4
        items = []
        cname = None
        while True:
            if p >= end:
                anomalies.append("rtcp.truncated_packet")  # no null item before the end
                if items:
                    out.append(SdesChunk(ssrc, cname, tuple(items)))
                return
            kind = payload[p]
            if kind == 0:
                p = (p + 4) & ~3  # the null item and padding up to the next word
                break
            if p + 2 > end or p + 2 + payload[p + 1] > end:
                anomalies.append("rtcp.truncated_packet")
                if items:
                    out.append(SdesChunk(ssrc, cname, tuple(items)))
                return
            value = payload[p + 2:p + 2 + payload[p + 1]]
            if kind == 1:
                cname = value.decode("utf-8", "replace")
            items.append((kind, value))
            p += 2 + len(value)
        out.append(_new(SdesChunk, (ssrc, cname, tuple(items))))


def _bye(payload: bytes, p: int, end: int, count: int, out: list, anomalies: list) -> None:
    """BYE (RFC 3550 section 6.6): SC SSRCs, then an optional length-prefixed reason."""
    if p + 4 * count > end:
        anomalies.append("rtcp.truncated_packet")
        count = (end - p) // 4
    ssrcs = tuple(_WORD.unpack_from(payload, p + 4 * i)[0] for i in range(count))
    p += 4 * count
    reason = None
    if p < end:
        length = payload[p]
        if p + 1 + length > end:
            anomalies.append("rtcp.truncated_packet")
        else:
            reason = payload[p + 1:p + 1 + length].decode("utf-8", "replace")
    out.append(Bye(ssrcs, reason))


def _xr(payload: bytes, p: int, end: int, out: list, anomalies: list) -> None:
    """XR (RFC 3611 section 2): reporter SSRC, then report blocks of BT, type-specific byte
    and length in words; VoIP Metrics (BT=7) decoded, other types listed."""
    if p + 4 > end:
        anomalies.append("rtcp.truncated_packet")
        return
    ssrc = _WORD.unpack_from(payload, p)[0]
    p += 4
    metrics = []
    others = []
    while p + 4 <= end:
        bt, _, words = _HEADER.unpack_from(payload, p)
        block_end = p + 4 + words * 4
        if block_end > end:
            anomalies.append("rtcp.xr_bad_block")
            break
        if bt == 7:
            if words != VOIP_METRICS_WORDS:
                anomalies.append("rtcp.xr_bad_block")
            else:
                metrics.append(VoipMetrics(*_VOIP.unpack_from(payload, p + 4)))
        else:
            others.append(bt)
        p = block_end
    if p != end and p + 4 > end:
        anomalies.append("rtcp.xr_bad_block")  # a partial block header at the end
    out.append(Xr(ssrc, tuple(metrics), tuple(others)))


def _native():
    """The C parser's entry point, or None (not built, or SIPPROBE_PURE=1)."""
    _rtcpscan = load("rtcp_mos._rtcpscan")
    if _rtcpscan is None:
        return None
    _rtcpscan.init(SenderInfo, ReportBlock, Report, SdesChunk, Bye, RtcpCompound)
    return _rtcpscan.parse


parse_compound_c = _native()  # None when not built or turned off
NATIVE = parse_compound_c is not None
