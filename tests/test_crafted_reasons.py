"""One crafted capture per skip reason: a good OPTIONS first, then the frame that triggers the
reason. The reason is counted exactly and the OPTIONS before it is still counted. Filters are
off unless the case is about them, since libpcap would drop most of these frames itself."""
from __future__ import annotations

import gzip
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Raw

from crafted import (A6_IP, A_IP, B6_IP, B_IP, MAC_A, MAC_B, OUTER_A, OUTER_B, T0, TcpFlow,
                     gre_header, link, rtcp_sr, sip_message, stats, write_pcap)


def options(n: int, transport: str = "UDP") -> bytes:
    return sip_message("OPTIONS sip:bob@example.org SIP/2.0", [
        ("Via", f"SIP/2.0/{transport} 192.0.2.10:5060;branch=z9hG4bKopt{n}"),
        ("From", f"<sip:alice@example.com>;tag=o{n}"), ("To", "<sip:bob@example.org>"),
        ("Call-ID", f"options-{n}@pc33.example.com"), ("CSeq", "1 OPTIONS")])


def udp4(payload: bytes, sport=5060, dport=5060, **ipkw) -> IP:
    return IP(src=A_IP, dst=B_IP, **ipkw) / UDP(sport=sport, dport=dport) / Raw(payload)


def eth(pkt) -> bytes:
    return bytes(Ether(src=MAC_A, dst=MAC_B) / pkt) if not isinstance(pkt, bytes) else pkt


def _nested_ipip(depth: int) -> IP:
    pkt = udp4(options(2))
    for _ in range(depth):
        pkt = IP(src=OUTER_A, dst=OUTER_B, proto=4) / pkt
    return pkt


def _ipv6_len_beyond() -> bytes:
    raw = bytearray(bytes(IPv6(src=A6_IP, dst=B6_IP) / UDP(sport=5060, dport=5060) / Raw(options(2))))
    raw[4:6] = (len(raw) - 40 + 100).to_bytes(2, "big")  # payload length 100 bytes too long
    return bytes(Ether(src=MAC_A, dst=MAC_B, type=0x86DD)) + bytes(raw)


def _frag_invalid() -> bytes:
    # more-fragments set on a 13-byte fragment: fragment data must be a multiple of 8
    return eth(IP(bytes(IP(src=A_IP, dst=B_IP, proto=17, flags="MF", id=9) / Raw(b"x" * 13))))


# name: (linktype, frames after the good OPTIONS, expected counters, OPTIONS counted in total)
CASES = {
    "decode.not_ip": (1, [eth(ARP(psrc=A_IP, pdst=B_IP))], {"decode.not_ip": 1}, 1),
    "decode.vlan_truncated": (1, [bytes(Ether(src=MAC_A, dst=MAC_B, type=0x8100)) + b"\x00\x64"],
                              {"decode.vlan_truncated": 1}, 1),
    "decode.ppp_not_ip": (1, [eth(PPPoE(sessionid=1) / PPP(proto=0xC021) / Raw(b"\x01\x01\x00\x04"))],
                          {"decode.ppp_not_ip": 1}, 1),
    "decode.ppp_truncated": (1, [bytes(Ether(src=MAC_A, dst=MAC_B, type=0x8864)) + b"\x11\x00\x00\x01\x00\x00"],
                             {"decode.ppp_truncated": 1}, 1),
    "decode.sll_truncated": (113, [b"\x00" * 10], {"decode.sll_truncated": 1}, 1),
    "decode.sll2_truncated": (276, [b"\x08\x00" + b"\x00" * 10], {"decode.sll2_truncated": 1}, 1),
    "decode.null_truncated": (0, [b"\x02\x00"], {"decode.null_truncated": 1}, 1),
    "decode.ip_truncated": (101, [b""], {"decode.ip_truncated": 1}, 1),
    "decode.ip_bad_version": (101, [b"\x50" + b"\x00" * 39], {"decode.ip_bad_version": 1}, 1),
    "decode.ipv6_truncated": (1, [bytes(Ether(src=MAC_A, dst=MAC_B, type=0x86DD)) + b"\x60" + b"\x00" * 19],
                              {"decode.ipv6_truncated": 1}, 1),
    "decode.ipv6_bad_header": (1, [bytes(Ether(src=MAC_A, dst=MAC_B, type=0x86DD)) + bytes(udp4(options(2)))],
                               {"decode.ipv6_bad_header": 1}, 1),
    "decode.ipv6_length_exceeds_capture": (1, [_ipv6_len_beyond()],
                                           {"decode.ipv6_length_exceeds_capture": 1}, 2),
    "decode.icmp_ignored": (1, [eth(IP(src=B_IP, dst=A_IP) / ICMP(type=3, code=3) / udp4(options(2)))],
                            {"decode.icmp_ignored": 1}, 1),
    "decode.ip_protocol_ignored": (1, [eth(IP(src=A_IP, dst=B_IP, proto=132) / Raw(b"\x13\xc4\x13\xc4" + b"\x00" * 8))],
                                   {"decode.ip_protocol_ignored": 1}, 1),
    "decode.tcp_truncated": (1, [eth(IP(src=A_IP, dst=B_IP, proto=6) / Raw(b"\x13\xc4" * 5))],
                             {"decode.tcp_truncated": 1}, 1),
    "decode.tcp_not_sip": (1, [eth(IP(src=A_IP, dst=B_IP) / TCP(sport=41000, dport=80, flags="PA")
                                   / Raw(b"GET / HTTP/1.1\r\nHost: pbx\r\n\r\n"))],
                           {"decode.tcp_not_sip": 1}, 1),
    "decode.udp_bad_length": (1, [eth(IP(bytes(IP(src=A_IP, dst=B_IP) / UDP(sport=5060, dport=5060, len=4)
                                                / Raw(options(2)))))],
                              {"decode.udp_bad_length": 1}, 1),
    "decode.gre_truncated": (1, [eth(IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(b"\x00\x00"))],
                             {"decode.gre_truncated": 1}, 1),
    "decode.gre_bad_version": (1, [eth(IP(src=OUTER_A, dst=OUTER_B, proto=47)
                                       / Raw(struct.pack("!HH", 2, 0x0800) + bytes(udp4(options(2)))))],
                               {"decode.gre_bad_version": 1}, 1),
    "decode.erspan_truncated": (1, [eth(IP(src=OUTER_A, dst=OUTER_B, proto=47)
                                        / Raw(gre_header(0x22EB, seq=1) + b"\x20\x00\x00\x07\x00\x00"))],
                                {"decode.erspan_truncated": 1}, 1),
    "decode.tunnel_too_deep": (1, [eth(_nested_ipip(5))], {"decode.tunnel_too_deep": 1}, 1),
    "frag.atomic": (1, [eth(IPv6(src=A6_IP, dst=B6_IP) / IPv6ExtHdrFragment(offset=0, m=0, id=5)
                            / UDP(sport=5060, dport=5060) / Raw(options(2)))],
                    {"frag.atomic": 1}, 2),
    "frag.invalid": (1, [_frag_invalid()], {"frag.fragments": 1, "frag.invalid": 1}, 1),
    "rtcp.trailing_bytes": (1, [eth(udp4(rtcp_sr() + b"\x00\x01\x02", sport=40001, dport=50001))],
                            {"rtcp.trailing_bytes": 1}, 1),
    "sip.bad_start_line": (1, [eth(udp4(b"HELLO\r\n\r\n"))], {"sip.bad_start_line": 1}, 1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_skip_reason(tmp_path, name):
    """The reason is counted once, exactly, and the message before it survives."""
    lt, bad, counters, n_options = CASES[name]
    good = {1: "ethernet", 113: "sll", 276: "sll2", 0: "null_le", 101: "raw"}[lt]
    records = [(T0, link(good, udp4(options(1))))] + [(T0 + 1 + i, f) for i, f in enumerate(bad)]
    r = stats(write_pcap(tmp_path / "reason.pcap", records, lt), bpf_filter="")
    assert r["sip"]["requests"] == {"OPTIONS": n_options}
    assert r["counters"] == counters


def test_snaplen_cut_counted_where_the_wire_length_is_known(tmp_path):
    """A frame cut by the snap length inside the SIP text, read through the scapy path (gzip)
    which keeps the wire length: decode.snaplen_cut, the IP and UDP lengths clamped to what was
    captured, and the message still counted from its intact start line."""
    frame = eth(udp4(options(1)))
    records = [(T0, frame[:120], len(frame))]
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(gzip.compress(write_pcap(tmp_path / "cut.pcap", records, 1, snaplen=120).read_bytes()))
    r = stats(path)
    assert r["sip"]["requests"] == {"OPTIONS": 1}
    assert r["counters"] == {"decode.snaplen_cut": 1, "decode.ipv4_length_exceeds_capture": 1,
                             "decode.udp_length_exceeds_payload": 1}


def test_frag_evicted_when_too_many_pending(tmp_path):
    """More incomplete datagrams than the defragmenter holds (4096): the oldest is evicted
    (frag.evicted) and the rest expire at the end; a whole datagram is still read."""
    template = bytearray(eth(IP(src=A_IP, dst=B_IP, proto=17, flags="MF", id=0) / Raw(b"x" * 16)))
    first_halves = []
    for i in range(4097):  # patch the IP ID (the decoder does not check header checksums)
        template[18:20] = i.to_bytes(2, "big")
        first_halves.append((T0 + i * 1e-5, bytes(template)))
    records = first_halves + [(T0 + 1, eth(udp4(options(1))))]
    r = stats(write_pcap(tmp_path / "many.pcap", records, 1))
    assert r["sip"]["requests"] == {"OPTIONS": 1}
    assert r["counters"] == {"frag.fragments": 4097, "frag.evicted": 1, "frag.expired": 4096}


def test_tcp_stream_expired_when_idle(tmp_path):
    """A TCP stream idle for more than 600 s of packet time is forgotten (tcp.stream_expired)
    when a later segment triggers the sweep; messages on both streams are counted."""
    one, two = TcpFlow(a_port=41000), TcpFlow(a_port=41001)
    records = [one.send("a", options(1, "TCP"), T0), two.send("a", options(2, "TCP"), T0 + 700)]
    r = stats(write_pcap(tmp_path / "idle.pcap", [(t, eth(p)) for t, p in records], 1))
    assert r["sip"]["requests"] == {"OPTIONS": 2}
    assert r["counters"] == {"tcp.streams": 2, "tcp.stream_expired": 1}


def test_sip_body_too_large_over_tcp(tmp_path):
    """A Content-Length over 4 MiB is not waited for: sip.body_too_large, the buffer dropped,
    and the next message on the stream is read."""
    flow = TcpFlow()
    huge = options(1, "TCP").replace(b"Content-Length: 0", b"Content-Length: 5000000")
    records = [flow.send("a", huge, T0), flow.send("a", options(2, "TCP"), T0 + 1)]
    r = stats(write_pcap(tmp_path / "huge.pcap", [(t, eth(p)) for t, p in records], 1))
    assert r["sip"]["requests"] == {"OPTIONS": 1}
    assert r["counters"] == {"tcp.streams": 1, "sip.body_too_large": 1}


def test_sip_header_too_long_over_tcp(tmp_path):
    """More than 64 KiB of header lines without a blank line: sip.header_too_long, dropped,
    and the stream recovers at the next message."""
    flow = TcpFlow()
    head = b"OPTIONS sip:bob@example.org SIP/2.0\r\n" + b"X-Padding: " + b"a" * 100 + b"\r\n"
    head += b"X-Padding: " + b"a" * 100 + b"\r\n"
    junk = head + (b"X-Padding: " + b"b" * 100 + b"\r\n") * 620
    records = [flow.send("a", junk[:40000], T0), flow.send("a", junk[40000:], T0 + 0.001),
               flow.send("a", options(2, "TCP"), T0 + 1)]
    r = stats(write_pcap(tmp_path / "long.pcap", [(t, eth(p)) for t, p in records], 1))
    assert r["sip"]["requests"] == {"OPTIONS": 1}
    assert r["counters"] == {"tcp.streams": 1, "sip.header_too_long": 1}
