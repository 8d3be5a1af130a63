"""Malformed frames and messages are counted under a named reason and never raise; the clean
call captured around them is still counted whole. Runs in strict mode, so an internal error in
any stage fails the test instead of hiding in `internal.decode_error`."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from crafted import (A_IP, B_IP, CALL_RTCP, CALL_RTP_FRAMES, MAC_A, MAC_B, OUTER_A, OUTER_B, T0,
                     call_packets, frames, gre_header, gtpu_header, sip_message, stats, write_pcap)

OPTIONS = sip_message("OPTIONS sip:bob@example.org SIP/2.0", [
    ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKopt1"), ("Max-Forwards", "70"),
    ("From", "<sip:alice@example.com>;tag=opt"), ("To", "<sip:bob@example.org>"),
    ("Call-ID", "options-1@pc33.example.com"), ("CSeq", "1 OPTIONS"), ("Accept", "application/sdp")])


def eth(pkt) -> bytes:
    return bytes(Ether(src=MAC_A, dst=MAC_B) / pkt)


def options_udp(payload: bytes = OPTIONS, **udp) -> IP:
    return IP(src=A_IP, dst=B_IP) / UDP(sport=5060, dport=5060, **udp) / Raw(payload)


def _ihl_4() -> bytes:
    raw = bytearray(bytes(options_udp()))
    raw[0] = 0x44  # version 4, header length 16 bytes
    return eth(IP(bytes(raw)))


def _gtpu_cut_extension() -> bytes:
    # E flag, next extension type 0x85, then an extension claiming 5 words with 1 byte present
    head = bytearray(gtpu_header(0, ext=True))[:12] + b"\x05"
    return eth(IP(src=OUTER_A, dst=OUTER_B) / UDP(sport=2152, dport=2152) / Raw(bytes(head)))


# name: (frame bytes, wire length or None, (matched, counters) with the built-in filter,
#        (matched, counters) with no filter) -- matched counts the malformed frame only.
CASES = {
    "snaplen_cut_inside_ip_header": (
        lambda: eth(options_udp())[:14 + 12], len(eth(options_udp())),
        (0, {}), (1, {"decode.ipv4_truncated": 1})),
    "snaplen_cut_inside_udp_header": (
        lambda: eth(options_udp())[:14 + 20 + 4], len(eth(options_udp())),
        (1, {"decode.ipv4_length_exceeds_capture": 1, "decode.udp_truncated": 1}),
        (1, {"decode.ipv4_length_exceeds_capture": 1, "decode.udp_truncated": 1})),
    "ethernet_header_cut": (
        lambda: eth(options_udp())[:10], None, (0, {}), (1, {"decode.ethernet_truncated": 1})),
    "ipv4_header_length_below_20": (
        _ihl_4, None, (0, {}), (1, {"decode.ipv4_bad_header": 1})),
    "ipv4_total_length_below_header": (
        lambda: eth(IP(bytes(IP(src=A_IP, dst=B_IP, len=12) / UDP(sport=5060, dport=5060) / Raw(OPTIONS)))),
        None, (1, {"decode.ipv4_bad_length": 1}), (1, {"decode.ipv4_bad_length": 1})),
    "tcp_data_offset_beyond_segment": (
        lambda: eth(IP(src=A_IP, dst=B_IP) / TCP(sport=41000, dport=5060, dataofs=15, flags="PA")),
        None, (1, {"decode.tcp_bad_header": 1}), (1, {"decode.tcp_bad_header": 1})),
    "gtpu_extension_cut": (
        _gtpu_cut_extension, None, (1, {"classify.not_sip_or_rtcp": 1}),
        (1, {"classify.not_sip_or_rtcp": 1})),
    "gre_unknown_protocol": (
        lambda: eth(IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(gre_header(0x88B5) + OPTIONS)),
        None, (1, {"decode.gre_unsupported": 1}), (1, {"decode.gre_unsupported": 1})),
    "binary_garbage_on_5060": (
        lambda: eth(options_udp(bytes(range(256)) * 2)), None,
        (1, {"sip.control_char_in_start_line": 1}), (1, {"sip.control_char_in_start_line": 1})),
    "http_on_5060": (
        lambda: eth(options_udp(b"GET /phonebook HTTP/1.1\r\nHost: pbx\r\n\r\n")), None,
        (1, {"sip.bad_request_line": 1}), (1, {"sip.bad_request_line": 1})),
    "nul_in_start_line": (
        lambda: eth(options_udp(OPTIONS.replace(b"example.org SIP", b"example.org\x00 SIP", 1))),
        None, (1, {"sip.control_char_in_start_line": 1}), (1, {"sip.control_char_in_start_line": 1})),
    "status_code_not_three_digits": (
        lambda: eth(options_udp(b"SIP/2.0 20 OK\r\nCall-ID: x\r\n\r\n")), None,
        (1, {"sip.bad_status_line": 1}), (1, {"sip.bad_status_line": 1})),
    "crlf_keepalive": (
        lambda: eth(options_udp(b"\r\n\r\n")), None, (1, {"sip.keepalive": 1}), (1, {"sip.keepalive": 1})),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_frame_counted_call_survives(tmp_path, name):
    """One malformed frame in the middle of a clean call: it is counted under its reason (or
    dropped by the filter when libpcap cannot read its headers) and the call is intact."""
    build, wirelen, (kept, counters), (kept_off, counters_off) = CASES[name]
    bad = build()
    records = frames(call_packets()) + [(T0 + 1.0, bad, wirelen or len(bad))]
    pcap = write_pcap(tmp_path / "bad.pcap", sorted(records, key=lambda r: r[0]), 1)

    r = stats(pcap)
    assert r["frames_matched"] == 9 + kept
    assert r["sip"]["requests"] == {"INVITE": 1, "ACK": 1, "BYE": 1}
    assert r["sip"]["responses"] == {"100": 1, "180": 1, "200": 2}
    assert r["rtcp"] == CALL_RTCP
    assert r["counters"] == counters

    r = stats(pcap, bpf_filter="")
    assert r["frames_matched"] == 12 + kept_off
    assert r["sip"]["messages"] == 7
    off = dict(counters_off)
    off["classify.not_sip_or_rtcp"] = off.get("classify.not_sip_or_rtcp", 0) + CALL_RTP_FRAMES
    assert r["counters"] == off


def test_udp_length_larger_than_payload(tmp_path):
    """A UDP length field beyond the datagram is clamped to the bytes there (counted) and the
    message it carries is still read."""
    pkt = options_udp()
    pkt[UDP].len = len(pkt[UDP]) + 100
    r = stats(write_pcap(tmp_path / "ulen.pcap", [(T0, eth(IP(bytes(pkt))))], 1))
    assert r["sip"]["requests"] == {"OPTIONS": 1}
    assert r["counters"] == {"decode.udp_length_exceeds_payload": 1}


@pytest.mark.parametrize("value", [b"abc", b"-5", b"9999"])
def test_bad_content_length_over_udp(tmp_path, value):
    """A Content-Length that is not a number, negative, or larger than the body does not stop
    the message from being counted over UDP (the datagram bounds it), and nothing raises."""
    payload = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: " + value)
    r = stats(write_pcap(tmp_path / "cl.pcap", [(T0, eth(options_udp(payload)))], 1))
    assert r["sip"]["requests"] == {"OPTIONS": 1}
    assert r["counters"] == {}


def test_gtpu_sequence_flag_ignores_next_type_byte(tmp_path):
    """With only the S flag set the next-extension-type byte means nothing (TS 29.281 5.1):
    a non-zero value there must not be walked as an extension header."""
    inner = call_packets(media=False)[0][1]
    head = bytearray(gtpu_header(len(bytes(inner)), seq=True))
    head[11] = 0x85
    pkt = IP(src=OUTER_A, dst=OUTER_B) / UDP(sport=2152, dport=2152) / Raw(bytes(head) + bytes(inner))
    r = stats(write_pcap(tmp_path / "gtp.pcap", [(T0, eth(pkt))], 1))
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["encapsulations"] == {"gtpu": 1}
    assert r["counters"] == {}
