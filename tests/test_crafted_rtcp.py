"""RTCP recognised by its header on any port and counted by packet type; RTP never is."""
from __future__ import annotations

import pytest

from crafted import (A6_IP, A_IP, B6_IP, B_IP, T0, frames, rtcp_app, rtcp_bye, rtcp_rr,
                     rtcp_rr_sdes, rtcp_sdes, rtcp_sr, rtcp_sr_sdes, rtcp_xr, rtp, stats, udp,
                     write_pcap)

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
