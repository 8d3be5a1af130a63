"""SDP (RFC 4566) as media binding needs it: where each stream's RTP and RTCP go, and what codecs.

    v=0
    o=alice 2890844526 2890844526 IN IP4 192.0.2.10     origin: user, sess-id, version, address
    s=-
    c=IN IP4 192.0.2.10                                 session-level connection (default)
    t=0 0
    a=sendrecv                                          session-level direction (default)
    m=audio 49170 RTP/AVP 0 8 101                       media: type, port[/count], proto, formats
    c=IN IP4 192.0.2.11                                 media-level connection overrides
    a=rtpmap:101 telephone-event/8000                   pt -> encoding/clock[/channels]
    a=rtcp:49181 IN IP4 192.0.2.12                      RFC 3605: RTCP port [and address]
    a=rtcp-mux                                          RFC 5761: RTCP on the RTP port

`parse_sdp` never raises: None when the body is not SDP at all (empty, or not starting with
`v=`), else an `Sdp` whose `anomalies` name what was skipped (`sdp.*` counters). Lines may end
in CRLF, bare LF or CR (section 5: parsers should accept a bare newline). Only the line types
and attributes listed above are read; the rest is ignored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

DIRECTIONS = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))  # RFC 4566 section 6
_ATTRIBUTES = DIRECTIONS | {"rtpmap", "ptime", "rtcp", "rtcp-mux", "crypto"}  # the a= read
_ADDRESS = re.compile(r"[0-9A-Za-z.:%_-]+\Z")  # IPv4, IPv6 (with a zone) or an FQDN


class RtpMap(NamedTuple):
    encoding: str  # as written: "PCMA", "telephone-event", "AMR-WB", "pcmu"
    clock_rate: int
    channels: int | None  # audio encoding parameter; None when absent (one channel)


# RFC 3551 section 6, tables 4 and 5: static payload types, used when no a=rtpmap names them
STATIC_PAYLOAD_TYPES = {
    0: RtpMap("PCMU", 8000, None), 3: RtpMap("GSM", 8000, None), 4: RtpMap("G723", 8000, None),
    5: RtpMap("DVI4", 8000, None), 6: RtpMap("DVI4", 16000, None), 7: RtpMap("LPC", 8000, None),
    8: RtpMap("PCMA", 8000, None), 9: RtpMap("G722", 8000, None), 10: RtpMap("L16", 44100, 2),
    11: RtpMap("L16", 44100, None), 12: RtpMap("QCELP", 8000, None), 13: RtpMap("CN", 8000, None),
    14: RtpMap("MPA", 90000, None), 15: RtpMap("G728", 8000, None),
    16: RtpMap("DVI4", 11025, None), 17: RtpMap("DVI4", 22050, None),
    18: RtpMap("G729", 8000, None), 25: RtpMap("CelB", 90000, None),
    26: RtpMap("JPEG", 90000, None), 28: RtpMap("nv", 90000, None),
    31: RtpMap("H261", 90000, None), 32: RtpMap("MPV", 90000, None),
    33: RtpMap("MP2T", 90000, None), 34: RtpMap("H263", 90000, None),
}


class Connection(NamedTuple):
    """c= (section 5.7): `address` without brackets, multicast /ttl or /count."""

    addrtype: str  # IP4 or IP6
    address: str


class Origin(NamedTuple):
    """o= (section 5.2): identifies the session; `sess_version` changes with each new offer."""

    username: str
    sess_id: str  # numeric strings as written (they may exceed 64 bits)
    sess_version: str
    addrtype: str
    address: str


class Endpoint(NamedTuple):
    """Where a stream's RTP or RTCP is to be sent (what media binding matches packets on)."""

    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Media:
    """One m= section with the session-level defaults already applied."""

    media: str  # audio, video, image, application...
    port: int  # 0: the stream is rejected or disabled (RFC 3264 section 6)
    port_count: int  # m=<media> <port>/<count>; 1 when absent
    proto: str  # RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, udptl...
    formats: tuple[str, ...]  # payload types for RTP protos, as written
    connection: Connection | None  # media-level c=, else the session's; None if neither
    direction: str  # media-level attribute, else the session's, else sendrecv
    rtpmap: dict[int, RtpMap] = field(hash=False)  # a=rtpmap, first per payload type
    ptime: float | None = None  # a=ptime, milliseconds
    rtcp_port: int | None = None  # a=rtcp (RFC 3605)
    rtcp_address: str | None = None  # a=rtcp's optional address
    rtcp_mux: bool = False  # a=rtcp-mux (RFC 5761)
    crypto_suites: tuple[str, ...] = ()  # a=crypto (RFC 4568) suite names, in order

    @property
    def rejected(self) -> bool:
        return self.port == 0

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    @property
    def crypto(self) -> bool:
        return bool(self.crypto_suites)

    def codec(self, fmt: str | int) -> RtpMap | None:
        """What a payload type carries: its a=rtpmap, else the static assignment (RFC 3551)."""
        if isinstance(fmt, str):
            if not _num(fmt, 3):
                return None
            fmt = int(fmt)
        return self.rtpmap.get(fmt) or (STATIC_PAYLOAD_TYPES.get(fmt) if self.is_rtp else None)

    @property
    def encodings(self) -> tuple[str, ...]:
        """Encoding name of each format in m= order; "" when neither rtpmap nor static."""
        out = []
        for f in self.formats:
            c = self.codec(f)
            out.append(c.encoding if c is not None else "")
        return tuple(out)

    @property
    def rtp(self) -> Endpoint | None:
        """Where this side wants RTP: None when rejected, not RTP or without an address."""
        if self.port == 0 or self.connection is None or not self.is_rtp:
            return None
        return Endpoint(self.connection.address, self.port)

    @property
    def rtcp(self) -> Endpoint | None:
        """Where this side wants RTCP: a=rtcp, else the RTP port with rtcp-mux, else the RTP
        port + 1 (RFC 3550 section 11)."""
        rtp = self.rtp
        if rtp is None:
            return None
        if self.rtcp_port is not None:
            return Endpoint(self.rtcp_address or rtp.address, self.rtcp_port)
        if self.rtcp_mux:
            return rtp
        return Endpoint(rtp.address, rtp.port + 1) if rtp.port < 65535 else None


@dataclass(frozen=True, slots=True)
class Sdp:
    """One session description: an offer or an answer."""

    origin: Origin | None
    session_name: str
    connection: Connection | None  # session-level c=
    direction: str  # session-level direction attribute, sendrecv when absent
    media: tuple[Media, ...]
    anomalies: tuple[str, ...]  # `sdp.*` counter names for what was skipped or missing


class _Section:
    """The lines of one m= section (or of the session part) while they are read."""

    __slots__ = ("m", "connection", "direction", "rtpmap", "ptime", "rtcp_port",
                 "rtcp_address", "rtcp_mux", "crypto")

    def __init__(self, m):
        self.m = m  # (media, port, count, proto, formats); None for session or a bad m=
        self.connection: Connection | None = None
        self.direction: str | None = None
        self.rtpmap: dict[int, RtpMap] = {}
        self.ptime: float | None = None
        self.rtcp_port: int | None = None
        self.rtcp_address: str | None = None
        self.rtcp_mux = False
        self.crypto: list[str] = []


def _address(text: str, anomalies: list[str]) -> str:
    """Unicast or multicast address without /ttl or /count; IPv6 brackets (not allowed by
    the grammar, but sent) removed and counted. "" when it cannot be an address."""
    addr = text.split("/", 1)[0]
    if addr.startswith("[") and addr.endswith("]"):
        anomalies.append("sdp.bracketed_address")
        addr = addr[1:-1]
    return addr if _ADDRESS.match(addr) else ""


def _connection(value: str, anomalies: list[str]) -> Connection | None:
    parts = value.split()
    if len(parts) != 3 or parts[0].upper() != "IN" or not parts[2]:
        anomalies.append("sdp.bad_connection")
        return None
    address = _address(parts[2], anomalies)
    if not address:
        anomalies.append("sdp.bad_connection")
        return None
    return Connection(parts[1].upper(), address)


def _num(text: str, digits: int) -> bool:
    """ASCII digits, at most `digits` of them: str.isdigit() alone accepts a superscript
    two, which int() rejects, and int() refuses more than 4300 digits."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _port(text: str) -> int | None:
    return int(text) if _num(text, 5) and int(text) <= 65535 else None


def _media_line(value: str) -> tuple | None:
    parts = value.split()
    if len(parts) < 3:
        return None
    port_text, _, count_text = parts[1].partition("/")
    port = _port(port_text)
    count = int(count_text) if _num(count_text, 5) else (
        1 if not count_text else 0)
    if port is None or count < 1:
        return None
    return parts[0].lower(), port, count, parts[2], tuple(parts[3:])


def _attribute(sec: _Section, name: str, arg: str, anomalies: list[str]) -> None:
    """One a= line whose name (lower-cased: names are case-sensitive tokens, but some UAs
    send a=SendRecv) is in _ATTRIBUTES."""
    if name in DIRECTIONS:
        sec.direction = name
    elif name == "rtpmap":
        pt_text, _, enc = arg.strip().partition(" ")
        pieces = enc.strip().split("/")
        if not (_num(pt_text, 3) and int(pt_text) <= 127 and len(pieces) >= 2 and pieces[0]
                and _num(pieces[1], 9)):
            anomalies.append("sdp.bad_rtpmap")
            return
        channels = pieces[2] if len(pieces) > 2 else ""
        sec.rtpmap.setdefault(int(pt_text), RtpMap(
            pieces[0], int(pieces[1]),
            int(channels) if _num(channels, 3) else None))
    elif name == "ptime":
        text = arg.strip()
        whole, dot, frac = text.partition(".")
        if not (_num(whole, 6) and (not dot or _num(frac, 6))):
            anomalies.append("sdp.bad_ptime")
            return
        sec.ptime = int(whole) if not dot else float(text)
    elif name == "rtcp":
        parts = arg.split()
        port = _port(parts[0]) if parts else None
        if port is None:
            anomalies.append("sdp.bad_rtcp")
            return
        sec.rtcp_port = port
        addr = _address(parts[3], anomalies) if len(parts) >= 4 and parts[1].upper() == "IN" else ""
        if addr:
            sec.rtcp_address = addr
        elif len(parts) > 1:
            anomalies.append("sdp.bad_rtcp")  # the port is still usable
    elif name == "rtcp-mux":
        sec.rtcp_mux = True
    elif name == "crypto":
        # a=crypto:<tag> <crypto-suite> <key-params> (RFC 4568 section 9.1)
        parts = arg.split()
        sec.crypto.append(parts[1] if len(parts) > 1 else "")


def _media(sec: _Section, session: _Section, anomalies: list[str]) -> Media:
    media, port, count, proto, formats = sec.m
    connection = sec.connection or session.connection
    if connection is None and port != 0:
        anomalies.append("sdp.missing_connection")  # section 5.7: c= at one level at least
    return Media(media, port, count, proto, formats, connection,
                 sec.direction or session.direction or "sendrecv", sec.rtpmap, sec.ptime,
                 sec.rtcp_port, sec.rtcp_address, sec.rtcp_mux, tuple(sec.crypto))


def parse_sdp(body: bytes) -> Sdp | None:
    """The session description in `body`; None when it is not SDP at all."""
    text = body.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.lstrip("\n \t").split("\n")
    if not lines[0].startswith("v="):
        return None
    anomalies: list[str] = []
    if lines[0].rstrip() != "v=0":
        anomalies.append("sdp.bad_version")
    session = sec = _Section(None)
    origin, name = None, ""
    media: list[Media] = []
    for line in lines[1:]:
        if not line:
            continue
        kind = line[0]
        if line[1:2] != "=" or not "a" <= kind <= "z":
            if line.strip():
                anomalies.append("sdp.bad_line")
            continue
        if kind == "a":
            colon = line.find(":")
            attr = line[2:colon] if colon > 0 else line[2:].rstrip()
            if attr not in _ATTRIBUTES:
                attr = attr.strip().lower()
                if attr not in _ATTRIBUTES:
                    continue
            _attribute(sec, attr, line[colon + 1:] if colon > 0 else "", anomalies)
        elif kind == "c":
            conn = _connection(line[2:], anomalies)
            if sec.connection is None:  # layered multicast may repeat c=; the first counts
                sec.connection = conn
        elif kind == "m":
            if sec.m is not None:
                media.append(_media(sec, session, anomalies))
            m = _media_line(line[2:])
            if m is None:
                anomalies.append("sdp.bad_media")  # its attributes go nowhere
            sec = _Section(m)
        elif sec is session:
            if kind == "o":
                p = line[2:].split()
                if len(p) == 6:
                    addr = p[5]  # informational only: kept as written, but for brackets
                    if addr[:1] == "[" and addr[-1:] == "]":
                        anomalies.append("sdp.bracketed_address")
                        addr = addr[1:-1]
                    origin = Origin(p[0], p[1], p[2], p[4].upper(), addr)
                else:
                    anomalies.append("sdp.bad_origin")
            elif kind == "s":
                name = line[2:].rstrip()
    if sec.m is not None:
        media.append(_media(sec, session, anomalies))
    if origin is None and "sdp.bad_origin" not in anomalies:
        anomalies.append("sdp.missing_origin")
    return Sdp(origin, name, session.connection, session.direction or "sendrecv", tuple(media),
               tuple(anomalies))
