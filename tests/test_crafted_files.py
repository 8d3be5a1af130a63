"""Capture file formats, several files merged in time order, and unusable files."""
from __future__ import annotations

import gzip
import itertools
import struct

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import wrpcapng

from crafted import (A_IP, B_IP, CALL_RTCP, CALL_SIP, CALL_SIP_FRAMES, MAC_A, MAC_B, RTCP_TIMES, SIP_TIMES, T0,
                     call_packets, datagram_list, frames, link, pcapng_block, sip_expected, stats,
                     write_pcap, write_pcapng)
from probe.sources import DamagedFile, SourceError

# capture times of what the built-in filter keeps from one call: SIP and RTCP
KEPT_TIMES = sorted(SIP_TIMES + RTCP_TIMES)


@pytest.mark.parametrize("big", [False, True], ids=["little_endian", "big_endian"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_classic_pcap_variants(tmp_path, nano, big):
    """Microsecond and nanosecond pcap in either byte order give the same counts and the same
    timestamps (a nanosecond file read as microseconds would be off by up to 1000 s)."""
    pcap = write_pcap(tmp_path / "call.pcap", frames(call_packets()), 1, nano=nano, big=big)
    r = stats(pcap)
    assert r["frames_matched"] == 9
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    times = [d.ts - T0 for d in datagram_list(pcap)]
    assert times == pytest.approx(KEPT_TIMES, abs=2e-6)


def test_pcapng_one_interface(tmp_path):
    """A pcapng file written by scapy's own writer (one Ethernet interface) reads like pcap."""
    pkts = []
    for t, p in call_packets():
        frame = Ether(src=MAC_A, dst=MAC_B) / p
        frame.time = t
        pkts.append(frame)
    path = tmp_path / "call.pcapng"
    wrpcapng(str(path), pkts)
    r = stats(path)
    assert r["frames_matched"] == 9
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert [d.ts - T0 for d in datagram_list(path)] == pytest.approx(KEPT_TIMES, abs=2e-6)


def test_pcapng_two_interfaces_of_different_link_types(tmp_path):
    """Interface 0 is Ethernet and carries the INVITE, interface 1 is raw IP and carries the
    200 OK; each also carries an RTP packet. Both messages are found, each interface's frames
    filtered with a program compiled for its own link type (RTP dropped)."""
    call = call_packets()
    invite, ok, rtp = call[0][1], call[3][1], call[5][1]
    assert bytes(ok).find(b"SIP/2.0 200 OK") > 0 and bytes(rtp)[28] == 0x80
    records = [(0, T0, link("ethernet", invite)), (1, T0 + 0.5, link("raw", ok)),
               (0, T0 + 1, link("ethernet", rtp)), (1, T0 + 1.5, link("raw", rtp))]
    path = write_pcapng(tmp_path / "two.pcapng", [1, 101], records)
    r = stats(path)
    assert r["frames_matched"] == 2
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["sip"]["responses"] == {"200": 1}
    assert r["counters"] == {}
    assert [(d.frame, d.ts - T0) for d in datagram_list(path)] == [(1, 0.0), (2, 0.5)]


def test_pcapng_two_interfaces_with_a_simple_packet_block(tmp_path):
    """A Simple Packet Block (no timestamp; implicitly interface 0) in a file read through the
    multi-link-type path is decoded, stamped with the time of the frame before it."""
    call = call_packets()
    path = write_pcapng(tmp_path / "spb.pcapng", [1, 101],
                        [(0, T0, link("ethernet", call[0][1])), (1, T0 + 0.5, link("raw", call[1][1]))])
    ok = link("ethernet", call[3][1])
    path.write_bytes(path.read_bytes() + pcapng_block(3, struct.pack("<I", len(ok)) + ok))
    r = stats(path)
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["sip"]["responses"] == {"100": 1, "200": 1}
    assert [(d.frame, d.ts - T0) for d in datagram_list(path)] == [(1, 0.0), (2, 0.5), (3, 0.5)]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gzip_compressed(tmp_path, fmt):
    """gzip-compressed pcap and pcapng are read (through scapy) with the same filter applied."""
    if fmt == "pcap":
        plain = write_pcap(tmp_path / "call.pcap", frames(call_packets()), 1)
    else:
        plain = write_pcapng(tmp_path / "call.pcapng", [1],
                             [(0, t, f) for t, f in frames(call_packets())])
    path = tmp_path / f"call.{fmt}.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    r = stats(path)
    assert r["frames_matched"] == 9
    assert (r["sip"], r["rtcp"]) == (CALL_SIP, CALL_RTCP)
    assert r["counters"] == {}


# -- several files ----------------------------------------------------------------------------

def _three_calls(tmp_path, names=("a.pcap", "b.pcapng", "c.pcap.gz")):
    """Three calls 0.5 s apart, one per file (pcap, pcapng, gzip pcap), interleaving in time.

    Returns the paths in the order of the calls' start.
    """
    paths = []
    for i, name in enumerate(names):
        packets = call_packets(f"192.0.2.{10 + i}", B_IP, T0 + 0.5 * i, tag=str(i))
        path = tmp_path / name
        if name.endswith(".pcapng"):
            write_pcapng(path, [1], [(0, t, f) for t, f in frames(packets)])
        else:
            write_pcap(path, frames(packets), 1, compress=name.endswith(".gz"))
        paths.append(path)
    return paths


def _check_merged(datagrams, n_calls: int):
    times = [d.ts for d in datagrams]
    assert times == sorted(times)
    assert [d.frame for d in datagrams] == list(range(1, 9 * n_calls + 1))
    expected = sorted(T0 + 0.5 * i + t for i in range(n_calls) for t in KEPT_TIMES)
    assert times == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_files_given_in_any_order(tmp_path, order):
    """Overlapping files listed in any order are merged in timestamp order, renumbered 1..N."""
    paths = [_three_calls(tmp_path)[i] for i in order]
    _check_merged(datagram_list(paths), 3)
    r = stats(paths)
    assert r["files"] == [str(p) for p in paths]
    assert r["frames_matched"] == 27
    assert r["sip"] == sip_expected(3)
    assert r["rtcp"] == {"datagrams": 6, "packets": {"RR": 3, "SDES": 6, "SR": 3}}


def test_directory(tmp_path):
    """A directory stands for the capture files in it (sorted by name, other files ignored),
    merged in timestamp order whatever their names say."""
    _three_calls(tmp_path, names=("z-first.pcap.gz", "m-second.pcap", "a-third.pcapng"))
    (tmp_path / "notes.txt").write_text("not a capture")
    (tmp_path / "old.pcap.bak").write_bytes(b"\x00" * 40)
    _check_merged(datagram_list(tmp_path), 3)
    r = stats(tmp_path)
    assert r["files"] == [str(tmp_path / n) for n in ("a-third.pcapng", "m-second.pcap",
                                                        "z-first.pcap.gz")]
    assert r["sip"] == sip_expected(3)


# -- unusable files ---------------------------------------------------------------------------

def test_garbage_file(tmp_path):
    """A file that is no capture raises SourceError naming the file and the formats expected."""
    path = tmp_path / "notes.pcap"
    path.write_text("INVITE sip:bob@example.org SIP/2.0\r\n" * 20)
    with pytest.raises(SourceError, match=r"notes\.pcap: not a pcap, pcapng or gzip"):
        stats(path)


def test_empty_file(tmp_path):
    """An empty file raises SourceError naming it."""
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.pcap"):
        stats(path)


def test_gzip_of_garbage(tmp_path):
    """A gzip file whose content is no capture raises SourceError, not a scapy exception."""
    path = tmp_path / "junk.pcap.gz"
    path.write_bytes(gzip.compress(b"hello world, not a capture" * 10))
    with pytest.raises(SourceError, match=r"junk\.pcap\.gz"):
        stats(path)


def test_bad_file_among_good_ones_is_reported_and_the_good_ones_read(tmp_path):
    """One file that is no capture in a list: the others are read whole, the bad one is
    named in `damaged` (the CLI then exits 3); alone, it raises DamagedFile."""
    good = write_pcap(tmp_path / "good.pcap", frames(call_packets()), 1)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x00" * 100)
    r = stats([good, bad])
    assert r["sip"]["messages"] == CALL_SIP_FRAMES
    assert r["damaged"] == [f"{bad}: not a pcap, pcapng or gzip-compressed capture file"]
    with pytest.raises(DamagedFile, match=r"bad\.pcap"):
        stats(bad)


def test_nonexistent_path(tmp_path):
    with pytest.raises(SourceError, match=r"missing\.pcap: no such file or directory"):
        stats(tmp_path / "missing.pcap")


def test_directory_without_captures(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(SourceError, match="no capture files found"):
        stats(tmp_path)


def test_header_only_pcap(tmp_path):
    """A pcap with a file header and no records is a valid, empty capture."""
    r = stats(write_pcap(tmp_path / "none.pcap", [], 1))
    assert r["frames_matched"] == 0
    assert r["sip"]["messages"] == 0
    assert r["counters"] == {}


@pytest.mark.parametrize("compress", [False, True], ids=["pcap", "pcap.gz"])
def test_file_cut_in_the_middle_of_a_record(tmp_path, compress):
    """A capture cut inside its last record (the 200 OK to BYE) keeps every record before the
    cut: 6 SIP messages and both RTCP compounds, and no exception."""
    full = write_pcap(tmp_path / "full.pcap", frames(call_packets()), 1).read_bytes()
    cut = full[:-100]
    path = tmp_path / ("cut.pcap.gz" if compress else "cut.pcap")
    path.write_bytes(gzip.compress(cut) if compress else cut)
    r = stats(path)
    assert r["frames_matched"] == 8
    assert r["sip"]["requests"] == {"INVITE": 1, "ACK": 1, "BYE": 1}
    assert r["sip"]["responses"] == {"100": 1, "180": 1, "200": 1}
    assert r["rtcp"] == CALL_RTCP


def test_file_cut_inside_first_record_header(tmp_path):
    """Cut 8 bytes into the first record header: an empty result, no exception."""
    full = write_pcap(tmp_path / "full.pcap", frames(call_packets()), 1).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:24 + 8])
    r = stats(path)
    assert (r["frames_matched"], r["sip"]["messages"]) == (0, 0)


def test_file_cut_inside_file_header(tmp_path):
    """Cut inside the 24-byte file header: SourceError naming the file."""
    full = write_pcap(tmp_path / "full.pcap", frames(call_packets()), 1).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:10])
    with pytest.raises(SourceError, match=r"cut\.pcap"):
        stats(path)


def test_cut_after_a_full_batch(tmp_path):
    """A cut after more than one libpcap batch (1024 frames) of good records: every record
    before the cut is still counted, none twice."""
    invite = link("ethernet", call_packets(A_IP, B_IP, media=False)[0][1])
    records = [(T0 + i * 0.02, invite) for i in range(1500)]
    full = write_pcap(tmp_path / "full.pcap", records, 1).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:-50])
    r = stats(path)
    assert r["frames_matched"] == 1499
    assert r["sip"]["requests"] == {"INVITE": 1499}
    assert r["sip"]["retransmissions"] == 1498
    assert [d.frame for d in datagram_list(path)] == list(range(1, 1500))


def test_link_type_the_filter_cannot_handle(tmp_path):
    """A link type libpcap cannot filter (DLT_USER0): the built-in filter gives way and the
    file is read whole (reported in unfiltered_linktypes), in a plain pcap and in a
    multi-link-type pcapng alike; a user's own filter that cannot compile is an error."""
    invite = call_packets(media=False)[0][1]
    pcap = write_pcap(tmp_path / "user0.pcap", [(T0, b"\x01\x02" + bytes(invite))], 147)
    ng = write_pcapng(tmp_path / "mixed.pcapng", [1, 147],
                      [(0, T0, link("ethernet", invite)), (1, T0 + 1, b"\x01\x02" + bytes(invite))])
    r = stats(pcap)
    assert r["counters"] == {"decode.unsupported_linktype": 1}
    assert r["unfiltered_linktypes"] == [147]
    r = stats(ng)
    assert r["sip"]["requests"] == {"INVITE": 1}
    assert r["counters"] == {"decode.unsupported_linktype": 1}
    assert r["unfiltered_linktypes"] == [147]
    with pytest.raises(SourceError, match=rf"{pcap.name}: BPF filter rejected for link type 147"):
        stats(pcap, bpf_filter="udp port 5060")
