"""RTCP compound packet walking (RFC 3550 section 6, RFC 3611 for XR, RFC 5761 for mux).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |V=2|P|    RC   |      PT       |             length            |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""
from __future__ import annotations

from typing import NamedTuple

PACKET_TYPES = {200: "SR", 201: "RR", 202: "SDES", 203: "BYE", 204: "APP",
                205: "RTPFB", 206: "PSFB", 207: "XR"}


class RtcpHeader(NamedTuple):
    packet_type: int  # 200-207
    count: int  # RC / SC / FMT field
    padding: bool
    body: bytes  # the packet after its 4-byte header, padding included


class Compound(NamedTuple):
    packets: list[RtcpHeader]
    anomalies: list[str]  # `rtcp.*` reasons for what was not walked


def looks_like_rtcp(payload: bytes) -> bool:
    """The BPF test again, in Python: version 2 and packet type 200-207."""
    return len(payload) >= 8 and payload[0] & 0xC0 == 0x80 and 200 <= payload[1] <= 207


def walk(payload: bytes) -> Compound:
    """Split a compound packet into its packets; a bad length stops the walk, counted.

    Bytes left after the last well-formed packet are SRTCP's index and authentication tag
    when the first packet is intact (RFC 3711 section 3.4); they are counted, not parsed.
    """
    spans, anomaly = packet_spans(payload)
    packets = [RtcpHeader(pt, payload[start] & 0x1F, bool(payload[start] & 0x20),
                          payload[start + 4:end]) for pt, start, end in spans]
    return Compound(packets, [anomaly] if anomaly else [])


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
