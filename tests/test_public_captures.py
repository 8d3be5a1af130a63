"""`sipprobe stats` against Wireshark's own counts on the public captures in ../shared/pcaps."""
from __future__ import annotations

import re
from pathlib import Path
import subprocess
from collections import Counter

import pytest

from pipeline import ProbeOptions, stats_files
from shared_pcaps import all_shared, require_tshark, shared

# Wireshark's sip,stat tap runs after a message is dissected; in this deliberately corrupted
# capture it loses the messages whose dissection hit a malformed-packet exception, so the
# per-frame SIP decode is the oracle there instead (see test_fuzzed_capture_matches_tshark_per_frame).
SIP_STAT_LOSES_MALFORMED = {"ndpi_fuzzed-aaa-malformed.pcap"}


def tshark_sip_stat(path: str) -> tuple[dict, dict]:
    out = subprocess.run([require_tshark(), "-q", "-n", "-r", path, "-z", "sip,stat"],
                         capture_output=True, text=True, check=True).stdout
    requests: dict[str, int] = {}
    responses: dict[str, int] = {}
    section = None
    for line in out.splitlines():
        if "SIP Status Codes" in line:
            section = responses
        elif "SIP Request methods" in line:
            section = requests
        elif section is responses and (m := re.match(r"\s+SIP (\d{3}) .*:\s+(\d+) Packets", line)):
            responses[m.group(1)] = int(m.group(2))
        elif section is requests and (m := re.match(r"\s+(\S+)\s+:\s+(\d+) Packets", line)):
            requests[m.group(1)] = int(m.group(2))
    return requests, responses


@pytest.mark.parametrize("name", [n for n in all_shared() if n not in SIP_STAT_LOSES_MALFORMED])
def test_sip_counts_equal_tshark_sip_stat(name):
    """Every SIP message, retransmissions included, counted as tshark -z sip,stat counts it."""
    path = shared(name)
    result = stats_files([path], ProbeOptions(dedup_window=0, strict=True))
    assert (result["sip"]["requests"], result["sip"]["responses"]) == tshark_sip_stat(path)


# frames the filter must drop: RTP, DNS, SMB, ARP... (total frames minus SIP/RTCP/fragments kept)
FILTER_DROPS = {"voipshark_sip-rtp-b2bua-call-rtcp.pcap": 5651 - 93,
                "sngrep_aaa-sip-rtp-cancel-auth.pcap": 691 - 103,
                "asterisk_ast-2017-012-rtp-rtcp-compound.pcap": 274}


@pytest.mark.parametrize("name", all_shared())
def test_filter_loses_nothing(name):
    """The libpcap pre-filter keeps every SIP message and RTCP packet: filtered and unfiltered
    runs agree, while RTP and other noise never reach Python."""
    path = shared(name)
    filtered = stats_files([path], ProbeOptions(dedup_window=0, strict=True))
    unfiltered = stats_files([path], ProbeOptions(bpf_filter="", dedup_window=0, strict=True))
    assert filtered["sip"] == unfiltered["sip"]
    assert filtered["rtcp"] == unfiltered["rtcp"]
    dropped = unfiltered["frames_matched"] - filtered["frames_matched"]
    assert dropped == FILTER_DROPS.get(name, dropped) >= 0


def test_fuzzed_capture_matches_tshark_per_frame():
    """On random corruption, the messages sipprobe accepts are exactly those Wireshark decodes
    as SIP, frame by frame (ICMP-quoted copies aside), and the damage is counted, not raised."""
    pyshark = pytest.importorskip("pyshark")
    path = shared("ndpi_fuzzed-aaa-malformed.pcap")
    expected = Counter()
    with pyshark.FileCapture(path, display_filter="sip and not icmp", keep_packets=False) as cap:
        for pkt in cap:
            sip = pkt.sip
            method = sip.get_field("Method")
            expected[method if method else sip.get_field("Status-Code")] += 1
    result = stats_files([path], ProbeOptions(dedup_window=0, strict=True))
    got = Counter(result["sip"]["requests"]) + Counter(result["sip"]["responses"])
    assert got == expected
    counters = result["counters"]
    assert counters["sip.control_char_in_start_line"] > 0
    assert counters["decode.ipv4_length_exceeds_capture"] > 0


def test_span_duplicates_dropped_and_counted():
    """ndpi_fax sees leg A twice at one tap (identical IP packets, same IP ID, <2 ms apart):
    de-duplication removes exactly those copies, which tshark counts as separate messages."""
    path = shared("ndpi_fax-t38-reinvite-488-dups.pcap")
    req, resp = tshark_sip_stat(path)
    on = stats_files([path], ProbeOptions(strict=True))
    off = stats_files([path], ProbeOptions(dedup_window=0, strict=True))
    assert off["sip"]["messages"] == sum(req.values()) + sum(resp.values()) == 92
    dups = on["counters"]["dedup.duplicates"]
    assert on["sip"]["messages"] == 92 - dups
    assert dups == 23  # every message of leg A at the second tap, one copy each
    assert on["sip"]["requests"]["INVITE"] == 12 and off["sip"]["requests"]["INVITE"] == 16


def test_retransmissions_recognised():
    """aaa.pcap: the INVITE sent three times and the CANCEL retransmitted many times."""
    result = stats_files([shared("sngrep_aaa-sip-rtp-cancel-auth.pcap")], ProbeOptions(strict=True))
    assert result["sip"]["requests"]["CANCEL"] == 11
    assert result["sip"]["retransmissions"] == 14
    assert result["counters"]["sip.keepalive"] == 21  # five-space NAT keep-alives on 5060


def test_encapsulations_decoded():
    gtp = stats_files([shared("arkime_gtp-volte-ipv6-sip-tcp-rtcp.pcap")], ProbeOptions(strict=True))
    assert gtp["encapsulations"]["gtpu"] > 0
    assert gtp["sip"]["transport"] == {"tcp": 13, "udp": 4}  # as tshark decodes them
    assert gtp["rtcp"]["packets"] == {"BYE": 1, "SR": 2}
    gre = stats_files([shared("ndpi_vlan-gre-ppp-sip.pcapng")], ProbeOptions(strict=True))
    assert gre["encapsulations"] == {"gre": 1, "vlan": 1}
    assert gre["sip"]["responses"] == {"100": 1}
    ipip = stats_files([shared("sngrep_ipip-tunnel-sip-tcp.pcap")], ProbeOptions(strict=True))
    assert ipip["encapsulations"] == {"ipip": 2}
    assert ipip["sip"]["messages"] == 4


def test_ip_fragments_reassembled():
    v6 = stats_files([shared("sngrep_ipv6-frag-sip-prack-update.pcap")], ProbeOptions(strict=True))
    assert v6["counters"]["frag.reassembled"] == 2
    assert v6["sip"]["requests"]["INVITE"] == 2
    v4 = stats_files([shared("voipshark_sip-srtp-b2bua-call-ipfrag.pcap")], ProbeOptions(strict=True))
    assert v4["counters"]["frag.reassembled"] == 1
    assert v4["sip"]["requests"]["INVITE"] == 3


def test_rtcp_counted_by_type():
    r = stats_files([shared("voipshark_sip-rtp-b2bua-call-rtcp.pcap")], ProbeOptions(strict=True))
    assert r["rtcp"] == {"datagrams": 33, "packets": {"BYE": 4, "RR": 7, "SDES": 33, "SR": 26}}
    srtcp = stats_files([shared("voipshark_sip-srtp-b2bua-call-ipfrag.pcap")], ProbeOptions(strict=True))
    assert srtcp["rtcp"]["datagrams"] == 29
    assert srtcp["counters"]["rtcp.trailing_bytes"] == 29  # SRTCP index and auth tag


def test_non_sip_on_sip_ports_counted():
    http = stats_files([shared("ndpi_http-on-tcp-5060.pcap")], ProbeOptions(strict=True))
    assert http["sip"]["messages"] == 0
    assert http["counters"]["sip.tcp_not_sip"] == 2
    tls = stats_files([shared("voipshark_sip-tls-rtp-b2bua-call-rtcp.pcap")], ProbeOptions(strict=True))
    assert tls["sip"]["messages"] == 0 and tls["counters"]["sip.tcp_not_sip"] > 0
    hello = stats_files([shared("ndpi_sip-register-401-keepalive.pcapng")], ProbeOptions(strict=True))
    assert hello["counters"]["sip.bad_start_line"] == 22


def test_spaces_in_request_uri_rejected_as_tshark_does():
    r = stats_files([shared("netfox_sip-fraud-901-invites.pcap")], ProbeOptions(strict=True))
    assert r["sip"]["requests"]["INVITE"] == 901
    assert r["counters"]["sip.bad_request_line"] == 99


LAB_CAPTURES = sorted(p.parent.name for p in
                      (Path(__file__).resolve().parents[1] / "pcaps").glob("lab-*/capture.pcap"))


@pytest.mark.parametrize("scenario", LAB_CAPTURES)
def test_lab_captures_equal_tshark_sip_stat(scenario):
    """The captures our Kamailio/SIPp lab produced (pcaps/lab-*), UDP and TCP."""
    path = str(Path(__file__).resolve().parents[1] / "pcaps" / scenario / "capture.pcap")
    result = stats_files([path], ProbeOptions(strict=True))
    assert (result["sip"]["requests"], result["sip"]["responses"]) == tshark_sip_stat(path)
    # the proxy retransmits an INVITE nobody answers (Timer A, doubling up to T2 = 4 s)
    assert result["sip"]["retransmissions"] == {"lab-no-answer-408": 9,
                                                 "lab-missed-early-no-answer-408": 9}.get(scenario, 0)


def test_lab_captures_exist():
    assert len(LAB_CAPTURES) >= 10
