"""Link layers and tunnels: the same call (SIP, RTP, RTCP) decoded through each of them."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from crafted import (A6_IP, A_IP, B6_IP, B_IP, CALL_RTCP, CALL_RTCP_FRAMES, CALL_RTP_FRAMES,
                     CALL_SIP, CALL_SIP_FRAMES, LINKTYPE, MAC_A, MAC_B, OUTER_A, OUTER_B,
                     call_packets, erspan2_header, frames, gre_header, stats, tunnel, write_pcap)

ADDRS = {"ipv4": (A_IP, B_IP), "ipv6": (A6_IP, B6_IP)}
KEPT = CALL_SIP_FRAMES + CALL_RTCP_FRAMES  # what the built-in filter lets through
ALL = KEPT + CALL_RTP_FRAMES  # what a widened filter (or none) lets through
LINK_ENCAPSULATION = {"vlan": {"vlan": KEPT}, "qinq": {"qinq": KEPT}}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", ["ethernet", "vlan", "qinq", "sll", "sll2", "raw", "null_le",
                                  "null_be", "loop"])
def test_link_type(tmp_path, kind, family):
    """The call decodes on this link type through the built-in filter, which drops RTP in
    libpcap (frames_matched counts SIP and RTCP only); unfiltered, RTP arrives and is ignored."""
    pcap = write_pcap(tmp_path / "call.pcap", frames(call_packets(*ADDRS[family]), kind),
                      LINKTYPE[kind], big=kind == "null_be")
    r = stats(pcap)
    assert r["filter"] == "default"
    assert r["frames_matched"] == KEPT
    assert r["sip"] == CALL_SIP
    assert r["rtcp"] == CALL_RTCP
    assert r["encapsulations"] == LINK_ENCAPSULATION.get(kind, {})
    assert r["counters"] == {}

    off = stats(pcap, bpf_filter="")
    assert off["filter"] == "off"
    assert off["frames_matched"] == ALL
    assert (off["sip"], off["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert off["counters"] == {"classify.not_sip_or_rtcp": CALL_RTP_FRAMES}


@pytest.mark.parametrize("linktype,family", [(228, "ipv4"), (229, "ipv6")])
def test_linktype_ipv4_ipv6(tmp_path, linktype, family):
    """LINKTYPE_IPV4 (228) and LINKTYPE_IPV6 (229): bare IP packets, filtered like raw IP."""
    pcap = write_pcap(tmp_path / "call.pcap", frames(call_packets(*ADDRS[family]), "raw"), linktype)
    r = stats(pcap)
    assert r["frames_matched"] == KEPT
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["counters"] == {}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", ["pppoe", "vlan_pppoe"])
def test_pppoe_session(tmp_path, kind, family):
    """PPPoE session frames (untagged and behind an 802.1Q tag) pass the built-in filter whole,
    as tunnels do, and the call inside is decoded; the 3 RTP frames come through and are ignored."""
    pcap = write_pcap(tmp_path / "pppoe.pcap", frames(call_packets(*ADDRS[family]), kind), 1)
    r = stats(pcap)
    assert r["frames_matched"] == ALL
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["encapsulations"] == ({"vlan": ALL} if kind == "vlan_pppoe" else {})
    assert r["counters"] == {"classify.not_sip_or_rtcp": CALL_RTP_FRAMES}


TUNNEL_NAME = {"gre": "gre", "gre_key_seq": "gre", "gre_teb": "gre", "pptp": "gre",
               "pptp_compressed": "gre", "erspan1": "erspan2", "erspan2": "erspan2",
               "erspan3": "erspan3", "erspan3_platform": "erspan3", "vxlan": "vxlan",
               "gtpu": "gtpu", "gtpu_seq": "gtpu", "gtpu_ext": "gtpu", "ipip": "ipip"}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", list(TUNNEL_NAME))
def test_tunnel(tmp_path, kind, family):
    """SIP and RTCP inside the tunnel are counted and the tunnel is counted once per datagram.
    The filter cannot see inside, so it keeps every tunnelled frame (RTP too): the call's SIP
    still comes through whole. ipip with an IPv6 inner packet is IPv6-in-IPv4 (protocol 41);
    ERSPAN type I (no header) is counted with type II, PPTP's enhanced GRE as gre."""
    packets = [(t, tunnel(kind, p)) for t, p in call_packets(*ADDRS[family])]
    r = stats(write_pcap(tmp_path / "tunnel.pcap", frames(packets), 1))
    assert r["frames_matched"] == ALL
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["encapsulations"] == {TUNNEL_NAME[kind]: ALL}
    assert r["counters"] == {"classify.not_sip_or_rtcp": CALL_RTP_FRAMES}


@pytest.mark.parametrize("outer", ["vlan", "qinq"])
@pytest.mark.parametrize("kind", ["gre", "vxlan", "gtpu_ext"])
def test_tunnel_behind_vlan_tags(tmp_path, kind, outer):
    """The filter's widening for tunnels also works behind one or two VLAN tags."""
    packets = [(t, tunnel(kind, p)) for t, p in call_packets()]
    r = stats(write_pcap(tmp_path / "tagged.pcap", frames(packets, outer), 1))
    assert r["frames_matched"] == ALL
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["encapsulations"] == {outer: ALL, TUNNEL_NAME[kind]: ALL}


def test_erspan_of_a_tagged_trunk(tmp_path):
    """ERSPAN II carrying mirrored 802.1Q frames: both the tunnel and the inner tag are counted."""
    def mirrored(pkt):
        inner = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=42) / pkt)
        return IP(src=OUTER_A, dst=OUTER_B, proto=47) / Raw(
            gre_header(0x88BE, seq=5) + erspan2_header(vlan=42) + inner)

    packets = [(t, mirrored(p)) for t, p in call_packets()]
    r = stats(write_pcap(tmp_path / "erspan.pcap", frames(packets), 1))
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["encapsulations"] == {"erspan2": ALL, "vlan": ALL}


def test_vxlan_inside_gre_inside_qinq(tmp_path):
    """Tunnels nest: QinQ, then GRE, then VXLAN, then the call; every layer is counted."""
    packets = [(t, tunnel("gre", tunnel("vxlan", p))) for t, p in call_packets()]
    r = stats(write_pcap(tmp_path / "nested.pcap", frames(packets, "qinq"), 1))
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["encapsulations"] == {"qinq": ALL, "gre": ALL, "vxlan": ALL}


def test_qinq_vlan_ids_and_tunnel_order(tmp_path):
    """Datagrams carry VLAN ids outermost first and the tunnels crossed, outermost first."""
    import pipeline
    from probe.counters import Counters
    from probe.sources import CaptureStats, read_files

    pkt = call_packets(media=False)[0][1]
    frame = Ether(src=MAC_A, dst=MAC_B, type=0x88A8) / Dot1AD(vlan=200, type=0x8100) \
        / Dot1Q(vlan=100) / tunnel("gre", tunnel("vxlan", pkt))
    pcap = write_pcap(tmp_path / "ids.pcap", [(1.0, bytes(frame))], 1)
    opts = pipeline.ProbeOptions(strict=True)
    [d] = list(pipeline.datagrams(read_files([str(pcap)], opts.filters(), CaptureStats()), opts,
                                  Counters()))
    assert (d.src, d.dst, d.sport, d.dport, d.transport) == (A_IP, B_IP, 5060, 5060, "udp")
    assert d.vlan == (200, 100)
    assert d.tunnel == ("gre", "vxlan")
    assert d.payload.startswith(b"INVITE sip:bob@example.org SIP/2.0\r\n")


@pytest.mark.parametrize("message", [b"INVITE sip:bob@example.org SIP/2.0\r\n",
                                     b"SIP/2.0 200 OK\r\n"])
def test_sip_on_the_vxlan_port_is_not_unwrapped(tmp_path, message):
    """SIP sent to UDP 4789 does not have VXLAN's reserved last header byte at zero, so it is
    read as SIP (found by its start line), not decoded as a tunnel and lost."""
    from scapy.layers.inet import UDP

    body = message + b"Call-ID: vx@example.org\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    pkt = Ether() / IP(src=A_IP, dst=B_IP) / UDP(sport=40000, dport=4789) / Raw(body)
    r = stats(write_pcap(tmp_path / "vx.pcap", [(1700000000.0, bytes(pkt))]))
    assert r["sip"]["messages"] == 1
    assert r["encapsulations"] == {}
