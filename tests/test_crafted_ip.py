"""IPv6 extension headers, IPv4/IPv6 fragment reassembly and SPAN duplicate suppression."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting, PadN, fragment6)
from scapy.layers.l2 import Ether

from crafted import (A6_IP, A_IP, B6_IP, B_IP, CALL_RTCP, CALL_RTP_FRAMES, CALL_SIP, MAC_A,
                     MAC_B, T0, call_packets, frames, link, sip_expected, stats, write_pcap)

# -- IPv6 extension headers --------------------------------------------------------------------


EXTENSIONS = {  # each longer than the 8-byte minimum, so its length field must be read
    "hop_by_hop": lambda: IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 12)]),
    "destination_options": lambda: IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 20)]),
    "routing": lambda: IPv6ExtHdrRouting(addresses=["2001:db8:ffff::1"]),
}


@pytest.mark.parametrize("ext", list(EXTENSIONS))
def test_ipv6_extension_header_before_udp(tmp_path, ext):
    """An extension header between the IPv6 header and UDP is skipped by its length; the filter
    keeps such packets whole (it reads fixed offsets), so RTP behind one arrives and is ignored."""
    packets = [(t, IPv6(src=p.src, dst=p.dst) / EXTENSIONS[ext]() / p[UDP])
               for t, p in call_packets(A6_IP, B6_IP)]
    assert len(bytes(packets[0][1][1])) - len(bytes(packets[0][1][UDP])) > 8
    r = stats(write_pcap(tmp_path / "ext.pcap", frames(packets), 1))
    assert r["frames_matched"] == 12
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["counters"] == {"classify.not_sip_or_rtcp": CALL_RTP_FRAMES}


def test_ipv6_two_extension_headers(tmp_path):
    """Hop-by-hop then destination options: the chain is walked, not just one header."""
    packets = [(t, IPv6(src=p.src, dst=p.dst) / EXTENSIONS["hop_by_hop"]()
                / EXTENSIONS["destination_options"]() / p[UDP])
               for t, p in call_packets(A6_IP, B6_IP, media=False)]
    r = stats(write_pcap(tmp_path / "ext2.pcap", frames(packets), 1))
    assert r["sip"] == CALL_SIP
    assert r["counters"] == {}


# -- fragments ---------------------------------------------------------------------------------

def _fragmented_call(family: str, order: str, fragsize: int = 256):
    """The call with INVITE and 200 OK (the two messages with SDP) fragmented, in `order`.

    Returns (timed packets, fragments per fragmented message).
    """
    a, b = (A_IP, B_IP) if family == "ipv4" else (A6_IP, B6_IP)
    out, counts = [], []
    for t, p in call_packets(a, b):
        if b"\r\nv=0\r\n" not in bytes(p[UDP].payload):  # only the two messages with SDP
            out.append((t, p))
            continue
        if family == "ipv4":
            frags = fragment(IP(src=p[IP].src, dst=p[IP].dst, id=0x4242) / p[UDP], fragsize=fragsize)
        else:
            frags = fragment6(IPv6(src=p.src, dst=p.dst) / IPv6ExtHdrFragment(id=0xABCDEF) / p[UDP],
                              fragsize + 48)
        assert len(frags) >= 3
        counts.append(len(frags))
        if order == "reversed":
            frags = frags[::-1]
        elif order == "shuffled":
            frags = frags[1:] + frags[:1]
        elif order == "incomplete":
            frags = [f for i, f in enumerate(frags) if i != 1]
        out += [(t + i * 1e-4, f) for i, f in enumerate(frags)]
    assert len(counts) == 2
    return sorted(out, key=lambda r: r[0]), counts


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_fragments_reassembled(tmp_path, family, order):
    """INVITE and 200 OK split into IP fragments are reassembled in any arrival order and
    counted once each; the filter keeps every fragment, including those without a UDP header."""
    packets, counts = _fragmented_call(family, order)
    r = stats(write_pcap(tmp_path / "frag.pcap", frames(packets), 1))
    assert r["sip"] == CALL_SIP
    assert r["rtcp"] == CALL_RTCP
    assert r["frames_matched"] == 5 + sum(counts) + 2
    assert r["counters"] == {"frag.fragments": sum(counts), "frag.reassembled": 2}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_incomplete_fragments_expire_at_end(tmp_path, family):
    """A fragment set missing its middle piece never yields a message; at the end of input the
    two pending datagrams are counted as frag.expired, and the rest of the call is intact."""
    packets, counts = _fragmented_call(family, "incomplete")
    r = stats(write_pcap(tmp_path / "frag.pcap", frames(packets), 1))
    assert r["sip"] == {"messages": 5, "requests": {"ACK": 1, "BYE": 1},
                        "responses": {"100": 1, "180": 1, "200": 1}, "retransmissions": 0,
                        "transport": {"udp": 5}}
    assert r["counters"] == {"frag.fragments": sum(counts) - 2, "frag.expired": 2}


def test_fragments_expire_on_packet_time(tmp_path):
    """A datagram still incomplete 30 s of packet time later is expired as soon as the next
    fragment arrives, not only at the end; later fragment sets still reassemble."""
    big = UDP(sport=5060, dport=5060) / call_packets(media=False)[0][1][UDP].payload
    first = fragment(IP(src=A_IP, dst=B_IP, id=1) / big, fragsize=256)
    second = fragment(IP(src=A_IP, dst=B_IP, id=2) / big, fragsize=256)
    packets = [(T0, first[0]), (T0 + 0.001, first[1])]  # the rest of datagram 1 never comes
    packets += [(T0 + 40 + i * 0.001, f) for i, f in enumerate(second)]
    r = stats(write_pcap(tmp_path / "late.pcap", frames(packets), 1))
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["counters"] == {"frag.fragments": 2 + len(second), "frag.expired": 1,
                             "frag.reassembled": 1}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_interleaved_fragment_sets(tmp_path, family):
    """Two INVITEs between the same hosts fragmented at the same time, their fragments
    interleaved: the identification field keeps the sets apart and both are reassembled."""
    a, b = (A_IP, B_IP) if family == "ipv4" else (A6_IP, B6_IP)
    sets = []
    for n in (1, 2):
        invite = call_packets(a, b, media=False, tag=str(n), call_id=f"call-{n}@pc33")[0][1]
        if family == "ipv4":
            sets.append(fragment(IP(src=a, dst=b, id=100 + n) / invite[UDP], fragsize=256))
        else:
            sets.append(fragment6(IPv6(src=a, dst=b) / IPv6ExtHdrFragment(id=100 + n) / invite[UDP],
                                  304))
    mixed = [f for pair in zip(*sets) for f in pair]
    assert len(mixed) == 6
    r = stats(write_pcap(tmp_path / "two.pcap", frames([(T0 + i * 1e-4, f) for i, f in enumerate(mixed)]), 1))
    assert r["sip"]["requests"] == {"INVITE": 2}
    assert r["counters"] == {"frag.fragments": 6, "frag.reassembled": 2}


def _invite_fragments():
    big = UDP(sport=5060, dport=5060) / call_packets(media=False)[0][1][UDP].payload
    return fragment(IP(src=A_IP, dst=B_IP, id=7, ttl=64) / big, fragsize=256)


def test_duplicate_fragment_from_a_span_port(tmp_path):
    """A fragment mirrored twice 1 ms apart (TTL and checksum rewritten by a router) is dropped
    as a SPAN duplicate before reassembly; without de-duplication the defragmenter drops it."""
    f0, f1, f2 = _invite_fragments()[:3]
    copy = IP(bytes(f1))
    copy.ttl, copy.chksum = 63, None
    packets = [(T0, f0), (T0 + 0.0001, f1), (T0 + 0.0011, IP(bytes(copy))), (T0 + 0.002, f2)]
    pcap = write_pcap(tmp_path / "dup.pcap", frames(packets), 1)
    r = stats(pcap)
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["counters"] == {"dedup.duplicates": 1, "frag.fragments": 3, "frag.reassembled": 1}

    r = stats(pcap, dedup_window=0)
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["counters"] == {"frag.duplicate": 1, "frag.fragments": 4, "frag.reassembled": 1}


def test_duplicate_fragment_seconds_apart(tmp_path):
    """A fragment sent again (outside the de-duplication window) before the set completes is
    a defragmenter duplicate: the message is still reassembled once."""
    f0, f1, f2 = _invite_fragments()[:3]
    packets = [(T0, f0), (T0 + 0.001, f1), (T0 + 0.5, f1), (T0 + 0.501, f2)]
    r = stats(write_pcap(tmp_path / "dup.pcap", frames(packets), 1))
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["counters"] == {"frag.duplicate": 1, "frag.fragments": 4, "frag.reassembled": 1}


# -- SPAN duplicates and retransmissions -------------------------------------------------------

def _invite_twice(kind: str, gap: float, ttl2: int):
    """The INVITE as seen at two mirrored hops: `gap` seconds apart, second with TTL `ttl2`."""
    invite = call_packets(media=False)[0][1]
    second = IP(bytes(invite))
    second.ttl, second.chksum = ttl2, None
    second = IP(bytes(second))
    return [(T0, link(kind, invite)), (T0 + gap, link(kind, second))], invite, second


@pytest.mark.parametrize("kind", ["ethernet", "vlan"])
def test_span_duplicate_counted_once(tmp_path, kind):
    """The same IP packet twice 1 ms apart with another TTL and header checksum (and other MACs)
    is one message: dedup.duplicates = 1, no retransmission. Untagged frames take the decoder's
    fast path, tagged ones the general path; both de-duplicate."""
    records, first, second = _invite_twice(kind, 0.001, 63)
    assert (first.ttl, second.ttl) == (64, 63) and first.chksum != second.chksum
    if kind == "ethernet":  # the second copy as the egress port writes it: other MACs
        records[1] = (records[1][0], bytes(Ether(src=MAC_B, dst=MAC_A) / second))
    r = stats(write_pcap(tmp_path / "span.pcap", records, 1))
    assert r["frames_matched"] == 2
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["sip"]["retransmissions"] == 0
    assert r["counters"] == {"dedup.duplicates": 1}


@pytest.mark.parametrize("second", ["vlan", "erspan2"])
def test_span_duplicate_across_encapsulations(tmp_path, second):
    """One copy mirrored untagged and the other from a trunk (802.1Q tag) or through ERSPAN:
    still one packet (the key is the transport content, not the frame)."""
    from crafted import tunnel
    records, first, copy = _invite_twice("ethernet", 0.001, 63)
    records[1] = (records[1][0], link(second, copy) if second == "vlan"
                  else link("ethernet", tunnel("erspan2", copy)))
    r = stats(write_pcap(tmp_path / "span.pcap", records, 1))
    assert r["frames_matched"] == 2
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["counters"] == {"dedup.duplicates": 1}


@pytest.mark.parametrize("kind", ["ethernet", "vlan"])
def test_retransmission_is_not_a_duplicate(tmp_path, kind):
    """The identical INVITE 600 ms later is a retransmission (timer A fired at T1 = 500 ms):
    counted twice, sip.retransmissions = 1, nothing de-duplicated."""
    records, _, _ = _invite_twice(kind, 0.6, 64)
    r = stats(write_pcap(tmp_path / "retrans.pcap", records, 1))
    assert r["sip"]["requests"] == {"INVITE": 2}
    assert r["sip"]["retransmissions"] == 1
    assert r["counters"] == {}


def test_dedup_window_zero_counts_duplicates(tmp_path):
    """With dedup_window=0 the SPAN copy 1 ms later counts as a second (retransmitted) INVITE."""
    records, _, _ = _invite_twice("ethernet", 0.001, 63)
    r = stats(write_pcap(tmp_path / "span.pcap", records, 1), dedup_window=0)
    assert r["sip"]["requests"] == {"INVITE": 2}
    assert r["sip"]["retransmissions"] == 1
    assert r["counters"] == {}


def test_span_copies_of_a_whole_call(tmp_path):
    """Every packet of a call mirrored twice (ingress and egress, 200 us apart, TTL-1): the
    counts equal one call's, and each second copy is one dedup.duplicates."""
    packets = []
    for t, p in call_packets():
        copy = IP(bytes(p))
        copy.ttl, copy.chksum = 63, None
        packets += [(t, p), (t + 0.0002, IP(bytes(copy)))]
    r = stats(write_pcap(tmp_path / "span.pcap", frames(packets), 1))
    assert r["frames_matched"] == 18
    assert (r["sip"], r["rtcp"]) == (sip_expected(), CALL_RTCP)
    assert r["counters"] == {"dedup.duplicates": 9}
