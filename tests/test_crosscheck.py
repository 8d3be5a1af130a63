"""`sipprobe crosscheck`: sipprobe's SIP and RTCP decode against tshark's, field by field.

Every capture the project has and every public one: the lab captures and most public ones
must agree exactly; where they do not, the exact list of (frame, item, field) is asserted and
each has its documented cause (docs/cli.md, crosscheck). The comparator itself is shown to
fail: on a perturbed sipprobe decode, on a message sipprobe does not take for SIP (an
extension method on a port that is not a SIP port), and on a mutated message whose field
the two decoders read differently. A damaged capture exits 3.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from console import crosscheck
from crafted import A_IP, B_IP, T0, frames, sip_message, udp, write_pcap
from shared_pcaps import SHARED_PCAPS, all_shared, require_tshark

ROOT = Path(__file__).resolve().parents[1]
LAB = sorted(str(p) for p in (ROOT / "pcaps").glob("*/capture.pcap*"))
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or \
    shutil.which("sipprobe")

NUL = "a NUL byte in the value: Wireshark shows a text field up to its first NUL"
TEL = "tel: URI"
LENGTH = "Content-Length is not a number"
CSEQ = "CSeq is not a number and a method"
CSEQ_METHOD = "the CSeq method is not a token"
# the disagreements tshark 4.0.17 and sipprobe have on the public captures, each with its cause
KNOWN = {
    "arkime_gtp-volte-ipv6-sip-tcp-rtcp.pcap": [
        (31, "sip[0]", "ruri_user", TEL), (40, "sip[0]", "ruri_user", TEL),
        (90, "sip[0]", "ruri_user", TEL)],
    "ndpi_fuzzed-aaa-malformed.pcap": [
        (107, "sip[0]", "via_branch", NUL), (155, "sip[0]", "cseq", CSEQ),
        (155, "sip[0]", "cseq_method", CSEQ), (182, "sip[0]", "callid", NUL),
        (247, "sip[0]", "callid", NUL), (247, "sip[0]", "content_length", LENGTH),
        (442, "sip[0]", "to_tag", NUL), (527, "sip[0]", "cseq_method", CSEQ_METHOD),
        (539, "sip[0]", "content_length", LENGTH), (550, "sip[0]", "cseq", CSEQ),
        (550, "sip[0]", "cseq_method", CSEQ), (621, "sip[0]", "content_length", LENGTH)],
    "zeek_sip-invalid-content-length.pcap": [
        (1, "sip[0]", "content_length", LENGTH), (2, "sip[0]", "content_length", LENGTH)],
}
# SIP messages and RTCP compounds both decode, per public capture with either (tshark 4.0.17)
COMPARED = {"netfox_sip-fraud-901-invites.pcap": (2707, 0),
            "voipshark_sip-rtp-b2bua-call-rtcp.pcap": (48, 33),
            "voipshark_sip-tls-rtp-b2bua-call-rtcp.pcap": (0, 27),
            "sngrep_ipv6-frag-sip-prack-update.pcap": (32, 0),
            "ndpi_fuzzed-aaa-malformed.pcap": (52, 0)}


def sipprobe(*args):
    return subprocess.run([SIPPROBE, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True, scope="module")
def _tshark():
    require_tshark()


@pytest.mark.parametrize("path", LAB, ids=lambda p: Path(p).parent.name)
def test_lab_captures_agree(path):
    result = crosscheck.crosscheck([path])
    assert result["disagreements"] == []
    counts = result["compared"][path]
    assert counts["sip"] > 0 and counts["sipprobe_only"] == counts["tshark_only"] == 0


@pytest.mark.parametrize("name", all_shared())
def test_public_captures(name):
    """Zero disagreements, or exactly the known ones, each explained."""
    path = str(SHARED_PCAPS / name)
    result = crosscheck.crosscheck([path])
    rows = result["disagreements"]
    assert [(r["frame"], r["item"], r["field"]) for r in rows] == \
        [k[:3] for k in KNOWN.get(name, [])]
    for row, (*_, cause) in zip(rows, KNOWN.get(name, [])):
        assert row["note"].startswith(cause), row
    if name in COMPARED:
        c = result["compared"][path]
        assert (c["sip"], c["rtcp"]) == COMPARED[name]


def test_perturbed_decode_is_caught(monkeypatch):
    """The comparator fails when sipprobe's decode is wrong: one Call-ID and one jitter value
    changed give exactly those two rows."""
    path = str(ROOT / "pcaps" / "lab-media-clean" / "capture.pcap")
    real_fields, real_shape = crosscheck.sip_fields, crosscheck.rtcp_shape

    def wrong_callid(d, head):
        fields = real_fields(d, head)
        if d.frame == 1:
            fields["callid"] += "x"
        return fields

    done = []

    def wrong_jitter(compound):  # the first report block's jitter, one unit more
        shape = real_shape(compound)
        if not done and shape["reports"] and shape["reports"][0][3]:
            blocks = shape["reports"][0][3]
            blocks[0] = blocks[0][:4] + (blocks[0][4] + 1,) + blocks[0][5:]
            done.append(compound)
        return shape

    monkeypatch.setattr(crosscheck, "sip_fields", wrong_callid)
    monkeypatch.setattr(crosscheck, "rtcp_shape", wrong_jitter)
    rows = crosscheck.crosscheck([path])["disagreements"]
    assert [(r["item"], r["field"]) for r in rows] == \
        [("sip[0]", "callid"), ("rtcp", "report[0].block[0].jitter")]
    assert rows[0]["sipprobe"] == rows[0]["tshark"] + "x"
    assert int(rows[1]["sipprobe"]) == int(rows[1]["tshark"]) + 1


def _extension_request(port: int) -> bytes:
    return sip_message("FOO sip:bob@b.example SIP/2.0", [
        ("Via", f"SIP/2.0/UDP {A_IP}:{port};branch=z9hG4bK-foo-1"),
        ("From", "<sip:alice@a.example>;tag=a1"), ("To", "<sip:bob@b.example>"),
        ("Call-ID", "foo-1@a.example"), ("CSeq", "1 FOO")])


def test_message_only_tshark_sees(tmp_path):
    """An extension method on port 7000: tshark's heuristic finds SIP, sipprobe's classifier
    (no SIP port, a first word it does not know) does not. With --sip-port 7000 they agree."""
    path = write_pcap(tmp_path / "foo.pcap", frames(
        [(T0, udp(A_IP, B_IP, 7000, 7002, _extension_request(7000)))]))
    out = sipprobe("crosscheck", str(path), "--format", "json")
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    (row,) = result["disagreements"]
    assert (row["frame"], row["item"], row["field"], row["sipprobe"]) == (1, "sip[0]", "message",
                                                                         "")
    assert row["tshark"] == f"SIP FOO {A_IP}:7000 -> {B_IP}:7002 foo-1@a.example"
    assert "neither SIP nor RTCP: no SIP port" in row["note"]
    assert result["verdict"].startswith("differ: 0 fields and 1 messages")
    agreed = sipprobe("crosscheck", str(path), "--sip-port", "7000")
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert agreed.stdout == ("agree: sipprobe and tshark decode 1 SIP messages and 0 RTCP "
                             "compounds in 1 capture alike\n")


def test_mutated_fields_differ(tmp_path):
    """A copy of a request with a Content-Length that is no number and a tel: request-URI:
    the two decoders read both differently, and the CSV says so, with the causes."""
    msg = sip_message("INVITE tel:+4930123 SIP/2.0", [
        ("Via", f"SIP/2.0/UDP {A_IP}:5060;branch=z9hG4bK-m-1"),
        ("From", "<sip:alice@a.example>;tag=a1"), ("To", "<tel:+4930123>"),
        ("Call-ID", "mutated-1"), ("CSeq", "1 INVITE")], content_length="x12")
    path = write_pcap(tmp_path / "mutated.pcap", frames(
        [(T0, udp(A_IP, B_IP, 5060, 5060, msg))]))
    out = sipprobe("crosscheck", str(path), "--format", "csv")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0] == "capture,frame,item,field,sipprobe,tshark,note"
    assert [line.split(",")[1:6] for line in lines[1:]] == [
        ["1", "sip[0]", "ruri_user", "+4930123", ""],
        ["1", "sip[0]", "content_length", "invalid", "0"]]
    assert out.stderr.startswith("differ: 2 fields")


def test_damaged_capture_exits_3(tmp_path):
    """A capture cut inside a frame: what was read is compared, then exit 3."""
    whole = (ROOT / "pcaps" / "lab-basic-call" / "capture.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:3000])
    out = sipprobe("crosscheck", str(cut))
    assert out.returncode == 3
    assert out.stdout.startswith("agree: sipprobe and tshark decode 5 SIP messages")
    assert "damaged capture" in out.stderr
    (tmp_path / "junk.pcap").write_text("not a capture\n")
    assert sipprobe("crosscheck", str(tmp_path / "junk.pcap")).returncode == 3


def test_without_tshark_exits_2():
    path = str(ROOT / "pcaps" / "lab-basic-call" / "capture.pcap")
    r = subprocess.run([SIPPROBE, "crosscheck", path], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PATH": "/nonexistent"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("sipprobe: tshark not found: install it (Debian: apt-get install "
                        "tshark)\n")
