"""RTCP recognised by its header on any port and counted by packet type; RTP never is."""
from __future__ import annotations

import random
import struct

import pytest

from crafted import (A6_IP, A_IP, B6_IP, B_IP, T0, frames, rtcp_app, rtcp_bye, rtcp_rr,
                     rtcp_rr_sdes, rtcp_sdes, rtcp_sr, rtcp_sr_sdes, rtcp_xr, rtp, stats, udp,
                     write_pcap)
from rtcp_mos.rtcp import (App, Bye, Report, ReportBlock, SdesChunk, SenderInfo, Xr,
                           parse_compound)

RTP_A, RTP_B = 31234, 47002  # an even RTP port each side; RTCP on the odd port above


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_rtcp_types_on_an_odd_port(tmp_path, family):
    """Compounds of every kind between two odd ports are counted per packet type (SR, RR,
    SDES, BYE, APP and XR with PT 207); RTP on the even ports, marker bit and PT 0 or not,
    is dropped by the filter and counts as nothing."""
    a, b = (A_IP, B_IP) if family == "ipv4" else (A6_IP, B6_IP)
    s1, s2 = 0x11111111, 0x22222222
    rtcp = [rtcp_sr_sdes(s1), rtcp_rr_sdes(s2), rtcp_sr(s1) + rtcp_sdes(s1, b"a@x") + rtcp_bye(s1),
            rtcp_rr(s2) + rtcp_sdes(s2, b"b@y") + rtcp_app(s2), rtcp_rr(s2) + rtcp_xr(s2)]
    packets = [(T0 + i, udp(a, b, RTP_A + 1, RTP_B + 1, c)) for i, c in enumerate(rtcp)]
    packets += [(T0 + 10 + i * 0.02, udp(a, b, RTP_A, RTP_B, rtp(i, marker=i == 0)))
                for i in range(5)]
    r = stats(write_pcap(tmp_path / "rtcp.pcap", frames(sorted(packets, key=lambda p: p[0])), 1))
    assert r["frames_matched"] == 5
    assert r["rtcp"] == {"datagrams": 5, "packets": {"APP": 1, "BYE": 1, "RR": 3, "SDES": 4,
                                                     "SR": 2, "XR": 1}}
    assert r["sip"]["messages"] == 0
    assert r["counters"] == {}


def test_rtp_with_marker_and_pcmu_is_not_rtcp(tmp_path):
    """Unfiltered, RTP with the marker bit and PT 0 (second byte 0x80) reaches the classifier
    and is neither SIP nor RTCP."""
    packets = [(T0 + i * 0.02, udp(A_IP, B_IP, RTP_A, RTP_B, rtp(i, marker=True))) for i in range(3)]
    r = stats(write_pcap(tmp_path / "rtp.pcap", frames(packets), 1), bpf_filter="")
    assert r["frames_matched"] == 3
    assert r["rtcp"] == {"datagrams": 0, "packets": {}}
    assert r["counters"] == {"classify.not_sip_or_rtcp": 3}


def test_rtcp_mux_on_the_rtp_port(tmp_path):
    """RTCP multiplexed on the RTP port (RFC 5761) is told apart from RTP by its packet type."""
    packets = [(T0, udp(A_IP, B_IP, RTP_A, RTP_B, rtp(1))),
               (T0 + 0.02, udp(A_IP, B_IP, RTP_A, RTP_B, rtcp_sr_sdes())),
               (T0 + 0.04, udp(A_IP, B_IP, RTP_A, RTP_B, rtp(2, marker=False)))]
    r = stats(write_pcap(tmp_path / "mux.pcap", frames(packets), 1))
    assert r["frames_matched"] == 1
    assert r["rtcp"] == {"datagrams": 1, "packets": {"SDES": 1, "SR": 1}}


def test_rtcp_bad_length(tmp_path):
    """A length word reaching past the datagram stops the walk: the packets before it are
    counted and rtcp.bad_length once; a first packet that is already bad counts nothing."""
    sdes = bytearray(rtcp_sdes(0x11111111, b"alice@192.0.2.10"))
    sdes[3] += 10  # ten words more than there are
    first_bad = bytearray(rtcp_rr_sdes())
    first_bad[2:4] = (200).to_bytes(2, "big")
    packets = [(T0, udp(A_IP, B_IP, RTP_A + 1, RTP_B + 1, rtcp_sr() + bytes(sdes))),
               (T0 + 1, udp(B_IP, A_IP, RTP_B + 1, RTP_A + 1, bytes(first_bad)))]
    r = stats(write_pcap(tmp_path / "bad.pcap", frames(packets), 1))
    assert r["rtcp"] == {"datagrams": 2, "packets": {"SR": 1}}
    assert r["counters"] == {"rtcp.bad_length": 2}


# -- parse_compound on crafted bytes (RFC 3550 appendix A.2 checks, RFC 5506, RFC 3711) --------

def _header(count: int, pt: int, words: int, padding: bool = False) -> bytes:
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, pt, words)


def test_parse_sr_sdes_fields():
    """The builders' SR + SDES: every field where RFC 3550 section 6.4.1 puts it."""
    c = parse_compound(rtcp_sr_sdes(0x11111111))
    assert c.anomalies == () and not c.srtcp
    (sr,) = c.reports
    assert sr == Report("SR", 0x11111111, SenderInfo(0xE8000000, 0x40000000, 40000, 250, 40000),
                        (ReportBlock(0x22222222, 2, 3, 0x0001_0200, 37, 0x1234_5678, 0x8000),))
    assert sr.sender.ntp_seconds == 0xE8000000 + 0.25
    assert sr.sender.ntp_middle == 0x0000_4000  # low 16 bits of MSW, high 16 of LSW
    assert c.sdes == (SdesChunk(0x11111111, "alice@192.0.2.10", ((1, b"alice@192.0.2.10"),)),)


def test_parse_bye_app_xr():
    c = parse_compound(rtcp_rr(7) + rtcp_bye(7) + rtcp_app(7) + rtcp_xr(7))
    assert c.anomalies == ()
    assert c.byes == (Bye((7,), None),)
    assert c.apps == (App(0, 7, "TEST", 4),)
    assert c.xrs == (Xr(7, (), (4,)),)
    reason = _header(1, 203, 3) + struct.pack("!I", 9) + b"\x04gone\x00\x00\x00"
    assert parse_compound(rtcp_rr(9) + reason).byes == (Bye((9,), "gone"),)


def test_negative_cumulative_loss():
    """0xFFFFFF is -1 (duplicates outnumber losses), read as signed 24 bits (dpkt reads it
    unsigned); fraction lost stays the raw 8 bits."""
    rr = _header(1, 201, 7) + struct.pack("!7I", 5, 6, (0x80 << 24) | 0xFFFFFF, 0x10000, 0, 0, 0)
    (block,) = parse_compound(rr).reports[0].blocks
    assert (block.fraction_lost, block.cumulative_lost) == (0x80, -1)


def test_count_larger_than_blocks_present():
    """RC = 3 but the length holds one block: the block is kept, the packet counted."""
    rr = bytearray(rtcp_rr(1, 2))
    rr[0] = 0x83
    c = parse_compound(bytes(rr) + rtcp_sdes(1, b"x"))
    assert [b.source_ssrc for b in c.reports[0].blocks] == [2]
    assert c.anomalies == ("rtcp.truncated_packet",)
    assert c.sdes[0].cname == "x"  # the walk goes on by the length word


def test_truncated_block_and_bad_length():
    """A datagram cut inside a report block: the length word runs past the end."""
    sr = rtcp_sr()
    c = parse_compound(sr[:40])
    assert (c.reports, c.anomalies) == ((), ("rtcp.bad_length",))
    c = parse_compound(rtcp_rr() + sr[:40])
    assert len(c.reports) == 1 and c.anomalies == ("rtcp.bad_length",)


def test_padding():
    """Padding on the last packet is honoured (its last byte counts it); on an earlier packet
    it breaks A.2 (counted, walked by the length anyway); a count of 0 is bad padding."""
    padded_bye = _header(1, 203, 2, padding=True) + struct.pack("!I", 7) + b"\x00\x00\x00\x04"
    c = parse_compound(rtcp_rr(7) + padded_bye)
    assert c.byes == (Bye((7,), None),) and c.anomalies == ()
    c = parse_compound(rtcp_rr(7) + padded_bye + rtcp_sdes(7, b"c"))
    assert c.anomalies == ("rtcp.padding_not_last",) and c.sdes[0].cname == "c"
    zero = padded_bye[:-1] + b"\x00"
    assert parse_compound(rtcp_rr(7) + zero).anomalies == ("rtcp.bad_padding",)


def test_reduced_size_and_feedback():
    """RFC 5506: a compound need not start with SR/RR; RTPFB/PSFB (RFC 4585) are skipped."""
    nack = _header(1, 205, 3) + struct.pack("!IIHH", 7, 8, 100, 0)
    pli = _header(1, 206, 2) + struct.pack("!II", 7, 8)
    c = parse_compound(nack + pli)
    assert c.anomalies == ("rtcp.reduced_size",) and c.reports == ()
    c = parse_compound(rtcp_sdes(7, b"c") + rtcp_rr(7))
    assert c.anomalies == ("rtcp.reduced_size",) and c.reports[0].reporter_ssrc == 7


def test_version_type_and_trailing():
    assert parse_compound(b"\x40" + rtcp_rr()[1:]).anomalies == ("rtcp.bad_version",)
    assert parse_compound(rtcp_rr() + b"\x00\x01\x02").anomalies == ("rtcp.trailing_bytes",)
    unknown = _header(0, 195, 1) + b"\x00" * 4  # IJ (RFC 5450): not parsed, skipped
    assert parse_compound(rtcp_rr() + unknown).anomalies == ("rtcp.unknown_type",)
    assert parse_compound(b"").anomalies == ()  # nothing: the classifier never passes it


def test_xr_bad_blocks():
    voip_short = struct.pack("!BBH", 7, 0, 2) + b"\x00" * 8  # BT=7 must be 8 words long
    xr = _header(0, 207, 4) + struct.pack("!I", 1) + voip_short
    c = parse_compound(rtcp_rr() + xr)
    assert c.xrs == (Xr(1, (), ()),) and c.anomalies == ("rtcp.xr_bad_block",)
    overrun = _header(0, 207, 2) + struct.pack("!I", 1) + struct.pack("!BBH", 4, 0, 9)
    assert parse_compound(rtcp_rr() + overrun).anomalies == ("rtcp.xr_bad_block",)


def _srtcp(clear: bytes, rest_len: int, index: int, e: bool = True, tag: int = 10) -> bytes:
    rng = random.Random(index)
    body = bytes(rng.randrange(256) for _ in range(rest_len)) if e else b""
    return clear + body + struct.pack("!I", (0x80000000 if e else 0) | index) + bytes(tag)


def test_srtcp_recognised():
    """RFC 3711 section 3.4: the first 8 bytes clear, then ciphertext, E|index and the tag.
    Encrypted: only the header and reporter SSRC come back. Authenticated only (E=0): the
    packets are clear and parsed."""
    sr = rtcp_sr(0x0A0B0C0D)
    for tag in (10, 4):
        c = parse_compound(_srtcp(sr[:8], len(sr) - 8 + 24, 5, tag=tag))
        assert c.srtcp and c.anomalies == ("rtcp.srtcp",)
        assert c.reports == (Report("SR", 0x0A0B0C0D, None, ()),)
    clear = rtcp_rr_sdes()
    c = parse_compound(clear + struct.pack("!I", 3) + bytes(10))
    assert c.srtcp and c.anomalies == ("rtcp.srtcp",)
    assert c.reports == parse_compound(clear).reports and c.sdes[0].cname
    # plain compound with junk after it: not SRTCP
    assert not parse_compound(rtcp_rr() + b"\x12" * 14).srtcp


def test_never_raises():
    """Random bytes, and every truncation and many byte flips of real compounds: a record
    back each time, anomalies only from the documented counter names."""
    names = {"rtcp.bad_version", "rtcp.bad_length", "rtcp.trailing_bytes", "rtcp.unknown_type",
             "rtcp.reduced_size", "rtcp.padding_not_last", "rtcp.bad_padding",
             "rtcp.truncated_packet", "rtcp.xr_bad_block", "rtcp.srtcp"}
    rng = random.Random(20261206)
    seeds = [rtcp_sr_sdes(), rtcp_rr(2) + rtcp_sdes(2, b"b") + rtcp_bye(2) + rtcp_app(2),
             rtcp_rr(2) + rtcp_xr(2)]
    cases = [bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(2000)]
    for seed in seeds:
        cases += [seed[:n] for n in range(len(seed))]
        for _ in range(2000):
            b = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            cases.append(bytes(b))
    for case in cases:
        c = parse_compound(case)
        assert set(c.anomalies) <= names, case.hex()


def test_every_rtcp_counter_documented():
    """Each `rtcp.*` name the parser can note is in docs/counters.md."""
    import re
    from pathlib import Path

    import rtcp_mos.rtcp as module
    source = Path(module.__file__).with_name("rtcp.py")  # not the .so it may load from
    names = set(re.findall(r'"(rtcp\.[a-z_]+)"', source.read_text()))
    assert len(names) >= 10
    doc = (Path(__file__).resolve().parents[1] / "docs" / "counters.md").read_text()
    assert {n for n in names if f"`{n}`" not in doc} == set()
