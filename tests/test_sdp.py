"""SDP parsing (sip_dissect/sdp.py): bodies taken from real captures with the probe's own
pipeline, exact values on each, every body cross-checked with tshark's SDP dissector, crafted
edge cases, and mutations of the real bodies that must never raise."""
from __future__ import annotations

import dataclasses
import random
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from crafted import datagram_list, sdp as crafted_sdp
from shared_pcaps import require_tshark, shared
from sip_dissect.message import ParseError, parse
from sip_dissect.sdp import (DIRECTIONS, STATIC_PAYLOAD_TYPES, Connection, Endpoint, Media,
                             Origin, RtpMap, Sdp, parse_sdp)

LAB = Path(__file__).resolve().parents[1] / "pcaps"


@lru_cache(maxsize=None)
def sdp_messages(path: str) -> tuple:
    """(time, method or status, cseq, SDP body) of every SIP message with an SDP body, in
    capture order, as the pipeline delivers them (strict mode)."""
    out = []
    for d in datagram_list(path):
        msg = parse(d.payload)
        if isinstance(msg, ParseError) or not msg.body:
            continue
        if "application/sdp" not in (msg.header("content-type") or "").lower():
            continue
        out.append((d.ts, msg.method or msg.status, msg.cseq, msg.body))
    return tuple(out)


def body_of(path: str, kind, n: int = 0) -> bytes:
    """The body of the n-th message that is `kind` (method or status code)."""
    return [b for _, k, _, b in sdp_messages(path) if k == kind][n]


LAB_BASIC = str(LAB / "lab-basic-call" / "capture.pcap")
LAB_REINVITE = str(LAB / "lab-reinvite" / "capture.pcap")
VOLTE = "arkime_gtp-volte-ipv6-sip-tcp-rtcp.pcap"
SRTP = "voipshark_sip-srtp-b2bua-call-ipfrag.pcap"
IPV6 = "sngrep_ipv6-frag-sip-prack-update.pcap"
AAA = "sngrep_aaa-sip-rtp-cancel-auth.pcap"
FAX = "ndpi_fax-t38-reinvite-488-dups.pcap"
CLARENT = "suricata_cloudshark-sip-invite-register.pcap"
FUZZED = "ndpi_fuzzed-aaa-malformed.pcap"


# -- exact values on real bodies ----------------------------------------------------------------

def test_sipp_offer_through_kamailio_whole_record():
    """lab-basic-call: SIPp's offer, every field."""
    offer = parse_sdp(body_of(LAB_BASIC, "INVITE"))
    local = Connection("IP4", "127.0.0.1")
    assert offer == Sdp(
        origin=Origin("alice", "1000", "1000", "IP4", "127.0.0.1"), session_name="sipprobe lab",
        connection=local, direction="sendrecv",
        media=(Media("audio", 6000, 1, "RTP/AVP", ("8", "101"), local, "sendrecv",
                     {8: RtpMap("PCMA", 8000, None), 101: RtpMap("telephone-event", 8000, None)}),),
        anomalies=())
    (audio,) = offer.media
    assert audio.rtp == Endpoint("127.0.0.1", 6000)
    assert audio.rtcp == Endpoint("127.0.0.1", 6001)  # no a=rtcp, no mux: port + 1
    assert audio.encodings == ("PCMA", "telephone-event")
    assert (audio.rejected, audio.crypto, audio.is_rtp) == (False, False, True)
    answer = parse_sdp(body_of(LAB_BASIC, 200))
    assert answer.origin == Origin("callee", "2000", "2000", "IP4", "127.0.0.1")
    assert answer.media[0].rtp == Endpoint("127.0.0.1", 6100)


def test_reinvite_hold_directions_and_version():
    """lab-reinvite: the re-INVITE puts the call on hold (sendonly, answered recvonly) and
    bumps the o= version; the session id stays."""
    msgs = [(k, cseq[0], parse_sdp(b)) for _, k, cseq, b in sdp_messages(LAB_REINVITE)]
    # each message twice: UAC -> proxy, then proxy -> UAS (or back for the 200s)
    assert [(k, n, s.origin.sess_id, s.origin.sess_version, s.direction, s.media[0].direction)
            for k, n, s in msgs] == [
        ("INVITE", 1, "1000", "1000", "sendrecv", "sendrecv")] * 2 + [
        (200, 1, "2000", "2000", "sendrecv", "sendrecv")] * 2 + [
        ("INVITE", 2, "1000", "1001", "sendrecv", "sendonly")] * 2 + [
        (200, 2, "2000", "2001", "sendrecv", "recvonly")] * 2


def test_volte_ipv6_amr_wb_offer():
    """GTP-tunnelled VoLTE INVITE over TCP/IPv6: session-level a=sendrecv, six AMR(-WB) and
    DTMF payload types, b= and precondition attributes skipped."""
    offer = parse_sdp(body_of(shared(VOLTE), "INVITE"))
    ue = "fd00:183:1:1:1886:9040:8605:32b8"
    assert offer.origin == Origin("tel:+88270006", "1415985484", "1415985484", "IP6", ue)
    assert (offer.session_name, offer.connection, offer.direction) == (
        "-", Connection("IP6", ue), "sendrecv")
    (audio,) = offer.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 49120, "RTP/AVP")
    assert audio.formats == ("104", "110", "102", "108", "105", "100")
    assert audio.encodings == ("AMR-WB", "AMR-WB", "AMR", "AMR", "telephone-event",
                               "telephone-event")
    assert audio.codec(104) == RtpMap("AMR-WB", 16000, None)
    assert audio.codec("105") == RtpMap("telephone-event", 16000, None)
    assert (audio.ptime, audio.direction) == (20, "sendrecv")
    assert (audio.rtp, audio.rtcp) == (Endpoint(ue, 49120), Endpoint(ue, 49121))
    assert offer.anomalies == ()
    answer = parse_sdp(body_of(shared(VOLTE), 200))
    (audio,) = answer.media
    assert (answer.origin.username, audio.rtp, audio.encodings, audio.ptime) == (
        "yate", Endpoint("fd01::183", 19956), ("AMR", "telephone-event"), None)


def test_srtp_offer_with_media_level_connection_and_rtcp_attribute():
    """pjsip's SRTP offer: c= only inside the m= section, a=rtcp with an address, four
    a=crypto suites, opus with two channels."""
    offer = parse_sdp(body_of(shared(SRTP), "INVITE"))
    assert offer.connection is None
    (audio,) = offer.media
    assert audio.connection == Connection("IP4", "192.168.20.132")
    assert audio.proto == "RTP/SAVP"
    assert audio.crypto_suites == ("AES_256_CM_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_32",
                                   "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
    assert audio.crypto
    assert (audio.rtcp_port, audio.rtcp_address) == (4001, "192.168.20.132")
    assert audio.rtcp == Endpoint("192.168.20.132", 4001)
    assert audio.codec(123) == RtpMap("opus", 48000, 2)
    assert audio.encodings == ("opus", "PCMA", "PCMU", "telephone-event")
    assert offer.anomalies == ()
    # Asterisk's leg: session-level c=, one suite, ptime; and the far end's answer
    asterisk = parse_sdp(body_of(shared(SRTP), "INVITE", 2)).media[0]
    assert (asterisk.rtp, asterisk.crypto_suites, asterisk.ptime, asterisk.encodings) == (
        Endpoint("192.168.20.130", 14904), ("AES_CM_128_HMAC_SHA1_80",), 20,
        ("PCMU", "PCMA", "GSM", "G726-32", "telephone-event"))
    answer = parse_sdp(body_of(shared(SRTP), 200)).media[0]
    assert (answer.rtp, answer.rtcp) == (Endpoint("192.168.5.151", 4000),
                                         Endpoint("192.168.5.151", 4001))


def test_ipv6_bracketed_origin_and_media_relay_rewrite():
    """SIPp behind a proxy with a media relay: the UAC writes its o= address in brackets (not
    in the grammar: counted); the relayed copy carries the relay's c= and port."""
    msgs = sdp_messages(shared(IPV6))
    caller = parse_sdp(msgs[0][3])
    relayed = parse_sdp(msgs[1][3])
    uac = "fd17:625c:f037:2:a00:27ff:feb9:1521"
    assert caller.anomalies == ("sdp.bracketed_address",)
    assert caller.origin == Origin("user1", "53655765", "2353687637", "IP6", uac)
    assert caller.media[0].rtp == Endpoint(uac, 15062)
    # a=rtpmap lines for 110 and 111 name formats the m= line does not offer
    assert caller.media[0].formats == ("100", "101", "0", "120", "121")
    assert sorted(caller.media[0].rtpmap) == [0, 100, 101, 110, 111, 120, 121]
    assert caller.media[0].encodings == ("AMR-WB", "AMR-WB", "PCMU", "telephone-event",
                                         "telephone-event")
    assert relayed.anomalies == ()
    assert relayed.media[0].rtp == Endpoint("fd17:625c:f037:2:a00:27ff:feb9:4334", 30002)
    early = [parse_sdp(b) for _, k, _, b in msgs if k == 183]
    assert [e.media[0].rtp.port for e in early] == [25062, 30004, 25062, 30004]


def test_183_early_media_answer():
    """A 183 with SDP whose c= is not the o= address; channels written as /1."""
    early = parse_sdp(body_of(shared(AAA), 183))
    assert early.origin == Origin("cp10", "112047106116", "112047106116", "IP4", "212.242.33.75")
    (audio,) = early.media
    assert audio.rtp == Endpoint("212.242.33.36", 40392)
    assert audio.rtcp == Endpoint("212.242.33.36", 40393)
    assert audio.rtpmap == {8: RtpMap("PCMA", 8000, 1), 0: RtpMap("PCMU", 8000, 1)}
    assert (audio.ptime, early.anomalies) == (20, ())


def test_t38_image_stream_is_not_rtp():
    fax = [parse_sdp(b) for _, k, _, b in sdp_messages(shared(FAX)) if k == "INVITE"]
    image = [s.media[0] for s in fax if s.media[0].media == "image"]
    assert [(m.port, m.proto, m.formats) for m in image] == [
        (16756, "udptl", ("t38",)), (16756, "udptl", ("t38",)), (15580, "udptl", ("t38",))]
    assert all(m.rtp is None and m.rtcp is None and m.encodings == ("",) for m in image)


def test_attribute_names_case_insensitive_as_sent():
    """The Clarent gateway writes a=SendRecv: read as sendrecv, nothing counted."""
    offer = parse_sdp(body_of(shared(CLARENT), "INVITE"))
    assert (offer.media[0].direction, offer.anomalies) == ("sendrecv", ())
    assert offer.media[0].encodings == ("PCMA", "G729", "G723", "PCMU")


def test_fuzzed_bodies_parse_partially_with_counters():
    """The fuzzed capture's three SDP bodies: one clean, two damaged; what is readable stays."""
    parsed = [parse_sdp(b) for _, _, _, b in sdp_messages(shared(FUZZED))]
    assert [p.anomalies for p in parsed] == [
        (), ("sdp.bad_connection", "sdp.bad_media", "sdp.bad_rtpmap"), ("sdp.bad_rtpmap",)]
    assert parsed[1].media == ()  # its m= port is damaged: the stream is dropped, not guessed
    assert parsed[2].media[0].media == "audio"  # written auDio
    assert parsed[2].media[0].rtp == Endpoint("192.168.1.2", 30080)


# -- every real body against tshark's SDP dissector ----------------------------------------------

TSHARK_FIELDS = ("frame.time_epoch", "sdp.owner.username", "sdp.owner.sessionid",
                 "sdp.owner.version", "sdp.owner.address", "sdp.connection_info.address",
                 "sdp.media", "sdp.mime.type", "sdp.sample_rate", "sdp.crypto.crypto_suite",
                 "sdp.media_attr", "sdp.session_attr")
AGG = "\x1e"


def tshark_sdp(path: str) -> dict[float, dict[str, list[str]]]:
    """tshark's SDP fields of every SIP message with SDP, by packet time (microseconds)."""
    out = subprocess.run(
        [require_tshark(), "-n", "-r", path, "-Y", "sip && sdp", "-T", "fields",
         "-E", "separator=\x1f", "-E", f"aggregator={AGG}", "-E", "occurrence=a"]
        + [a for f in TSHARK_FIELDS for a in ("-e", f)],
        capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.split("\n"):  # not splitlines(): it splits on the \x1e aggregator too
        if not line:
            continue
        values = line.split("\x1f")
        row = {f: (v.split(AGG) if v else []) for f, v in zip(TSHARK_FIELDS, values)}
        rows[round(float(values[0]), 6)] = row
    return rows


# capture: SIP messages with SDP as the pipeline delivers them (tshark may see SPAN duplicates)
CROSS_CHECKED = {
    LAB_BASIC: 4, LAB_REINVITE: 8, str(LAB / "lab-tcp-call" / "capture.pcap"): 4,
    VOLTE: 2, SRTP: 7, IPV6: 14, AAA: 12, FAX: 21, CLARENT: 3,
    "voipshark_sip-rtp-b2bua-call-rtcp.pcap": 7, "sngrep_ipip-tunnel-sip-tcp.pcap": 3,
    "junkie_sip-cancel-487-alt-port.pcap": 1, "netfox_sip-fraud-901-invites.pcap": 1,
}


@pytest.mark.parametrize("name", CROSS_CHECKED, ids=lambda n: Path(n).parent.name
                         if n.endswith("capture.pcap") else n)
def test_every_body_agrees_with_tshark(name):
    path = name if name.startswith("/") else shared(name)
    messages = sdp_messages(path)
    assert len(messages) == CROSS_CHECKED[name]
    theirs = tshark_sdp(path)
    for ts, kind, _, body in messages:
        s, t = parse_sdp(body), theirs[round(ts, 6)]
        where = f"{kind} at {ts:.6f}"
        assert s is not None and s.origin is not None, where
        o = s.origin
        assert [o.username, o.sess_id, o.sess_version] == (
            t["sdp.owner.username"] + t["sdp.owner.sessionid"] + t["sdp.owner.version"]), where
        assert [o.address] == [a.strip("[]") for a in t["sdp.owner.address"]], where
        ours_c = {c.address for c in [s.connection] + [m.connection for m in s.media] if c}
        assert ours_c == set(t["sdp.connection_info.address"]), where
        assert [(m.media, str(m.port), m.proto) + m.formats for m in s.media] == [
            (line.split()[0].lower(),) + tuple(line.split()[1:]) for line in t["sdp.media"]], where
        maps = [r for m in s.media for r in m.rtpmap.values()]
        assert [r.encoding for r in maps] == t["sdp.mime.type"], where
        assert [str(r.clock_rate) for r in maps] == t["sdp.sample_rate"], where
        assert [c for m in s.media for c in m.crypto_suites] == t["sdp.crypto.crypto_suite"], where
        attrs = t["sdp.media_attr"]
        assert [m.ptime for m in s.media if m.ptime is not None] == [
            int(a[6:]) for a in attrs if a.startswith("ptime:")], where
        assert [(m.rtcp_port, m.rtcp_address) for m in s.media if m.rtcp_port is not None] == [
            (int(a[5:].split()[0]), a.split()[-1]) for a in attrs if a.startswith("rtcp:")], where
        (media,) = s.media
        media_dirs = [a.lower() for a in attrs if a.lower() in DIRECTIONS]
        session_dirs = [a.lower() for a in t["sdp.session_attr"] if a.lower() in DIRECTIONS]
        assert media.direction == (media_dirs + session_dirs + ["sendrecv"])[0], where
        assert s.anomalies in ((), ("sdp.bracketed_address",)), where


# -- crafted edge cases ------------------------------------------------------------------------

def sdp_text(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


HEAD = ("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-")


def test_crafted_builder_body():
    """tests/crafted.py's sdp(): what the crafted calls carry."""
    s = parse_sdp(crafted_sdp("2001:db8::10", 40000, "alice"))
    (audio,) = s.media
    assert s.connection == Connection("IP6", "2001:db8::10")
    assert (audio.rtp, audio.rtcp) == (Endpoint("2001:db8::10", 40000),
                                       Endpoint("2001:db8::10", 40001))
    assert (audio.encodings, audio.ptime, audio.direction, s.anomalies) == (
        ("PCMU", "PCMA", "telephone-event"), 20, "sendrecv", ())


def test_no_connection_anywhere():
    s = parse_sdp(sdp_text(*HEAD, "t=0 0", "m=audio 5004 RTP/AVP 0"))
    assert s.connection is None and s.media[0].connection is None
    assert (s.media[0].rtp, s.media[0].rtcp) == (None, None)
    assert s.anomalies == ("sdp.missing_connection",)


def test_connection_only_at_media_level_and_override():
    s = parse_sdp(sdp_text(*HEAD, "c=IN IP4 192.0.2.1", "t=0 0",
                           "m=audio 5004 RTP/AVP 0", "c=IN IP4 192.0.2.2",
                           "m=video 5006 RTP/AVP 31"))
    assert s.connection == Connection("IP4", "192.0.2.1")
    assert [m.rtp for m in s.media] == [Endpoint("192.0.2.2", 5004), Endpoint("192.0.2.1", 5006)]
    only_media = parse_sdp(sdp_text(*HEAD, "t=0 0", "m=audio 5004 RTP/AVP 0",
                                    "c=IN IP6 2001:db8::2"))
    assert (only_media.connection, only_media.media[0].rtp, only_media.anomalies) == (
        None, Endpoint("2001:db8::2", 5004), ())


def test_several_media_lines_with_a_rejected_stream():
    """Audio accepted, video rejected (port 0, RFC 3264 section 6), a second audio stream
    with RTCP multiplexed; each keeps its own attributes."""
    s = parse_sdp(sdp_text(
        *HEAD, "c=IN IP4 192.0.2.1", "t=0 0", "a=recvonly",
        "m=audio 49170 RTP/AVP 0 8 9 18 13 96", "a=ptime:30",
        "m=video 0 RTP/AVP 31", "a=rtpmap:31 H261/90000", "a=inactive",
        "m=audio 49180 RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2", "a=rtcp-mux",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj",
        "a=sendrecv"))
    a1, video, a2 = s.media
    assert s.direction == "recvonly"
    assert (a1.direction, video.direction, a2.direction) == ("recvonly", "inactive", "sendrecv")
    # static payload types named without a=rtpmap (RFC 3551); 96 is dynamic and unnamed
    assert a1.encodings == ("PCMU", "PCMA", "G722", "G729", "CN", "")
    assert a1.codec(9) == STATIC_PAYLOAD_TYPES[9] == RtpMap("G722", 8000, None)
    assert (a1.ptime, video.ptime, a2.ptime) == (30, None, None)
    assert (video.rejected, video.rtp, video.rtcp, video.encodings) == (True, None, None, ("H261",))
    assert a2.rtp == a2.rtcp == Endpoint("192.0.2.1", 49180)  # RFC 5761 mux
    assert (a1.crypto, a2.crypto_suites) == (False, ("AES_CM_128_HMAC_SHA1_80",))
    assert s.anomalies == ()


def test_rtcp_attribute_forms():
    def media(*attrs):
        return parse_sdp(sdp_text(*HEAD, "c=IN IP4 192.0.2.1", "t=0 0",
                                  "m=audio 20000 RTP/AVP 0", *attrs))
    assert media("a=rtcp:20011").media[0].rtcp == Endpoint("192.0.2.1", 20011)
    assert media("a=rtcp:20011 IN IP6 2001:db8::9").media[0].rtcp == Endpoint("2001:db8::9", 20011)
    # a=rtcp wins over rtcp-mux (the mux offer may be refused; RFC 5761 section 5.1.3)
    assert media("a=rtcp-mux", "a=rtcp:20011").media[0].rtcp == Endpoint("192.0.2.1", 20011)
    bad = media("a=rtcp:70000")
    assert (bad.media[0].rtcp, bad.anomalies) == (Endpoint("192.0.2.1", 20001), ("sdp.bad_rtcp",))
    half = media("a=rtcp:20011 IN")
    assert (half.media[0].rtcp, half.anomalies) == (Endpoint("192.0.2.1", 20011), ("sdp.bad_rtcp",))
    last = parse_sdp(sdp_text(*HEAD, "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 65535 RTP/AVP 0"))
    assert (last.media[0].rtp, last.media[0].rtcp) == (Endpoint("192.0.2.1", 65535), None)


def test_multicast_port_count_and_webrtc_proto():
    s = parse_sdp(sdp_text(*HEAD, "c=IN IP4 233.252.0.1/127/2", "t=0 0",
                           "m=audio 49170/2 RTP/AVP 0",
                           "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP6 [2001:db8::7]",
                           "a=rtpmap:111 opus/48000/2", "a=rtcp-mux",
                           "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"))
    mc, webrtc, data = s.media
    assert (mc.connection.address, mc.port, mc.port_count) == ("233.252.0.1", 49170, 2)
    assert (webrtc.is_rtp, webrtc.rtp, webrtc.rtcp) == (
        True, Endpoint("2001:db8::7", 9), Endpoint("2001:db8::7", 9))
    assert (data.is_rtp, data.rtp, data.formats, data.encodings) == (
        False, None, ("webrtc-datachannel",), ("",))
    assert s.anomalies == ("sdp.bracketed_address",)


def test_bare_lf_and_cr_line_endings_parse_the_same():
    crlf = crafted_sdp("192.0.2.10", 40000, "alice")
    reference = parse_sdp(crlf)
    assert parse_sdp(crlf.replace(b"\r\n", b"\n")) == reference
    assert parse_sdp(crlf.replace(b"\r\n", b"\r")) == reference
    mixed = crlf.replace(b"\r\n", b"\n", 3)
    assert parse_sdp(mixed) == reference
    assert parse_sdp(b"\r\n\r\n" + crlf) == reference  # blank lines before v=
    assert parse_sdp(crlf.rstrip(b"\r\n")) == reference  # no final newline


@pytest.mark.parametrize("body", [
    b"", b"\r\n", b"   ", b"hello world", b"\x00\x01\x02\xff" * 20,
    b"<?xml version='1.0'?><isup/>", b"--boundary\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n",
    b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n",  # v= must come first
])
def test_not_sdp_is_none(body):
    assert parse_sdp(body) is None


def test_malformed_lines_counted_and_skipped():
    s = parse_sdp(sdp_text(
        "v=1", "o=only three fields", "s=\xe9t\xe9", "garbage line", "C=IN IP4 192.0.2.1",
        "c=IN IP4", "c=IN IP4 192.0.2.1", "t=0 0",
        "m=audio 5004 RTP/AVP 0 97", "a=rtpmap:97", "a=rtpmap:200 X/8000",
        "a=rtpmap:97 iLBC/8000", "a=rtpmap:97 ignored/16000", "a=ptime:abc",
        "m=audio port RTP/AVP 0", "a=rtcp-mux", "a=ptime:20",
        "m=audio 5006 RTP/AVP 8", "a=ptime:22.5"))
    assert s.anomalies == ("sdp.bad_version", "sdp.bad_origin", "sdp.bad_line", "sdp.bad_line",
                           "sdp.bad_connection", "sdp.bad_rtpmap", "sdp.bad_rtpmap",
                           "sdp.bad_ptime", "sdp.bad_media")
    assert s.origin is None and s.session_name == "\xe9t\xe9"
    assert s.connection == Connection("IP4", "192.0.2.1")  # the first c= was unusable
    first, second = s.media  # the bad m= and its attributes are dropped, not given to others
    assert first.rtpmap == {97: RtpMap("iLBC", 8000, None)}  # the first rtpmap per type wins
    assert (first.ptime, first.rtcp_mux) == (None, False)
    assert (second.ptime, second.rtcp_mux) == (22.5, False)
    assert parse_sdp(b"v=0\r\n") == Sdp(None, "", None, "sendrecv", (), ("sdp.missing_origin",))


def test_non_utf8_and_odd_whitespace():
    s = parse_sdp(b"v=0\r\no=\xff\xfe 1 1 IN IP4 192.0.2.1\r\ns=\x80\r\nc=IN  IP4\t192.0.2.1 \r\n"
                  b"t=0 0\r\nm=audio  5004  RTP/AVP  0 \r\na=sendonly  \r\n")
    assert s.origin.username == "\ufffd\ufffd"
    assert (s.media[0].rtp, s.media[0].direction, s.anomalies) == (
        Endpoint("192.0.2.1", 5004), "sendonly", ())


def test_records_are_frozen():
    s = parse_sdp(crafted_sdp("192.0.2.10", 40000, "alice"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.media[0].port = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.anomalies = ()


# -- never raises --------------------------------------------------------------------------------

def real_bodies() -> list[bytes]:
    paths = [LAB_BASIC, LAB_REINVITE] + [shared(n) for n in (VOLTE, SRTP, IPV6, AAA, FAX, CLARENT,
                                                              FUZZED)]
    return sorted({b for p in paths for _, _, _, b in sdp_messages(p)})


def _check(body: bytes) -> None:
    s = parse_sdp(body)
    if s is None:
        return
    assert all(a.startswith("sdp.") for a in s.anomalies)
    for m in s.media:
        m.rtp, m.rtcp, m.encodings, m.rejected, m.crypto  # noqa: B018 (properties must not raise)


# inserted or substituted by the mutations: separators, digits (non-ASCII ones that
# str.isdigit() accepts and int() may not, and more than int() converts), invalid UTF-8
PIECES = [b"\x00", b"\r", b"\n", b" ", b"=", b":", b"/", b"[", b"]", b"0", b"9", b"a", b"v", b".",
          b"-", b"\xff", "\u00b2".encode(), "\u0663".encode(), b"9" * 5000]


def test_mutated_real_bodies_never_raise():
    """Every prefix of every real body, each line dropped or doubled, and 300 random
    mutations per body: parse_sdp returns None or a record, never raises."""
    rng = random.Random(4566)
    count = 0
    for body in real_bodies():
        for i in range(len(body) + 1):
            _check(body[:i])
            count += 1
        lines = body.split(b"\n")
        for i in range(len(lines)):
            _check(b"\n".join(lines[:i] + lines[i + 1:]))
            _check(b"\n".join(lines[:i] + [lines[i], lines[i]] + lines[i + 1:]))
            count += 2
        for _ in range(300):
            b = bytearray(body)
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(len(b))
                op = rng.random()
                if op < 0.5:
                    b[pos:pos + 1] = rng.choice(PIECES)
                elif op < 0.75:
                    del b[pos]
                else:
                    b[pos:pos] = rng.choice(PIECES)
            _check(bytes(b))
            count += 1
    assert count > 10_000


def test_non_ascii_and_overlong_numbers_are_malformed():
    """str.isdigit() is true for "\u00b2" (int() rejects it) and for "\u0663" (int() reads
    3); int() refuses more than 4300 digits. All are malformed numbers here."""
    sup, arabic, long = "\u00b2", "\u0663", "9" * 5000
    s = parse_sdp(sdp_text(
        *HEAD, "c=IN IP4 192.0.2.1", "t=0 0", f"m=audio 5{sup}04 RTP/AVP 0",
        f"m=audio 5004/{arabic} RTP/AVP 0", f"m=audio {long} RTP/AVP 0",
        "m=audio 5004 RTP/AVP 0 8 " + long, f"a=rtpmap:{long} X/8000", f"a=rtpmap:9{arabic} X/8000",
        f"a=rtpmap:96 X/{sup}", f"a=rtpmap:97 X/8000/{sup}", f"a=ptime:2{sup}", f"a=ptime:2.{sup}",
        f"a=rtcp:{arabic}"))
    assert s.anomalies == ("sdp.bad_media",) * 3 + ("sdp.bad_rtpmap",) * 3 + (
        "sdp.bad_ptime",) * 2 + ("sdp.bad_rtcp",)
    (audio,) = s.media
    assert audio.rtpmap == {97: RtpMap("X", 8000, None)}
    assert audio.encodings == ("PCMU", "PCMA", "")
    assert (audio.codec(long), audio.codec(sup), audio.codec(arabic)) == (None, None, None)
    assert (audio.ptime, audio.rtcp) == (None, Endpoint("192.0.2.1", 5005))
