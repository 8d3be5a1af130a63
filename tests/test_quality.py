"""Voice quality from RTCP (rtcp_mos/binding.py, metrics.py, quality.py; store tables
rtcp_reports and call_quality): binding to calls and sides, per-block figures checked against
tshark's decode of the same frames and hand computations, MOS against G.107, rtpengine's MOS
against the real rtpengine's (pcaps/lab-media-*), and idempotent storage."""
from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
from pathlib import Path

import pytest

from crafted import A_IP, B_IP, T0, frames, sip_call, udp, write_pcap
from pipeline import replay_files
from rtcp_mos.binding import MEDIA_GRACE
from rtcp_mos.emodel import g107
from rtcp_mos.metrics import PairState, interval_loss
from rtcp_mos.rtcp import ReportBlock
from shared_pcaps import shared

REPO = Path(__file__).resolve().parents[1]
B2BUA = "voipshark_sip-rtp-b2bua-call-rtcp.pcap"
CALLER_LEG, CALLEE_LEG = "3cfe1c77155241bb89eb003ab8e2f87b", "54be7fcc-b009-4326-a81e-371a5a93c4b6"


def replay(paths, db, **kw) -> dict:
    return replay_files([str(p) for p in paths], str(db), **kw)


def query(db, sql, *args) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def tshark_blocks(path: str) -> list[dict]:
    """Per RTCP datagram (ICMP-quoted ones left out): time, ports, sender SSRC, SR NTP time and
    its report blocks, from tshark's decoder (an oracle independent of rtcp.py)."""
    fields = ["frame.time_epoch", "udp.srcport", "udp.dstport", "rtcp.senderssrc",
              "rtcp.timestamp.ntp.msw", "rtcp.timestamp.ntp.lsw", "rtcp.ssrc.identifier",
              "rtcp.ssrc.fraction", "rtcp.ssrc.cum_nr", "rtcp.ssrc.ext_high", "rtcp.ssrc.jitter",
              "rtcp.ssrc.lsr", "rtcp.ssrc.dlsr"]
    out = subprocess.run(["tshark", "-r", path, "-o", "rtcp.heuristic_rtcp:TRUE", "-Y",
                          "rtcp && !icmp", "-T", "fields", "-E", "occurrence=a", "-E",
                          "aggregator=,", *sum((["-e", f] for f in fields), [])],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        v = dict(zip(fields, line.split("\t")))
        blocks = []
        lsrs = v["rtcp.ssrc.lsr"].split(",") if v["rtcp.ssrc.lsr"] else []
        for i in range(len(lsrs)):
            blocks.append({k: int(v[f"rtcp.ssrc.{k}"].split(",")[i], 0)
                           for k in ("identifier", "fraction", "cum_nr", "ext_high", "jitter",
                                     "lsr", "dlsr")})
        sender = v["rtcp.senderssrc"].split(",")[0]
        msw = v["rtcp.timestamp.ntp.msw"].split(",")[0]
        rows.append({"ts": float(v["frame.time_epoch"]), "sport": int(v["udp.srcport"]),
                     "dport": int(v["udp.dstport"]), "ssrc": int(sender, 0),
                     "ntp": (int(msw), int(v["rtcp.timestamp.ntp.lsw"].split(",")[0]))
                     if msw else None, "blocks": blocks})
    return rows


@pytest.fixture(scope="module")
def b2bua(tmp_path_factory):
    db = tmp_path_factory.mktemp("q") / "b2bua.db"
    summary = replay([shared(B2BUA)], db)
    return db, summary


def test_b2bua_every_report_binds_to_its_call_and_side(b2bua):
    """The Asterisk B2BUA call: two dialogs (one per leg, each its own Call-ID). Per call and
    side, as the RTCP's 5-tuples in the capture say (tshark lists the same 33 datagrams): the
    caller 192.168.20.132:4001 (side A of the caller's leg, 10 datagrams), Asterisk towards it
    (B, 6), Asterisk towards the callee (A of the callee's leg, 7) and the NAT'd callee,
    whose SDP says 192.168.5.151 while its RTCP comes from 192.168.20.1 (B, 10). One block a
    datagram; the RTCP after the last BYE (up to 8.1 s later) still binds."""
    db, summary = b2bua
    assert summary["counters"]["rtcp.datagrams"] == 33
    assert "media.unbound_report" not in summary["counters"]
    got = dict(((c, s), n) for c, s, n in query(
        db, "select callid, side, count(*) from rtcp_reports group by callid, side"))
    assert got == {(CALLER_LEG, "A"): 10, (CALLER_LEG, "B"): 6, (CALLEE_LEG, "A"): 7,
                   (CALLEE_LEG, "B"): 10}
    by = query(db, "select src_ip, bound_by, count(*) from rtcp_reports group by 1, 2")
    assert sorted(by) == [("192.168.20.1", "destination", 10), ("192.168.20.130", "source", 13),
                          ("192.168.20.132", "source", 10)]
    bye = query(db, "select max(time_epoch) from acc where method = 'BYE'")[0][0]
    late = query(db, "select count(*), max(time_epoch) - ? from rtcp_reports where "
                     "time_epoch > ?", bye, bye)[0]
    assert late[0] == 5 and 8.0 < late[1] < MEDIA_GRACE  # the RTCP BYEs, then 3 more RRs
    assert len(tshark_blocks(shared(B2BUA))) == 33


def test_b2bua_metrics_match_tshark_and_hand_computation(b2bua):
    """jitter_ms = jitter / 8 (PCMU, 8 kHz); rtt = t(report) - t(SR whose NTP middle 32 bits
    are LSR) - DLSR / 65536, from tshark's decode of both frames; loss 0 (no loss on the wire);
    MOS = G.107 (G.711 PLC: Ie 0, Bpl 25.1) of the stored delay and loss."""
    db, _ = b2bua
    wire = tshark_blocks(shared(B2BUA))
    sr_at = {}
    expected_rtt = {}
    for p in wire:
        if p["ntp"]:
            msw, lsw = p["ntp"]
            sr_at[(p["ssrc"], ((msw & 0xFFFF) << 16) | (lsw >> 16))] = p["ts"]
        for b in p["blocks"]:
            if b["lsr"] and (b["identifier"], b["lsr"]) in sr_at:
                rtt = p["ts"] - sr_at[(b["identifier"], b["lsr"])] - b["dlsr"] / 65536
                expected_rtt[(round(p["ts"], 6), p["ssrc"])] = rtt
    assert len(expected_rtt) == 26  # blocks with an LSR whose SR is in the capture
    rows = query(db, "select time_epoch, reporter_ssrc, jitter, jitter_ms, rtt_ms, loss_pct, "
                     "delay_ms, mos, r_factor, codec, codec_fallback from rtcp_reports "
                     "where source_ssrc != 0")
    assert len(rows) == 29
    checked = 0
    for ts, reporter, jitter, jitter_ms, rtt_ms, loss, delay, mos, r, codec, fallback in rows:
        assert codec == "PCMU" and fallback == 0
        assert jitter_ms == pytest.approx(jitter / 8)
        want = expected_rtt.get((round(ts, 6), reporter))
        if want is None:
            assert rtt_ms is None
        else:
            assert rtt_ms == pytest.approx(max(want, 0) * 1000, abs=1e-6)
            checked += 1
        if loss is None:  # the final RR repeats the SR just sent: nothing new expected
            assert mos is None
            continue
        assert loss == 0
        e = g107(delay, loss, 1.0, 0.0, 25.1)
        assert (mos, r) == (pytest.approx(e.MOS), pytest.approx(e.R))
    assert checked == 26


def test_b2bua_call_quality_and_cdr_summary(b2bua):
    """One call_quality row per call and side, each report once; the CDR carries the worst
    side's MOS and each side's average, equal to call_quality's."""
    db, summary = b2bua
    assert summary["call_quality_inserted"] == 4
    q = {(c, s): (n, mn, av) for c, s, n, mn, av in query(
        db, "select callid, side, reports, mos_min, mos_avg from call_quality")}
    assert {k: v[0] for k, v in q.items()} == {(CALLER_LEG, "A"): 8, (CALLER_LEG, "B"): 6,
                                               (CALLEE_LEG, "A"): 7, (CALLEE_LEG, "B"): 8}
    for callid, mos_min, side, avg_a, avg_b in query(
            db, "select callid, mos_min, mos_side, mos_avg_a, mos_avg_b from acc_cdrs"):
        assert mos_min == min(q[(callid, s)][1] for s in "AB") == q[(callid, side)][1]
        assert (avg_a, avg_b) == (q[(callid, "A")][2], q[(callid, "B")][2])


def test_replay_twice_adds_nothing(b2bua, tmp_path):
    db, _ = b2bua
    before = [query(db, f"select * from {t} order by id") for t in
              ("rtcp_reports", "call_quality", "acc_cdrs")]
    again = replay([shared(B2BUA)], db)
    assert (again["rtcp_reports_inserted"], again["call_quality_inserted"]) == (0, 0)
    assert before == [query(db, f"select * from {t} order by id") for t in
                      ("rtcp_reports", "call_quality", "acc_cdrs")]


def test_ndpi_reports_without_sip_are_unbound_counted_and_stored(tmp_path):
    """No SIP: every block is stored with an empty callid and counted. The first report of a
    reporter about a source takes its 8-bit fraction (1/256); the last SR block repeats the
    highest sequence of the one before (nothing expected): loss NULL. The RR's LSR is the first
    SR's NTP middle bits: its RTT is computed by hand from tshark's decode."""
    db = tmp_path / "n.db"
    s = replay([shared("ndpi_rtcp-compound-sr-rr-loss.pcap")], db)
    rows = query(db, "select callid, side, reporter_ssrc, source_ssrc, fraction_lost, "
                     "cumulative_lost, highest_seq, loss_pct, rtt_ms from rtcp_reports order by id")
    wire = [b for p in tshark_blocks(shared("ndpi_rtcp-compound-sr-rr-loss.pcap"))
            for b in p["blocks"]]
    assert [(r[3], r[4], r[5], r[6]) for r in rows] == [
        (b["identifier"], b["fraction"], b["cum_nr"], b["ext_high"]) for b in wire]
    assert s["counters"]["media.unbound_report"] == len(rows) == 5
    assert {r[:2] for r in rows} == {("", "")}
    # the SR's first block (source 0, sequence 0: nothing received yet) has no figures
    assert [r[7] for r in rows] == [None, pytest.approx(100 / 256), 0.0, 0.0, None]
    assert s["counters"]["media.empty_report_block"] == 1
    rtt = [r[8] for r in rows if r[8] is not None]
    wire_all = tshark_blocks(shared("ndpi_rtcp-compound-sr-rr-loss.pcap"))
    msw, lsw = wire_all[0]["ntp"]
    assert wire_all[3]["blocks"][0]["lsr"] == ((msw & 0xFFFF) << 16) | (lsw >> 16)
    want = wire_all[3]["ts"] - wire_all[0]["ts"] - wire_all[3]["blocks"][0]["dlsr"] / 65536
    assert rtt == [pytest.approx(want * 1000)]
    assert s["call_quality_inserted"] == 0


def test_sngrep_early_media_rtcp_bye_makes_no_rows(tmp_path):
    """aaa.pcap's only RTCP is an SR without report blocks + SDES + BYE during early media:
    counted, nothing to store, no error."""
    db = tmp_path / "a.db"
    s = replay([shared("sngrep_aaa-sip-rtp-cancel-auth.pcap")], db)
    assert s["counters"]["rtcp.datagrams"] == 1
    assert (s["rtcp_reports_inserted"], s["call_quality_inserted"]) == (0, 0)


@pytest.mark.parametrize("name", ["clean", "loss-5", "loss-20"])
def test_mos_rtpengine_equals_the_real_rtpengine(tmp_path, name):
    """rtpengine 10.5 (Debian 12; the legacy formula) relayed these calls and Kamailio wrote
    its per-side MOS (rtpengine.json): sipprobe's call_quality per side agrees within 0.1."""
    d = REPO / "pcaps" / f"lab-media-{name}"
    db = tmp_path / "lab.db"
    replay([d / "capture.pcap"], db, rtpengine_formula="legacy")
    pvs = json.loads((d / "rtpengine.json").read_text())["calls"][0]["kamailio_pvs"]
    rows = query(db, "select side, reports, mos_rtpengine_min, mos_rtpengine_avg, "
                     "mos_rtpengine_max from call_quality order by side")
    assert [r[:2] for r in rows] == [("A", 5), ("B", 5)]  # each relayed report once
    for side, _, mn, avg, mx in rows:
        want = pvs[side]
        tenth = 0.1 + 1e-9  # MOS in tenths
        assert mn == pytest.approx(float(want["min"]), abs=tenth)
        assert avg == pytest.approx(float(want["average"]), abs=tenth)
        assert mx == pytest.approx(float(want["max"]), abs=tenth)
    # each report was seen on both legs: twice as many rows as reports
    assert query(db, "select count(*) from rtcp_reports")[0][0] == 20


# -- interval loss: wrap and reset (RFC 3550 section 6.4.4, A.3) ------------------------------

def test_interval_loss_wraps_and_resets():
    assert interval_loss(0xFFFFFFF0, 5, 0x00000010, 7) == pytest.approx(2 * 100 / 32)
    assert interval_loss(100, 0x7FFFFF, 200, -0x800000) == pytest.approx(1.0)  # 24-bit wrap
    assert interval_loss(100, 10, 200, 5) == 0.0  # duplicates outnumber losses
    assert interval_loss(5000, 10, 100, 0) is None  # sequence went back: reset
    assert interval_loss(100, 10, 100 + (1 << 21), 10) is None  # a jump: restart
    assert interval_loss(100, 10, 100, 10) is None  # nothing expected


def test_pair_state_falls_back_to_the_fraction_on_reset():
    s = PairState()
    assert s.loss(ReportBlock(1, 64, 10, 1000, 0, 0, 0), 0.0) == (25.0, False)  # fraction
    assert s.loss(ReportBlock(1, 0, 20, 1100, 0, 0, 0), 5.0) == (10.0, False)
    assert s.loss(ReportBlock(1, 0, 20, 1100, 0, 0, 0), 5.01) == (10.0, True)  # relayed copy
    assert s.loss(ReportBlock(1, 0, 20, 1100, 0, 0, 0), 10.0) == (None, False)  # a repeat
    assert s.loss(ReportBlock(1, 128, 0, 50, 0, 0, 0), 15.0) == (50.0, False)  # reset


# -- crafted calls: rtcp-mux, grace period, interval loss in storage ------------------------

def _rr(reporter: int, source: int, fraction: int, lost: int, seq: int) -> bytes:
    block = struct.pack("!II4I", source, (fraction << 24) | (lost & 0xFFFFFF), seq, 40, 0, 0)
    return struct.pack("!BBHI", 0x81, 201, 7, reporter) + block


def _mux(msg: bytes) -> bytes:
    """The SDP with a=rtcp-mux (RFC 5761), Content-Length kept right."""
    if b"m=audio" not in msg:
        return msg
    head, body = msg.split(b"\r\n\r\n", 1)
    body = body.replace(b"a=sendrecv\r\n", b"a=rtcp-mux\r\na=sendrecv\r\n")
    lines = [l if not l.startswith(b"Content-Length") else b"Content-Length: %d" % len(body)
             for l in head.split(b"\r\n")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _call(tmp_path, rtcp, *, mux=False):
    out = []
    for t, (who, msg) in zip((0.0, 0.01, 0.2, 2.0, 2.05, 30.0, 30.05), sip_call()):
        src, dst = (A_IP, B_IP) if who == "a" else (B_IP, A_IP)
        out.append((T0 + t, udp(src, dst, 5060, 5060, _mux(msg) if mux else msg)))
    out += rtcp
    path = write_pcap(tmp_path / "c.pcap", frames(sorted(out, key=lambda p: p[0])), 1)
    db = tmp_path / "c.db"
    return db, replay([path], db)


def test_rtcp_mux_binds_on_the_rtp_port_and_late_reports_by_grace(tmp_path):
    """a=rtcp-mux: RTCP on the RTP ports (crafted.A_RTP/B_RTP) binds. The BYE comes at 30 s;
    a report 5 s later still binds, one 15 s later (past MEDIA_GRACE) is unbound. Interval
    loss across the stored rows: 10 of 100 expected, then the 24-bit cumulative count and the
    sequence both wrap."""
    from crafted import A_RTP, B_RTP

    def rr(t, fraction, lost, seq, sport=B_RTP, dport=A_RTP):
        return (T0 + t, udp(B_IP, A_IP, sport, dport, _rr(0xB, 0xA, fraction, lost, seq)))
    db, s = _call(tmp_path, [rr(5, 0, 0x7FFFF0, 0xFFFFFF00), rr(10, 25, 0x7FFFFA, 0x00000000),
                             rr(20, 0, -0x7FFFFE & 0xFFFFFF, 0x00000064), rr(35, 0, 0, 0x200),
                             rr(45, 0, 0, 0x300)], mux=True)
    rows = query(db, "select time_epoch - ?, callid != '', side, bound_by, loss_pct "
                     "from rtcp_reports order by id", T0)
    assert [r[1:4] for r in rows] == [(True, "B", "source")] * 4 + [(False, "", "")]
    assert rows[1][4] == pytest.approx(10 * 100 / 256)
    assert rows[2][4] == pytest.approx(8 * 100 / 100)  # 0x7FFFFA -> -0x7FFFFE: 8 lost
    assert s["counters"]["media.unbound_report"] == 1


def _reinvite(t: float, cseq: int, a_port: int, direction: bytes, answer_dir: bytes):
    """A re-INVITE from the caller moving its media to `a_port` with `direction`, the 200
    answering with `answer_dir`, and the ACK (RFC 3264 section 8.4: hold is sendonly/recvonly)."""
    from crafted import A_RTP, B_RTP, sdp, sip_message

    frm = "\"Alice\" <sip:alice@example.com>;tag=9fxced76sl1"
    to = "<sip:bob@example.org>;tag=83212343561"
    cid = "a84b4c76e66710@pc33.example.com"

    def via(branch):
        return ("Via", f"SIP/2.0/UDP {A_IP}:5060;branch=z9hG4bK{branch}")

    def body(ip, port, user, d):
        return sdp(ip, port, user).replace(b"a=sendrecv", d)
    branch = f"re{cseq}"
    offer = sip_message("INVITE sip:bob@198.51.100.20:5060 SIP/2.0",
                        [via(branch), ("From", frm), ("To", to), ("Call-ID", cid),
                         ("CSeq", f"{cseq} INVITE")], body(A_IP, a_port, "alice", direction))
    answer = sip_message("SIP/2.0 200 OK", [via(branch), ("From", frm), ("To", to),
                                             ("Call-ID", cid), ("CSeq", f"{cseq} INVITE")],
                         body(B_IP, B_RTP, "bob", answer_dir))
    ack = sip_message("ACK sip:bob@198.51.100.20:5060 SIP/2.0",
                      [via(f"ack{cseq}"), ("From", frm), ("To", to), ("Call-ID", cid),
                       ("CSeq", f"{cseq} ACK")])
    assert A_RTP != a_port or direction == b"a=sendrecv"
    return [(T0 + t, udp(A_IP, B_IP, 5060, 5060, offer)),
            (T0 + t + 0.01, udp(B_IP, A_IP, 5060, 5060, answer)),
            (T0 + t + 0.02, udp(A_IP, B_IP, 5060, 5060, ack))]


def test_reinvite_to_hold_and_back_rebinds_the_callers_new_ports(tmp_path):
    """A re-INVITE puts the call on hold and moves the caller's media to a port the first
    offer never named (RFC 3264 section 8.4); the caller's reports from the new RTCP port bind
    by source, and after the second re-INVITE (back to sendrecv on the first port) so do the
    reports from the first port again. The SDP's direction does not stop binding: RTCP flows
    on hold too (RFC 3264 section 5.1)."""
    from crafted import A_RTP, B_RTP

    held = A_RTP + 200

    def rr_from_a(t, rtcp_port):
        return (T0 + t, udp(A_IP, B_IP, rtcp_port, B_RTP + 1, _rr(0xA, 0xB, 0, 0, 100 + int(t))))
    rtcp = (_reinvite(8.0, 3, held, b"a=sendonly", b"a=recvonly")
            + [rr_from_a(12.0, held + 1)]
            + _reinvite(16.0, 4, A_RTP, b"a=sendrecv", b"a=sendrecv")
            + [rr_from_a(20.0, A_RTP + 1)])
    db, s = _call(tmp_path, rtcp)
    rows = query(db, "select time_epoch - ?, callid != '', side, bound_by from rtcp_reports "
                     "order by id", T0)
    assert [(round(r[0]), *r[1:]) for r in rows] == [(12, True, "A", "source"),
                                                     (20, True, "A", "source")]
    assert "media.unbound_report" not in s["counters"]


def _xr_voip_metrics(reporter: int, source: int, *, loss: int, burst_density: int,
                     gap_density: int, burst_ms: int, gap_ms: int, r: int, mos_lq: int,
                     mos_cq: int) -> bytes:
    """An XR packet with one VoIP Metrics block (RFC 3611 section 4.7, block type 7, 36 bytes
    with its header): loss and discard rates /256, densities /256, durations ms, delays ms,
    levels, RERL, Gmin, R, ext R, MOS-LQ and MOS-CQ x10, RX config, JB nominal/max/abs max."""
    block = struct.pack("!BBHIBBBBHHHHbbBBBBBBBBHHH", 7, 0, 8, source, loss, 0, burst_density,
                        gap_density, burst_ms, gap_ms, 40, 20, -20, -70, 127, 16, r, 127,
                        mos_lq, mos_cq, 0, 0, 40, 80, 120)
    return struct.pack("!BBHI", 0x80, 207, (4 + len(block)) // 4, reporter) + block


def test_xr_voip_metrics_give_the_burst_ratio_and_the_endpoints_own_scores(tmp_path):
    """An RR with an XR VoIP Metrics block about the same source (RFC 3611 section 4.7): the
    row keeps the endpoint's own R (xr_r_factor) and MOS-LQ/CQ (tenths on the wire), and the
    block's G.107 figure uses the burst ratio the XR's burst and gap metrics give (> 1 for
    bursty loss), so its MOS is lower than random loss of the same rate would give."""
    from crafted import A_RTP, B_RTP

    rr = _rr(0xB, 0xA, 26, 10, 1000)  # about 10 % (26/256)
    xr = _xr_voip_metrics(0xB, 0xA, loss=26, burst_density=128, gap_density=2, burst_ms=200,
                          gap_ms=2000, r=70, mos_lq=35, mos_cq=34)
    packets = [(T0 + 5.0, udp(B_IP, A_IP, B_RTP + 1, A_RTP + 1, rr + xr))]
    db, s = _call(tmp_path, packets)
    (row,) = query(db, "select xr_r_factor, xr_mos_lq, xr_mos_cq, burst_ratio, loss_pct, "
                       "delay_ms, codec, r_factor from rtcp_reports")
    xr_r, lq, cq, burst, loss, delay, codec, r = row
    assert (xr_r, lq, cq) == (70.0, 3.5, 3.4)
    assert burst > 1.0
    assert codec == "PCMU" and loss == pytest.approx(26 * 100 / 256)
    random_loss = g107(delay, loss, 1.0, 0.0, 25.1).R
    assert r == pytest.approx(g107(delay, loss, burst, 0.0, 25.1).R) and r < random_loss


def test_side_rtpengine_mos_is_what_kamailio_writes_into_its_pvs():
    """SideQuality.rtpengine_mos works min / average / max out of the per-SSRC stats directly;
    it must give what Kamailio's pvs say (rtpengine_mos.kamailio_mos_pvs over ng_stats, the
    texts read as numbers) for any mix of SSRCs, with and without a MOS, kept and dropped."""
    import random

    from rtcp_mos.quality import SideQuality
    from rtcp_mos.rtpengine_mos import RtpengineSsrcStats

    rng = random.Random(20261206)
    for _ in range(500):
        side = SideQuality()
        for ssrc in range(rng.randint(0, 4)):
            stats = side.rtpengine[ssrc] = RtpengineSsrcStats()
            t = 0
            for _ in range(rng.randint(0, 6)):
                t += rng.choice((500_000, 1_000_000, 5_000_000))  # some under 1 s: dropped
                stats.add(t, rng.choice((0, rng.randint(1000, 900_000))), 0,
                          rng.randint(0, 80), rng.randint(0, 40))
        pvs = side.rtpengine_mos_pvs()
        assert side.rtpengine_mos() == tuple(
            float(pvs[k]) if k in pvs else None
            for k in ("mos_min_pv", "mos_average_pv", "mos_max_pv"))
