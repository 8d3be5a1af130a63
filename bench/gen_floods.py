#!/usr/bin/env python3
"""Flood captures: what a mirror port carries when a scanner, a broken phone or an attack runs.

    python bench/gen_floods.py KIND N OUT.pcap [--rate PER_SECOND]

Kinds (every packet unique, nothing ever answered, completed or closed):
  invite     INVITEs with unique Call-IDs (a SIP scanner; the frames /work/shared/tools/
             gen_flood_pcap.py writes, byte for byte, at its rate of 2,000 a second)
  register   REGISTERs from many phones, unique Call-IDs (a registration storm)
  options    OPTIONS pings, unique Call-IDs (a keep-alive or scanner storm)
  fragments  first fragments of UDP datagrams to port 5060 whose rest never comes
  tcp        TCP segments to port 5060, one per connection, each holding the start of a
             SIP message whose end never comes (streams that never close)
  rtcp       RTCP receiver reports from unique SSRCs and ports, for calls nobody set up

Stdlib only; Ethernet/IPv4 pcap, microsecond times from 2026-11-22 (the shared tool's epoch).
"""
from __future__ import annotations

import argparse
import struct

T0 = 1795355000
MAC = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
KINDS = ("invite", "register", "options", "fragments", "tcp", "rtcp")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, frag: int = 0) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, frag, 64,
                     proto, 0, src, dst)
    return ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:] + payload


def _udp(sport: int, dport: int, body: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body


def _src(i: int) -> bytes:
    return bytes([198, 51, 100, i % 250 + 1])


def _invite(i: int) -> bytes:
    body = (f"INVITE sip:{i % 1000}@203.0.113.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.{i % 250 + 1}:5060;branch=z9hG4bK{i:x}\r\n"
            f"From: <sip:scan@198.51.100.9>;tag={i:x}\r\nTo: <sip:{i % 1000}@203.0.113.5>\r\nCall-ID: flood-{i}@x\r\n"
            f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:scan@198.51.100.9>\r\nContent-Length: 0\r\n\r\n").encode()
    return _ipv4(_src(i), bytes([203, 0, 113, 5]), 17, _udp(5060, 5060, body), i)


def _non_invite(method: str, i: int) -> bytes:
    host = f"198.51.100.{i % 250 + 1}"
    uri = "sip:203.0.113.5" if method == "REGISTER" else f"sip:{i % 1000}@203.0.113.5"
    body = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{method[0]}{i:x}\r\n"
            f"From: <sip:{i}@203.0.113.5>;tag={i:x}\r\nTo: <sip:{i}@203.0.113.5>\r\n"
            f"Call-ID: {method.lower()}-{i}@x\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:{i}@{host}:5060>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").encode()
    return _ipv4(_src(i), bytes([203, 0, 113, 5]), 17, _udp(5060, 5060, body), i)


def _fragment(i: int) -> bytes:
    # the first 1,480 bytes of a 3,000-byte datagram (MF set, offset 0); the rest never comes
    udp = _udp(5060, 5060, (b"INVITE sip:x@203.0.113.5 SIP/2.0\r\n" + b"X" * 3000)[:2992])
    return _ipv4(_src(i), bytes([203, 0, 113, 5]), 17, udp[:1480], i, frag=0x2000)


def _tcp(i: int) -> bytes:
    data = (f"INVITE sip:{i}@203.0.113.5 SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.9:5060;"
            f"branch=z9hG4bK{i:x}\r\nCall-ID: tcp-{i}@x\r\n").encode()  # no blank line: never ends
    sport = 1024 + i % 60000
    seg = struct.pack("!HHIIBBHHH", sport, 5060, (i * 7919) & 0xFFFFFFFF, 0, 5 << 4, 0x18, 65535, 0, 0) + data
    return _ipv4(bytes([198, 51, 100, (i // 60000) % 250 + 1]), bytes([203, 0, 113, 5]), 6, seg, i)


def _rtcp(i: int) -> bytes:
    # RR with one report block (RFC 3550 section 6.4.2) + SDES CNAME, from an unknown stream
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0x10000 + i) + struct.pack(
        "!IIIIII", 0x20000 + i, 0, i & 0xFFFF, 40, 0, 0)
    cname = b"\x01\x06flood1\x00\x00\x00\x00"  # item, end, padding to 32 bits
    sdes = struct.pack("!BBHI", 0x81, 202, 4, 0x10000 + i) + cname
    port = 10001 + 2 * (i % 20000)
    return _ipv4(_src(i), bytes([203, 0, 113, 5]), 17, _udp(port, port, rr + sdes), i)


BUILD = {"invite": _invite, "register": lambda i: _non_invite("REGISTER", i),
         "options": lambda i: _non_invite("OPTIONS", i), "fragments": _fragment, "tcp": _tcp,
         "rtcp": _rtcp}


def write(kind: str, n: int, out: str, rate: int = 2000) -> None:
    build = BUILD[kind]
    step = 1_000_000 // rate
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            fr = MAC + build(i)
            us = i * step
            f.write(struct.pack("<IIII", T0 + us // 1_000_000, us % 1_000_000, len(fr), len(fr)))
            f.write(fr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--rate", type=int, default=2000, help="packets per second of packet time")
    a = ap.parse_args()
    write(a.kind, a.n, a.out, a.rate)


if __name__ == "__main__":
    main()
