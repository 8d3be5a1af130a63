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
    packets: list[RtcpHeader] = []
    anomalies: list[str] = []
    pos, size = 0, len(payload)
    while pos + 4 <= size:
        b0 = payload[pos]
        if b0 & 0xC0 != 0x80:
            anomalies.append("rtcp.bad_version" if not packets else "rtcp.trailing_bytes")
            return Compound(packets, anomalies)
        pt = payload[pos + 1]
        length = ((payload[pos + 2] << 8) | payload[pos + 3]) * 4 + 4
        if pt not in PACKET_TYPES:
            anomalies.append("rtcp.unknown_type" if not packets else "rtcp.trailing_bytes")
            return Compound(packets, anomalies)
        if pos + length > size:
            anomalies.append("rtcp.bad_length")
            return Compound(packets, anomalies)
        packets.append(RtcpHeader(pt, b0 & 0x1F, bool(b0 & 0x20), payload[pos + 4:pos + length]))
        pos += length
    if pos != size:
        anomalies.append("rtcp.trailing_bytes")
    return Compound(packets, anomalies)
