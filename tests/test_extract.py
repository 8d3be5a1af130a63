"""`sipprobe extract` checked by tshark: the written pcap holds exactly the call's SIP messages
(tshark's count by Call-ID on the original) and exactly the RTP/RTCP of the media endpoints
tshark itself reads from the call's SDP."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from lab_oracle import LAB_PCAPS
from shared_pcaps import SHARED_PCAPS

SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or \
    shutil.which("sipprobe")
pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
B2BUA = SHARED_PCAPS / "voipshark_sip-rtp-b2bua-call-rtcp.pcap"


def tshark(pcap, display_filter, *fields):
    args = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter]
    if fields:
        args += ["-T", "fields", "-E", "separator=/t"] + [a for f in fields for a in ("-e", f)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return [line for line in r.stdout.splitlines() if line]


def media_filter(pcap, callid) -> str:
    """UDP to or from the RTP port of each SDP (tshark's reading) and that port + 1 (RTCP;
    these captures' a=rtcp says the same), SIP left out, and ICMP errors quoting such a
    datagram too (tshark matches their inner UDP header; extract does not write them)."""
    ends = set()
    for line in tshark(pcap, f'sip.Call-ID == "{callid}" && sdp', "sdp.connection_info.address",
                       "sdp.media.port"):
        address, ports = line.split("\t")
        for port in ports.split(","):
            ends |= {(address.split(",")[0], int(port)), (address.split(",")[0], int(port) + 1)}
    assert ends, callid
    either = " || ".join(f"(ip.src == {a} && udp.srcport == {p}) || "
                         f"(ip.dst == {a} && udp.dstport == {p})" for a, p in sorted(ends))
    return f"udp && !sip && !icmp && ({either})"


def extract(tmp_path, capture, *args):
    out = tmp_path / "call.pcap"
    r = subprocess.run([SIPPROBE, "extract", str(capture), *args, "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out, r.stderr


def assert_exactly_the_call(capture, out, callid):
    sip = f'sip.Call-ID == "{callid}"'
    want_sip = len(tshark(capture, sip))
    want_media = len(tshark(capture, media_filter(capture, callid)))
    assert want_sip > 0 and want_media > 0
    assert len(tshark(out, sip)) == want_sip
    assert len(tshark(out, "sip")) == want_sip  # no other call's SIP
    assert len(tshark(out, media_filter(capture, callid))) == want_media
    assert len(tshark(out, "frame")) == want_sip + want_media  # nothing else
    return want_sip, want_media


def test_b2bua_call_with_rtcp(tmp_path):
    callid = "3cfe1c77155241bb89eb003ab8e2f87b"
    out, said = extract(tmp_path, B2BUA, "--callid", callid)
    n_sip, n_media = assert_exactly_the_call(B2BUA, out, callid)
    assert (n_sip, n_media) == (13, 2707)  # tshark 4.0's counts, one ICMP error left out
    assert len(tshark(out, "rtcp")) == 16
    assert said.strip() == f"wrote {n_sip + n_media} packets of 1 calls to {out}"


def test_lab_media_call(tmp_path):
    capture = LAB_PCAPS / "lab-media-clean" / "capture.pcap"
    [callid] = set(tshark(capture, 'sip.Method == "INVITE"', "sip.Call-ID"))
    out, _ = extract(tmp_path, capture, "--callid", callid)
    assert_exactly_the_call(capture, out, callid)
    assert len(tshark(out, "rtcp")) > 0


def test_user_selects_the_calls_tshark_finds(tmp_path):
    """--user: every Call-ID with a From, To or request-URI user containing USER."""
    user = "1111"
    wanted = set(tshark(B2BUA, f'sip.from.user contains "{user}" || sip.to.user contains '
                               f'"{user}" || sip.r-uri.user contains "{user}"', "sip.Call-ID"))
    assert len(wanted) >= 2
    out, said = extract(tmp_path, B2BUA, "--user", user)
    assert f"of {len(wanted)} calls" in said
    assert set(tshark(out, "sip", "sip.Call-ID")) == wanted
