"""`sipprobe extract`: every packet of the matching calls in one pcap, as sngrep's save and
VoIPmonitor's per-call pcap do.

Two passes over the captures. The first finds the calls (by Call-ID, user or start time) and
their media endpoints from the SDP of their SIP bodies (RFC 4566 c=/m=; RTCP at a=rtcp, the RTP
port with rtcp-mux, else the RTP port + 1: RFC 3550 section 11). The second writes each frame
that carries a SIP message of those Call-IDs (every leg that kept the Call-ID: a proxy's) or a
UDP datagram from or to one of those endpoints, byte for byte with its capture time.
A SIP message over TCP or in IP fragments is written with the frame that completed it only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from probe.counters import Counters
from probe.decode import Decoder
from probe.sources import CaptureStats, FilterSet, SourceError, read_files
from sip_dissect.framing import frame_sip_stream
from sip_dissect.message import SipMessage, parse
from sip_dissect.sdp import parse_sdp

_USER = re.compile(r"sips?:([^@;>\s]+)@", re.I)


@dataclass
class Selection:
    """What the first pass found: the calls' Call-IDs and media endpoints (address, port)."""
    callids: set = field(default_factory=set)
    endpoints: set = field(default_factory=set)


def _datagrams(paths):
    """(frame, its datagrams) for every frame of the captures, nothing de-duplicated."""
    counters = Counters()
    decoder = Decoder(counters, frame_sip_stream, tcp_ports=frozenset({5060, 5061}),
                      dedup_window=0.0)
    keep_all = FilterSet(lambda linktype: None, builtin=False)
    for frame in read_files(list(paths), keep_all, CaptureStats()):
        yield frame, decoder.decode_batch([frame])


def _sip(payload: bytes) -> SipMessage | None:
    if not payload[:1].isalpha():
        return None
    msg = parse(payload)
    return msg if isinstance(msg, SipMessage) and msg.call_id else None


def _users(msg: SipMessage) -> list[str]:
    values = [msg.header("from") or "", msg.header("to") or "", msg.uri or ""]
    return [m.group(1) for v in values for m in [_USER.search(v)] if m]


def select(paths, *, callid=None, user=None, since=None) -> Selection:
    """The calls matching every condition given: the Call-ID; a From, To or request-URI user
    containing `user`; a first SIP message at or after `since` (epoch seconds)."""
    first_seen: dict[str, float] = {}
    users: dict[str, set] = {}
    bodies: dict[str, list[bytes]] = {}
    for frame, datagrams in _datagrams(paths):
        for d in datagrams:
            msg = _sip(d.payload)
            if msg is None:
                continue
            cid = msg.call_id
            first_seen.setdefault(cid, d.ts)
            users.setdefault(cid, set()).update(_users(msg))
            if msg.body:
                bodies.setdefault(cid, []).append(msg.body)
    chosen = Selection()
    for cid, t in first_seen.items():
        if callid is not None and cid != callid:
            continue
        if since is not None and t < since:
            continue
        if user is not None and not any(user in u for u in users[cid]):
            continue
        chosen.callids.add(cid)
        for body in bodies.get(cid, ()):
            sdp = parse_sdp(body)
            for media in sdp.media if sdp else ():
                for endpoint in (media.rtp, media.rtcp):
                    if endpoint is not None:
                        chosen.endpoints.add((endpoint.address, endpoint.port))
    return chosen


def _belongs(d, chosen: Selection) -> bool:
    if d.transport == "udp" and ((d.src, d.sport) in chosen.endpoints
                                 or (d.dst, d.dport) in chosen.endpoints):
        return True
    msg = _sip(d.payload)
    return msg is not None and msg.call_id in chosen.callids


def write(paths, chosen: Selection, out: str) -> int:
    """Write the frames of the chosen calls to `out` (pcap, the captures' link type); how
    many. SourceError when the captures mix link types (one pcap holds one)."""
    from scapy.utils import RawPcapWriter

    writer, linktype, written = None, None, 0
    try:
        for frame, datagrams in _datagrams(paths):
            if not any(_belongs(d, chosen) for d in datagrams):
                continue
            if writer is None:
                linktype = frame.linktype
                writer = RawPcapWriter(out, linktype=linktype, snaplen=262144, sync=False)
                writer.write_header(None)  # write_packet() alone would leave it out
            elif frame.linktype != linktype:
                raise SourceError(f"the captures mix link types {linktype} and "
                                  f"{frame.linktype}: extract from one kind at a time")
            sec = int(frame.ts)
            usec = min(int(round((frame.ts - sec) * 1e6)), 999999)
            writer.write_packet(frame.data, sec=sec, usec=usec, caplen=len(frame.data),
                                wirelen=frame.wirelen)
            written += 1
    finally:
        if writer is not None:
            writer.close()
    return written
