"""Builders for the crafted-capture tests: a SIP call, RTCP, RTP, link layers, tunnels, files.

Packets are made with scapy (so lengths and checksums are right); headers scapy has no layer
for (GRE options, ERSPAN, GTP-U extensions) are packed by hand from their RFC / 3GPP layouts.
Files are written by the small writers below, which also cover what scapy's writers cannot:
nanosecond and big-endian pcap, pcapng with interfaces of different link types, cut records.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

import pipeline

T0 = 1_700_000_000.0
A_IP, B_IP = "192.0.2.10", "198.51.100.20"
A6_IP, B6_IP = "2001:db8::10", "2001:db8:1::20"
A_RTP, B_RTP = 40000, 50000  # RTP ports from the SDP; RTCP on the next odd port

# What one call (`call_packets`) yields once decoded: 7 SIP messages, 2 RTCP compounds, 3 RTP.
CALL_RTCP = {"datagrams": 2, "packets": {"RR": 1, "SDES": 2, "SR": 1}}
CALL_SIP_FRAMES, CALL_RTCP_FRAMES, CALL_RTP_FRAMES = 7, 2, 3


def sip_expected(n: int = 1, transport: str = "udp", retransmissions: int = 0) -> dict:
    """The `sip` section of the result for `n` copies of the call."""
    return {"messages": 7 * n, "requests": {"INVITE": n, "ACK": n, "BYE": n},
            "responses": {"100": n, "180": n, "200": 2 * n}, "retransmissions": retransmissions,
            "transport": {transport: 7 * n}}


CALL_SIP = sip_expected()


def stats(paths, **opts) -> dict:
    """`stats_files` in strict mode (internal errors raise instead of being counted)."""
    if not isinstance(paths, (list, tuple)):
        paths = [paths]
    return pipeline.stats_files([str(p) for p in paths], pipeline.ProbeOptions(strict=True, **opts))


# -- SIP ---------------------------------------------------------------------------------------

def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def sdp(ip: str, port: int, user: str) -> bytes:
    fam = "IP6" if ":" in ip else "IP4"
    return ("v=0\r\n"
            f"o={user} 2890844526 2890844526 IN {fam} {ip}\r\n"
            "s=-\r\n"
            f"c=IN {fam} {ip}\r\n"
            "t=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\n"
            "a=ptime:20\r\n"
            "a=sendrecv\r\n").encode()


def sip_message(start: str, headers: list[tuple[str, str]], body: bytes = b"",
                content_length: str | None = None) -> bytes:
    """Start line, headers, Content-Type when there is a body, Content-Length, blank line, body."""
    lines = [start] + [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sip_call(a_ip: str = A_IP, b_ip: str = B_IP, *, transport: str = "UDP", a_port: int = 5060,
             b_port: int = 5060, call_id: str = "a84b4c76e66710@pc33.example.com",
             tag: str = "1") -> list[tuple[str, bytes]]:
    """A whole call as (sender, message): INVITE, 100, 180, 200, ACK, BYE, 200 (RFC 3665 3.1).

    `sender` is "a" (caller) or "b" (callee). ACK and BYE are new transactions with their own
    Via branch; responses echo the request's Via, From, To (with the callee's tag), Call-ID, CSeq.
    """
    a, b = f"{_host(a_ip)}:{a_port}", f"{_host(b_ip)}:{b_port}"
    frm = f"\"Alice\" <sip:alice@example.com>;tag=9fxced76sl{tag}"
    to = "<sip:bob@example.org>"
    to_tagged = f"{to};tag=8321234356{tag}"

    def via(branch: str) -> str:
        return f"SIP/2.0/{transport} {a};branch=z9hG4bK{branch}{tag}"

    def request(method: str, uri: str, branch: str, cseq: int, to_hdr: str, body=b"") -> bytes:
        hdrs = [("Via", via(branch)), ("Max-Forwards", "70"), ("From", frm), ("To", to_hdr),
                ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<sip:alice@{a};transport={transport.lower()}>"),
                ("User-Agent", "crafted/1.0")]
        return sip_message(f"{method} {uri} SIP/2.0", hdrs, body)

    def response(code: int, reason: str, branch: str, cseq: int, method: str, to_hdr: str,
                 body=b"") -> bytes:
        hdrs = [("Via", via(branch)), ("From", frm), ("To", to_hdr), ("Call-ID", call_id),
                ("CSeq", f"{cseq} {method}")]
        if code >= 180:
            hdrs.append(("Contact", f"<sip:bob@{b};transport={transport.lower()}>"))
        return sip_message(f"SIP/2.0 {code} {reason}", hdrs, body)

    bob_uri = f"sip:bob@{b}"
    return [
        ("a", request("INVITE", "sip:bob@example.org", "74bf9", 1, to, sdp(a_ip, A_RTP, "alice"))),
        ("b", response(100, "Trying", "74bf9", 1, "INVITE", to)),
        ("b", response(180, "Ringing", "74bf9", 1, "INVITE", to_tagged)),
        ("b", response(200, "OK", "74bf9", 1, "INVITE", to_tagged, sdp(b_ip, B_RTP, "bob"))),
        ("a", request("ACK", bob_uri, "a1c3e", 1, to_tagged)),
        ("a", request("BYE", bob_uri, "b7d2f", 2, to_tagged)),
        ("b", response(200, "OK", "b7d2f", 2, "BYE", to_tagged)),
    ]


# Offsets (seconds after t0) of the call's messages, RTP and RTCP: all far apart compared to
# the 10 ms de-duplication window, in the order a real call has them.
SIP_TIMES = (0.0, 0.01, 0.2, 2.0, 2.05, 10.0, 10.05)
RTP_TIMES = (2.1, 2.12, 2.14)
RTCP_TIMES = (5.0, 5.1)


# -- RTP and RTCP (RFC 3550 section 6, RFC 3611) -------------------------------------------------

def _rtcp(count: int, pt: int, body: bytes) -> bytes:
    assert len(body) % 4 == 0
    return struct.pack("!BBH", 0x80 | count, pt, (len(body) + 4) // 4 - 1) + body


def _report_block(ssrc: int) -> bytes:
    # SSRC, fraction lost 2/256 + cumulative 3, highest seq, jitter, LSR, DLSR
    return struct.pack("!IIIIII", ssrc, (2 << 24) | 3, 0x0001_0200, 37, 0x1234_5678, 0x0000_8000)


def rtcp_sr(ssrc: int = 0x11111111, peer: int = 0x22222222) -> bytes:
    info = struct.pack("!IIIII", 0xE8000000, 0x40000000, 160 * 250, 250, 250 * 160)
    return _rtcp(1, 200, struct.pack("!I", ssrc) + info + _report_block(peer))


def rtcp_rr(ssrc: int = 0x22222222, peer: int = 0x11111111) -> bytes:
    return _rtcp(1, 201, struct.pack("!I", ssrc) + _report_block(peer))


def rtcp_sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _rtcp(1, 202, chunk)


def rtcp_bye(ssrc: int) -> bytes:
    return _rtcp(1, 203, struct.pack("!I", ssrc))


def rtcp_app(ssrc: int) -> bytes:
    return _rtcp(0, 204, struct.pack("!I", ssrc) + b"TEST" + b"\x00\x00\x00\x01")


def rtcp_xr(ssrc: int) -> bytes:
    # one Receiver Reference Time report block (RFC 3611 section 4.4): BT=4, length 2
    return _rtcp(0, 207, struct.pack("!IBBHII", ssrc, 4, 0, 2, 0xE8000000, 0x40000000))


def rtcp_sr_sdes(ssrc: int = 0x11111111) -> bytes:
    return rtcp_sr(ssrc) + rtcp_sdes(ssrc, b"alice@192.0.2.10")


def rtcp_rr_sdes(ssrc: int = 0x22222222) -> bytes:
    return rtcp_rr(ssrc) + rtcp_sdes(ssrc, b"bob@198.51.100.20")


def rtp(seq: int, *, marker: bool = True, pt: int = 0, ssrc: int = 0x11111111) -> bytes:
    """An RTP packet (PCMU by default, marker set: second byte 0x80, never an RTCP type)."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, seq * 160, ssrc) + b"\xff" * 160


# -- IP packets --------------------------------------------------------------------------------

def ip(src: str, dst: str, **kw) -> Packet:
    return IPv6(src=src, dst=dst, **kw) if ":" in src else IP(src=src, dst=dst, **kw)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes, **ipkw) -> Packet:
    return ip(src, dst, **ipkw) / UDP(sport=sport, dport=dport) / Raw(payload)


def call_packets(a_ip: str = A_IP, b_ip: str = B_IP, t0: float = T0, *, media: bool = True,
                 tag: str = "1", call_id: str | None = None) -> list[tuple[float, Packet]]:
    """The call over UDP as (time, IP packet): SIP, then (with `media`) RTP and RTCP.

    RTP flows a -> b on the SDP ports; RTCP: a sends SR+SDES, b answers RR+SDES, on port+1.
    """
    kw = {"call_id": call_id} if call_id else {}
    out = []
    for t, (who, msg) in zip(SIP_TIMES, sip_call(a_ip, b_ip, tag=tag, **kw)):
        src, dst = (a_ip, b_ip) if who == "a" else (b_ip, a_ip)
        out.append((t0 + t, udp(src, dst, 5060, 5060, msg)))
    if media:
        for i, t in enumerate(RTP_TIMES):
            out.append((t0 + t, udp(a_ip, b_ip, A_RTP, B_RTP, rtp(1000 + i, marker=(i == 0)))))
        out.append((t0 + RTCP_TIMES[0], udp(a_ip, b_ip, A_RTP + 1, B_RTP + 1, rtcp_sr_sdes())))
        out.append((t0 + RTCP_TIMES[1], udp(b_ip, a_ip, B_RTP + 1, A_RTP + 1, rtcp_rr_sdes())))
    return sorted(out, key=lambda r: r[0])


# -- link layers -------------------------------------------------------------------------------

MAC_A, MAC_B = "00:00:5e:00:53:0a", "00:00:5e:00:53:14"
LINKTYPE = {"ethernet": 1, "vlan": 1, "qinq": 1, "pppoe": 1, "vlan_pppoe": 1, "sll": 113,
            "sll2": 276, "raw": 101, "null_le": 0, "null_be": 0, "loop": 108}


def link(kind: str, pkt: Packet) -> bytes:
    """The frame for `pkt` (an IP packet) on link `kind` (a key of LINKTYPE)."""
    v6 = isinstance(pkt, IPv6)
    etype = 0x86DD if v6 else 0x0800
    if kind == "ethernet":
        return bytes(Ether(src=MAC_A, dst=MAC_B) / pkt)
    if kind == "vlan":
        return bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=100) / pkt)
    if kind == "qinq":  # 802.1ad service tag outside, 802.1Q customer tag inside
        return bytes(Ether(src=MAC_A, dst=MAC_B, type=0x88A8) / Dot1AD(vlan=200, type=0x8100)
                     / Dot1Q(vlan=100) / pkt)
    if kind in ("pppoe", "vlan_pppoe"):
        session = PPPoE(sessionid=0x1234) / PPP(proto=0x0057 if v6 else 0x0021) / pkt
        if kind == "vlan_pppoe":
            session = Dot1Q(vlan=300, type=0x8864) / session
        return bytes(Ether(src=MAC_A, dst=MAC_B, type=0x8100 if kind == "vlan_pppoe" else 0x8864)
                     / session)
    if kind == "sll":
        return bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x00\x00\x5e\x00\x53\x0a",
                                 proto=etype) / pkt)
    if kind == "sll2":
        return bytes(CookedLinuxV2(proto=etype, ifindex=2, lladdrtype=1, pkttype=0, lladdrlen=6,
                                   src=b"\x00\x00\x5e\x00\x53\x0a") / pkt)
    if kind == "raw":
        return bytes(pkt)
    family = 30 if v6 else 2  # AF_INET6 of macOS; AF_INET is 2 everywhere
    if kind == "null_le":
        return struct.pack("<I", family) + bytes(pkt)
    if kind in ("null_be", "loop"):
        return struct.pack(">I", family) + bytes(pkt)
    raise ValueError(kind)


def ether(pkt: Packet, **kw) -> Packet:
    return Ether(src=MAC_A, dst=MAC_B, **kw) / pkt


# -- tunnels -----------------------------------------------------------------------------------

OUTER_A, OUTER_B = "203.0.113.1", "203.0.113.2"


def gre_header(proto: int, *, key: int | None = None, seq: int | None = None) -> bytes:
    """RFC 2784 / RFC 2890 GRE: flags (K=0x2000, S=0x1000), protocol, then key and sequence."""
    flags = (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    out = struct.pack("!HH", flags, proto)
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out


def erspan2_header(session: int = 7, vlan: int = 0) -> bytes:
    """ERSPAN type II: Ver=1, VLAN | COS, En, T, session id | reserved, index."""
    return struct.pack("!HHI", (1 << 12) | vlan, (3 << 11) | session, 0x000001)


def erspan3_header(session: int = 7, platform: bool = False) -> bytes:
    """ERSPAN type III: Ver=2, VLAN | COS, BSO, T, session | timestamp | SGT, P, FT, HW, D, Gra, O.

    The O bit (last bit of the 12 bytes) announces the 8-byte platform-specific subheader.
    """
    head = struct.pack("!HHIHH", 2 << 12, session, 0x01020304, 0, (1 << 1) | (1 if platform else 0))
    if platform:
        head += struct.pack("!II", (3 << 26) | 0x55, 0x0A0B0C0D)  # platform ID 3, port id, ts
    return head


def gtpu_header(payload_len: int, *, seq: bool = False, ext: bool = False) -> bytes:
    """3GPP TS 29.281 G-PDU: version 1, PT=1, E/S/PN flags; with E a PDU session container."""
    flags = 0x30 | (0x04 if ext else 0) | (0x02 if seq else 0)
    opt = b""
    if ext or seq:
        opt = struct.pack("!HBB", 0x0042 if seq else 0, 0, 0x85 if ext else 0)
    if ext:  # length 1 (4 octets): PDU type 0 (DL), QFI 9, next extension type 0 = none
        opt += bytes([1, 0x00, 0x09, 0])
    return struct.pack("!BBHI", flags, 0xFF, len(opt) + payload_len, 0x1000ABCD) + opt


def pptp_gre(pkt: Packet, compressed: bool = False) -> bytes:
    """RFC 2637 enhanced GRE (version 1, K and S set) carrying PPP with `pkt`. Compressed: the
    acknowledgment number present, and PPP without address/control, protocol in one byte."""
    v6 = isinstance(pkt, IPv6)
    if compressed:
        ppp = bytes([0x57 if v6 else 0x21]) + bytes(pkt)
    else:
        ppp = b"\xff\x03" + (b"\x00\x57" if v6 else b"\x00\x21") + bytes(pkt)
    flags = 0x2000 | 0x1000 | (0x0080 if compressed else 0) | 1
    head = struct.pack("!HHHHI", flags, 0x880B, len(ppp), 0x4D2, 17)
    return head + (struct.pack("!I", 16) if compressed else b"") + ppp


def tunnel(kind: str, pkt: Packet) -> Packet:
    """`pkt` (an inner IP packet) inside tunnel `kind`, as an outer IPv4 packet."""
    inner = bytes(pkt)
    inner_eth = bytes(ether(pkt))
    v6 = isinstance(pkt, IPv6)
    etype = 0x86DD if v6 else 0x0800
    if kind == "gre":
        return IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(gre_header(etype) + inner)
    if kind == "gre_key_seq":
        return IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(gre_header(etype, key=0x2A, seq=9) + inner)
    if kind == "gre_teb":
        return IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(gre_header(0x6558) + inner_eth)
    if kind == "erspan2":
        return (IP(src=OUTER_A, dst=OUTER_B, proto=47)
                / Raw(gre_header(0x88BE, seq=1) + erspan2_header() + inner_eth))
    if kind in ("erspan3", "erspan3_platform"):
        return (IP(src=OUTER_A, dst=OUTER_B, proto=47)
                / Raw(gre_header(0x22EB, seq=1) + erspan3_header(platform=kind.endswith("platform"))
                      + inner_eth))
    if kind == "erspan1":  # ERSPAN type I: GRE without sequence number, no ERSPAN header
        return IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(gre_header(0x88BE) + inner_eth)
    if kind in ("pptp", "pptp_compressed"):
        return IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(pptp_gre(pkt, compressed=kind == "pptp_compressed"))
    if kind == "vxlan":
        return IP(src=OUTER_A, dst=OUTER_B) / UDP(sport=49152, dport=4789) / VXLAN(vni=5001) / Ether(inner_eth)
    if kind in ("gtpu", "gtpu_seq", "gtpu_ext"):
        head = gtpu_header(len(inner), seq=kind == "gtpu_seq", ext=kind == "gtpu_ext")
        return IP(src=OUTER_A, dst=OUTER_B) / UDP(sport=2152, dport=2152) / Raw(head + inner)
    if kind == "ipip":
        return IP(src=OUTER_A, dst=OUTER_B, proto=41 if v6 else 4) / Raw(inner)
    raise ValueError(kind)


# -- capture files -----------------------------------------------------------------------------

def _pcap_bytes(records, linktype: int, *, nano: bool, big: bool, snaplen: int) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for rec in records:
        ts, data = rec[0], bytes(rec[1])
        wirelen = rec[2] if len(rec) > 2 else len(data)
        sec, frac = divmod(round(ts * 1e6), 10**6)  # whole microseconds: exact in a float
        frac *= 1000 if nano else 1
        out.append(struct.pack(e + "IIII", sec, frac, len(data), wirelen) + data)
    return b"".join(out)


def write_pcap(path, records, linktype: int = 1, *, nano: bool = False, big: bool = False,
               snaplen: int = 262144, compress: bool = False) -> Path:
    """records: (ts, frame bytes[, wire length]). Classic pcap, optionally gzip-compressed."""
    data = _pcap_bytes(records, linktype, nano=nano, big=big, snaplen=snaplen)
    Path(path).write_bytes(gzip.compress(data) if compress else data)
    return Path(path)


def pcapng_block(btype: int, body: bytes) -> bytes:
    """One little-endian pcapng block: type, length, body padded to 4 bytes, length."""
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path, linktypes: list[int], records) -> Path:
    """records: (interface index, ts, frame bytes). One SHB, one IDB per link type (usec)."""
    out = [pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out += [pcapng_block(1, struct.pack("<HHI", lt, 0, 262144)) for lt in linktypes]
    for ifx, ts, data in records:
        data = bytes(data)
        t = round(ts * 1e6)
        out.append(pcapng_block(6, struct.pack("<IIIII", ifx, t >> 32, t & 0xFFFFFFFF, len(data), len(data))
                          + data))
    Path(path).write_bytes(b"".join(out))
    return Path(path)


def frames(packets, kind: str = "ethernet") -> list[tuple[float, bytes]]:
    """(ts, IP packet) pairs as (ts, frame bytes) on link `kind`."""
    return [(t, link(kind, p)) for t, p in packets]


# -- TCP ---------------------------------------------------------------------------------------

class TcpFlow:
    """One TCP connection between a (client) and b; segments carry consistent seq/ack numbers."""

    def __init__(self, a_ip: str = A_IP, b_ip: str = B_IP, a_port: int = 41000,
                 b_port: int = 5060, isn_a: int = 0x10000000, isn_b: int = 0xFFFFFF00):
        self.addr = {"a": (a_ip, a_port), "b": (b_ip, b_port)}
        self.seq = {"a": isn_a, "b": isn_b}  # b's ISN makes its sequence numbers wrap past 2**32

    def _pkt(self, side: str, flags: str, seq: int, payload: bytes = b"") -> Packet:
        other = "b" if side == "a" else "a"
        (sip_, sport), (dip, dport) = self.addr[side], self.addr[other]
        pkt = ip(sip_, dip) / TCP(sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
                                  ack=self.seq[other] & 0xFFFFFFFF, window=65535)
        return pkt / Raw(payload) if payload else pkt

    def handshake(self, t: float) -> list[tuple[float, Packet]]:
        out = [(t, self._pkt("a", "S", self.seq["a"]))]
        self.seq["a"] += 1
        out.append((t + 0.001, self._pkt("b", "SA", self.seq["b"])))
        self.seq["b"] += 1
        out.append((t + 0.002, self._pkt("a", "A", self.seq["a"])))
        return out

    def send(self, side: str, data: bytes, t: float, back: int = 0) -> tuple[float, Packet]:
        """One segment carrying `data` at the current sequence number (minus `back`: a resend
        overlapping what was sent), after which the sequence number is past `data`."""
        seq = self.seq[side] - back
        pkt = self._pkt(side, "PA", seq, data)
        self.seq[side] = seq + len(data)
        return t, pkt

    def close(self, side: str, t: float) -> tuple[float, Packet]:
        pkt = self._pkt(side, "FA", self.seq[side])
        self.seq[side] += 1
        return t, pkt


def split(data: bytes, n: int) -> list[bytes]:
    """`data` cut into `n` nearly equal pieces."""
    step = -(-len(data) // n)
    return [data[i:i + step] for i in range(0, len(data), step)]


def datagram_list(paths, **opts) -> list:
    """The decoded datagrams of capture files (strict mode), for order and content checks."""
    from probe.counters import Counters
    from probe.sources import CaptureStats, read_files

    if not isinstance(paths, (list, tuple)):
        paths = [paths]
    o = pipeline.ProbeOptions(strict=True, **opts)
    return list(pipeline.datagrams(read_files([str(p) for p in paths], o.filters(), CaptureStats()),
                                   o, Counters()))


# -- signalling scenarios: proxies, forks, retransmissions (RFC 3261 sections 8, 16, 17) ------

class Party:
    """A SIP endpoint (UA or proxy) at ip:port."""

    def __init__(self, ip: str, port: int = 5060):
        self.ip, self.port = ip, port

    @property
    def hostport(self) -> str:
        return f"{_host(self.ip)}:{self.port}"


def via(party: Party, branch: str | None, transport: str = "UDP", params: str = "") -> str:
    """A Via value; branch None leaves the parameter out (an RFC 2543 peer)."""
    return f"SIP/2.0/{transport} {party.hostport}" + (
        f";branch={branch}" if branch is not None else "") + params


def sip_request(method: str, uri: str, vias: list[str], *, from_: str, to: str, call_id: str,
                cseq: int, headers=(), body: bytes = b"") -> bytes:
    """A request with one Via line per element of `vias`, top first."""
    hdrs = [("Via", v) for v in vias] + [
        ("Max-Forwards", "70"), ("From", from_), ("To", to), ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}")] + list(headers)
    return sip_message(f"{method} {uri} SIP/2.0", hdrs, body)


def _split(message: bytes) -> tuple[str, list[str], bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    start, *lines = head.decode().split("\r\n")
    return start, [ln for ln in lines if not ln.lower().startswith("content-")], body


def _name(line: str) -> str:
    return line.split(":", 1)[0].strip().lower()


def sip_response(request: bytes, code: int, reason: str, *, to_tag: str | None = None,
                 headers=(), body: bytes = b"") -> bytes:
    """The response a UAS builds for `request` (RFC 3261 section 8.2.6.2): its Via lines,
    From, To (`to_tag` added when the request's To has none), Call-ID and CSeq."""
    _, lines, _ = _split(request)
    out = []
    for line in lines:
        name = _name(line)
        if name == "to" and to_tag and ";tag=" not in line:
            line += f";tag={to_tag}"
        if name in ("via", "from", "to", "call-id", "cseq"):
            out.append(tuple(line.split(": ", 1)))
    return sip_message(f"SIP/2.0 {code} {reason}", out + list(headers), body)


def relay(message: bytes, *, via: str | None = None, uri: str | None = None,
          received: str | None = None, headers=()) -> bytes:
    """A proxy's copy of `message`. A request (RFC 3261 section 16.6): `via` pushed on top,
    `;received=` added to the Via it arrived with when given, the request-URI replaced by
    `uri`, Max-Forwards decremented, `headers` (Record-Route) put first, as Kamailio does. A
    response (`via` None, section 16.7 step 9): its top Via popped."""
    start, lines, body = _split(message)
    if via is None:
        first = next(i for i, ln in enumerate(lines) if _name(ln) == "via")
        lines = lines[:first] + lines[first + 1:]
        return sip_message(start, [tuple(ln.split(": ", 1)) for ln in lines], body)
    method, ruri, version = start.split(" ")
    out = list(headers) + [("Via", via)]
    for line in lines:
        name, value = line.split(": ", 1)
        if name.lower() == "via" and received:
            value += f";received={received}"
            received = None
        if name.lower() == "max-forwards":
            value = str(int(value) - 1)
        out.append((name, value))
    return sip_message(f"{method} {uri or ruri} {version}", out, body)


def sip_packets(legs, transport: str = "udp") -> list[tuple[float, Packet]]:
    """legs: (time, sender Party, receiver Party, message) as (time, IP packet). UDP between
    the parties' ports; or TCP, one connection per pair of parties opened by the first sender
    from an ephemeral port (handshake just before its first message) and used both ways."""
    if transport == "udp":
        return [(t, udp(s.ip, r.ip, s.port, r.port, msg)) for t, s, r, msg in legs]
    flows: dict[tuple, tuple[TcpFlow, Party]] = {}
    out = []
    for t, s, r, msg in legs:
        key = frozenset(((s.ip, s.port), (r.ip, r.port)))
        if key not in flows:
            flow = TcpFlow(s.ip, r.ip, a_port=41000 + len(flows), b_port=r.port)
            flows[key] = (flow, s)
            out += flow.handshake(t - 0.003)
        flow, client = flows[key]
        out.append(flow.send("a" if s is client else "b", msg, t))
    return out


def write_sip_capture(path, legs, transport: str = "udp") -> Path:
    """The legs as an Ethernet pcap."""
    return write_pcap(path, frames(sorted(sip_packets(legs, transport), key=lambda r: r[0])))


def account(paths, **kw) -> tuple[list, dict, list]:
    """account_files in strict mode: (AccRecords, summary, Calls ended, in end order)."""
    if not isinstance(paths, (list, tuple)):
        paths = [paths]
    records, calls = [], []
    summary = pipeline.account_files([str(p) for p in paths], records.append,
                                     pipeline.ProbeOptions(strict=True),
                                     on_call_end=calls.append, **kw)
    return records, summary, calls
