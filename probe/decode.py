"""Link, tunnel, IP and transport decoding of one frame into `Datagram` records.

Headers are sliced by hand: the few fixed fields needed here cost far less than building
library packet objects (dpkt's full decode runs at a quarter of the speed, see ARCHITECTURE.md).
Every frame that yields nothing is counted under a `decode.*`, `frag.*`, `tcp.*` or `dedup.*`
reason; nothing raises to the caller.
"""
from __future__ import annotations

import struct
from socket import AF_INET, AF_INET6, inet_ntop
from typing import Callable

from .bpf import SIP_PREFIXES
from .counters import Counters
from .dedup import SpanDedup, ipv4_key, ipv6_key
from .defrag import Defragmenter
from .native import load
from .records import META, Datagram, Frame, RawBatch
from .tcp import TcpReassembler

ETH_IPV4, ETH_IPV6, ETH_PPPOE = 0x0800, 0x86DD, 0x8864
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
GRE_TEB, GRE_ERSPAN2, GRE_ERSPAN3, GRE_PPP = 0x6558, 0x88BE, 0x22EB, 0x880B
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
VXLAN_PORT, GTPU_PORT = 4789, 2152
TUNNEL_PORTS = (VXLAN_PORT, GTPU_PORT)
# ethertype, version/IHL, total length, IP ID, flags/fragment offset, protocol, addresses,
# UDP ports, UDP length
_new = tuple.__new__  # builds a Datagram without NamedTuple's Python-level __new__
_ETH_IP4_UDP = struct.Struct("!HBxHHHxBxx4s4sHHH").unpack_from
MAX_DEPTH = 4  # tunnels inside tunnels; deeper is treated as malformed

# Link types (LINKTYPE_* and the DLT_* libpcap reports for files)
LT_NULL, LT_EN10MB, LT_RAW_BSD, LT_RAW_OPENBSD, LT_RAW = 0, 1, 12, 14, 101
LT_LOOP, LT_SLL, LT_SLL2, LT_IPV4, LT_IPV6 = 108, 113, 276, 228, 229
BSD_AF_INET6 = (10, 24, 28, 30)

_fastdecode = load("probe._fastdecode")  # the C twin of decode_batch's fast path, or None


class DecodeBug(Exception):
    """Strict mode only: an unexpected error while decoding a frame (a bug, not bad input)."""


class _Ctx:
    """Where the current packet came from; carried down through tunnels."""

    __slots__ = ("frame", "ts", "vlan", "tunnel", "depth", "ipid")

    def __init__(self, frame: Frame):
        self.frame = frame.frame
        self.ts = frame.ts
        self.vlan: tuple = ()
        self.tunnel: tuple = ()
        self.depth = 0
        self.ipid = None  # IPv4 identification of the innermost packet: part of the dup key


class Decoder:
    """Turns frames into datagrams; owns the fragment, TCP and de-duplication state."""

    def __init__(self, counters: Counters, tcp_framer: Callable, *, tcp_ports: frozenset,
                 dedup_window: float = 0.010, frag_timeout: float = 30.0, strict: bool = False,
                 native: bool = True):
        self.c = counters
        # the C fast path when built and not turned off; native=False forces the pure path
        self.native = _fastdecode if native else None
        self.strict = strict
        self._names: dict[bytes, str] = {}
        self.tcp_ports = tcp_ports
        self.dedup = SpanDedup(dedup_window)
        self.defrag = Defragmenter(counters, timeout=frag_timeout)
        self.tcp = TcpReassembler(tcp_framer, counters)
        self._out: list[Datagram] = []

    def decode_batch(self, batch) -> list[Datagram]:
        """All datagrams of a batch. For a RawBatch the common case (Ethernet, IPv4 without
        options, unfragmented UDP) is decoded inline, without building Frame records: in C
        (probe/_fastdecode.c, same results and shared state) when built, else by the loop below."""
        if not isinstance(batch, RawBatch):
            out: list[Datagram] = []
            for frame in batch:
                out += self._guarded(frame)
            return out
        if self.native is not None:
            return self.native.decode_batch(self, batch.linktype, batch.data, batch.meta,
                                            batch.first)
        out = []
        data, lt, number = batch.data, batch.linktype, batch.first
        fast, size = lt == LT_EN10MB, len(data)
        is_duplicate, c, names = self.dedup.is_duplicate, self.c, self._names
        for sec, usec, off, caplen in META.iter_unpack(batch.meta):
            ts = sec + usec * 1e-6
            # a record reaching past the buffer (bad meta) takes the general path, which slices
            # what is there instead of failing in unpack_from
            if fast and caplen >= 42 and off + caplen <= size:
                # read the headers in place: no copy of the frame on this path
                (etype, vihl, total, ident, fragword, proto, src, dst, sport, dport,
                 ulen) = _ETH_IP4_UDP(data, off + 12)
                if etype == ETH_IPV4 and vihl == 0x45 and proto == 17 and not fragword & 0x3FFF \
                        and 28 <= total <= caplen - 14 and 8 <= ulen <= total - 20 \
                        and sport not in TUNNEL_PORTS and dport not in TUNNEL_PORTS:
                    s = names.get(src) or self._addr4(src)
                    t = names.get(dst) or self._addr4(dst)
                    payload = data[off + 42:off + 34 + ulen]
                    if is_duplicate((s, t, ident, sport, dport, payload), ts):
                        c["dedup.duplicates"] += 1
                    else:
                        out.append(_new(Datagram, (ts, number, s, t, sport, dport, "udp",
                                                   payload, (), ())))
                    number += 1
                    continue
            frame_data = data[off:off + caplen]
            out += self._guarded(Frame(ts, number, lt, frame_data, caplen))
            number += 1
        return out

    def _addr4(self, raw: bytes) -> str:
        """Text form of an IPv4 address, cached: a mirror sees few distinct hosts."""
        text = self._names.get(raw)
        if text is None:
            if len(self._names) > 65536:
                self._names.clear()
            text = self._names[raw] = inet_ntop(AF_INET, raw)
        return text

    def _guarded(self, frame: Frame) -> list[Datagram]:
        """decode(), with a bug on one frame counted (or raised, strict) instead of fatal."""
        try:
            return self.decode(frame)
        except Exception as exc:
            if self.strict:
                raise DecodeBug(f"frame {frame.frame}: {exc!r}") from exc
            self.c["internal.decode_error"] += 1
            return []

    def decode(self, frame: Frame) -> list[Datagram]:
        data = frame.data
        self._out = out = []
        ctx = _Ctx(frame)
        if frame.wirelen > len(data):
            self.c["decode.snaplen_cut"] += 1  # still decoded; layers below see the shortfall
        lt = frame.linktype
        if lt == LT_EN10MB:
            self._ethernet(data, ctx)
        elif lt == LT_SLL:
            if len(data) < 16:
                self.c["decode.sll_truncated"] += 1
            else:
                self._ethertype(int.from_bytes(data[14:16], "big"), data[16:], ctx)
        elif lt == LT_SLL2:
            if len(data) < 20:
                self.c["decode.sll2_truncated"] += 1
            else:
                self._ethertype(int.from_bytes(data[0:2], "big"), data[20:], ctx)
        elif lt in (LT_RAW, LT_RAW_BSD, LT_RAW_OPENBSD, LT_IPV4, LT_IPV6):
            self._ip_any(data, ctx)
        elif lt in (LT_NULL, LT_LOOP):
            self._null(data, ctx, big=(lt == LT_LOOP))
        else:
            self.c["decode.unsupported_linktype"] += 1
        return out

    def flush(self) -> None:
        self.defrag.flush()
        self.tcp.flush()

    # -- link layers -------------------------------------------------------------------

    def _ethernet(self, data: bytes, ctx: _Ctx) -> None:
        if len(data) < 14:
            self.c["decode.ethernet_truncated"] += 1
            return
        self._ethertype(int.from_bytes(data[12:14], "big"), data[14:], ctx)

    def _ethertype(self, etype: int, data: bytes, ctx: _Ctx) -> None:
        while etype in VLAN_TPIDS:
            if len(data) < 4:
                self.c["decode.vlan_truncated"] += 1
                return
            ctx.vlan += (int.from_bytes(data[0:2], "big") & 0x0FFF,)
            etype = int.from_bytes(data[2:4], "big")
            data = data[4:]
        if etype == ETH_IPV4:
            self._ipv4(data, ctx)
        elif etype == ETH_IPV6:
            self._ipv6(data, ctx)
        elif etype == ETH_PPPOE:
            self._ppp(data[6:], ctx)
        else:
            self.c["decode.not_ip"] += 1

    def _null(self, data: bytes, ctx: _Ctx, big: bool) -> None:
        if len(data) < 4:
            self.c["decode.null_truncated"] += 1
            return
        family = int.from_bytes(data[:4], "big" if big else "little")
        if family > 0xFFFF:  # written on a host of the other byte order
            family = int.from_bytes(data[:4], "little" if big else "big")
        if family == 2:
            self._ipv4(data[4:], ctx)
        elif family in BSD_AF_INET6:
            self._ipv6(data[4:], ctx)
        else:
            self.c["decode.not_ip"] += 1

    def _ppp(self, data: bytes, ctx: _Ctx) -> None:
        if data[:2] == b"\xff\x03":
            data = data[2:]
        if not data:
            self.c["decode.ppp_truncated"] += 1
            return
        if data[0] & 1:  # protocol field compression: one byte
            proto, data = data[0], data[1:]
        else:
            proto, data = int.from_bytes(data[:2], "big"), data[2:]
        if proto == PPP_IPV4:
            self._ipv4(data, ctx)
        elif proto == PPP_IPV6:
            self._ipv6(data, ctx)
        else:
            self.c["decode.ppp_not_ip"] += 1

    # -- IP ------------------------------------------------------------------------------

    def _ip_any(self, data: bytes, ctx: _Ctx) -> None:
        if not data:
            self.c["decode.ip_truncated"] += 1
        elif data[0] >> 4 == 4:
            self._ipv4(data, ctx)
        elif data[0] >> 4 == 6:
            self._ipv6(data, ctx)
        else:
            self.c["decode.ip_bad_version"] += 1

    def _ipv4(self, data: bytes, ctx: _Ctx) -> None:
        c = self.c
        if len(data) < 20:
            c["decode.ipv4_truncated"] += 1
            return
        vihl = data[0]
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            c["decode.ipv4_bad_header"] += 1
            return
        total = int.from_bytes(data[2:4], "big")
        if total < ihl:
            c["decode.ipv4_bad_length"] += 1
            return
        if total > len(data):
            # a cut or corrupted length: go on with the bytes there are, as Wireshark does
            c["decode.ipv4_length_exceeds_capture"] += 1
            total = len(data)
        packet = data[:total]  # Ethernet pads short frames; the IP length is the truth
        proto = data[9]
        fragword = int.from_bytes(data[6:8], "big")
        ctx.ipid = (data[4] << 8) | data[5]
        if fragword & 0x3FFF and self.dedup.is_duplicate(ipv4_key(packet), ctx.ts):
            c["dedup.duplicates"] += 1  # a fragment again; whole datagrams are keyed in _udp/_tcp
            return
        payload = packet[ihl:]
        src, dst = data[12:16], data[16:20]
        if fragword & 0x3FFF:
            key = (4, src, dst, proto, data[4:6])
            payload = self.defrag.add(key, (fragword & 0x1FFF) * 8, bool(fragword & 0x2000),
                                      payload, ctx.ts)
            if payload is None:
                return
        self._transport(proto, self._addr4(src), self._addr4(dst), payload, ctx)

    def _ipv6(self, data: bytes, ctx: _Ctx) -> None:
        c = self.c
        if len(data) < 40:
            c["decode.ipv6_truncated"] += 1
            return
        if data[0] >> 4 != 6:
            c["decode.ipv6_bad_header"] += 1
            return
        end = 40 + int.from_bytes(data[4:6], "big")
        if end > len(data):
            c["decode.ipv6_length_exceeds_capture"] += 1
            end = len(data)
        packet = data[:end]
        nh, off = data[6], 40
        ctx.ipid = None
        frag = None
        while nh in (0, 43, 44, 51, 60):
            if off + 8 > end:
                c["decode.ipv6_truncated"] += 1
                return
            if nh == 44:
                word = int.from_bytes(packet[off + 2:off + 4], "big")
                frag = (word & 0xFFF8, bool(word & 1), packet[off + 4:off + 8])
                nh, off = packet[off], off + 8
            elif nh == 51:  # AH counts its length in 4-octet units
                nh, off = packet[off], off + (packet[off + 1] + 2) * 4
            else:
                nh, off = packet[off], off + (packet[off + 1] + 1) * 8
        if off > end:
            c["decode.ipv6_truncated"] += 1
            return
        if frag and self.dedup.is_duplicate(ipv6_key(packet), ctx.ts):
            c["dedup.duplicates"] += 1
            return
        src, dst = packet[8:24], packet[24:40]
        payload = packet[off:]
        if frag is not None:
            if frag[0] == 0 and not frag[1]:
                c["frag.atomic"] += 1  # RFC 6946 atomic fragment: nothing to reassemble
            else:
                payload = self.defrag.add((6, src, dst, frag[2]), frag[0], frag[1], payload, ctx.ts)
                if payload is None:
                    return
        self._transport(nh, inet_ntop(AF_INET6, src), inet_ntop(AF_INET6, dst), payload, ctx)

    def _transport(self, proto: int, src: str, dst: str, payload: bytes, ctx: _Ctx) -> None:
        if proto == 17:
            self._udp(src, dst, payload, ctx)
        elif proto == 6:
            self._tcp(src, dst, payload, ctx)
        elif proto in (4, 41, 47):
            if ctx.depth >= MAX_DEPTH:
                self.c["decode.tunnel_too_deep"] += 1
                return
            ctx.depth += 1
            if proto == 47:
                self._gre(payload, ctx)
            else:
                ctx.tunnel += ("ipip",)
                (self._ipv4 if proto == 4 else self._ipv6)(payload, ctx)
        elif proto in (1, 58):
            self.c["decode.icmp_ignored"] += 1  # quoted SIP in ICMP errors is not traffic
        else:
            self.c["decode.ip_protocol_ignored"] += 1

    # -- tunnels -------------------------------------------------------------------------

    def _gre(self, data: bytes, ctx: _Ctx) -> None:
        """GRE (RFC 2784/2890), enhanced GRE of PPTP (RFC 2637), ERSPAN types II and III."""
        c = self.c
        if len(data) < 4:
            c["decode.gre_truncated"] += 1
            return
        flags = int.from_bytes(data[0:2], "big")
        proto = int.from_bytes(data[2:4], "big")
        version = flags & 7
        if version == 0:
            hlen = 4 + 4 * bool(flags & 0x8000) + 4 * bool(flags & 0x2000) + 4 * bool(flags & 0x1000)
        elif version == 1:
            hlen = 8 + 4 * bool(flags & 0x1000) + 4 * bool(flags & 0x0080)
        else:
            c["decode.gre_bad_version"] += 1
            return
        inner = data[hlen:]
        if proto == GRE_ERSPAN2:
            ctx.tunnel += ("erspan2",)
            # type I (no sequence bit) has no ERSPAN header; type II has 8 bytes
            self._ethernet(inner[8:] if flags & 0x1000 else inner, ctx)
        elif proto == GRE_ERSPAN3:
            ctx.tunnel += ("erspan3",)
            if len(inner) < 12:
                c["decode.erspan_truncated"] += 1
                return
            self._ethernet(inner[20:] if inner[11] & 1 else inner[12:], ctx)
        elif proto == GRE_TEB:
            ctx.tunnel += ("gre",)
            self._ethernet(inner, ctx)
        elif proto == GRE_PPP:
            ctx.tunnel += ("gre",)
            self._ppp(inner, ctx)
        elif proto in (ETH_IPV4, ETH_IPV6):
            ctx.tunnel += ("gre",)
            (self._ipv4 if proto == ETH_IPV4 else self._ipv6)(inner, ctx)
        else:
            c["decode.gre_unsupported"] += 1

    def _vxlan(self, data: bytes, ctx: _Ctx) -> bool:
        """RFC 7348: 8-byte header with the I flag, then an Ethernet frame. The GBP extension
        (group policy in bytes 2-3) and GPE (P flag, next protocol in byte 3) are read too."""
        # the last header byte is reserved (zero) in every variant: SIP or RTP sent to port 4789
        # fails this ("INVITE s", "SIP/2.0 "), so only real VXLAN is unwrapped
        if len(data) < 8 + 20 or not data[0] & 0x08 or data[7] != 0:
            return False
        inner = data[8:]
        ctx.depth += 1
        ctx.tunnel += ("vxlan",)
        if data[0] & 0x04 and data[3] in (1, 2):  # GPE carrying IP directly
            (self._ipv4 if data[3] == 1 else self._ipv6)(inner, ctx)
        else:
            self._ethernet(inner, ctx)
        return True

    def _gtpu(self, data: bytes, ctx: _Ctx) -> bool:
        """3GPP TS 29.281 G-PDU: version 1, then the user's IP packet."""
        if len(data) < 8 or data[0] >> 5 != 1 or not data[0] & 0x10 or data[1] != 0xFF:
            return False
        off = 8
        if data[0] & 0x07:  # sequence, N-PDU or extension flag: 4 more bytes
            off = 12
            # next-extension type counts only with the E flag (TS 29.281 section 5.1)
            ext = data[11] if data[0] & 0x04 and len(data) >= 12 else 0
            while ext and off < len(data):
                words = data[off]
                off += words * 4
                if not words or off > len(data):  # a cut extension raised IndexError here
                    return False
                ext = data[off - 1]
        ctx.depth += 1
        ctx.tunnel += ("gtpu",)
        self._ip_any(data[off:], ctx)
        return True

    # -- transport -------------------------------------------------------------------------

    def _udp(self, src: str, dst: str, seg: bytes, ctx: _Ctx) -> None:
        c = self.c
        if len(seg) < 8:
            c["decode.udp_truncated"] += 1
            return
        sport = (seg[0] << 8) | seg[1]
        dport = (seg[2] << 8) | seg[3]
        ulen = (seg[4] << 8) | seg[5]
        if ulen < 8:
            c["decode.udp_bad_length"] += 1
            return
        if ulen > len(seg):
            c["decode.udp_length_exceeds_payload"] += 1
            ulen = len(seg)
        payload = seg[8:ulen]
        if ctx.depth < MAX_DEPTH:
            if VXLAN_PORT in (sport, dport) and self._vxlan(payload, ctx):
                return
            if GTPU_PORT in (sport, dport) and self._gtpu(payload, ctx):
                return
        if self.dedup.is_duplicate((src, dst, ctx.ipid, sport, dport, payload), ctx.ts):
            c["dedup.duplicates"] += 1
            return
        self._out.append(Datagram(ctx.ts, ctx.frame, src, dst, sport, dport, "udp", payload,
                                  ctx.vlan, ctx.tunnel))

    def _tcp(self, src: str, dst: str, seg: bytes, ctx: _Ctx) -> None:
        c = self.c
        if len(seg) < 20:
            c["decode.tcp_truncated"] += 1
            return
        sport = (seg[0] << 8) | seg[1]
        dport = (seg[2] << 8) | seg[3]
        hlen = (seg[12] >> 4) * 4
        if hlen < 20 or hlen > len(seg):
            c["decode.tcp_bad_header"] += 1
            return
        key = (src, sport, dst, dport)
        payload = seg[hlen:]
        if self.dedup.is_duplicate((src, dst, ctx.ipid, seg), ctx.ts):
            c["dedup.duplicates"] += 1  # the whole segment (ports, sequence, flags) seen again
            return
        if sport not in self.tcp_ports and dport not in self.tcp_ports \
                and payload[:4] not in SIP_PREFIXES and not self.tcp.tracks(key):
            c["decode.tcp_not_sip"] += 1  # other ports: a stream counts once it opens like SIP
            return
        seq = int.from_bytes(seg[4:8], "big")
        for msg in self.tcp.feed(key, seq, seg[13], payload, ctx.ts):
            self._out.append(Datagram(ctx.ts, ctx.frame, src, dst, sport, dport, "tcp", msg,
                                      ctx.vlan, ctx.tunnel))
