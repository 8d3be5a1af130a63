#!/usr/bin/env python3
"""Deterministic, fast generator of benchmark captures for sipprobe.

Two captures (classic pcap, microsecond timestamps, Ethernet link type):

* ``rtp-heavy.pcap``: CALLS concurrent calls between distinct IPv4 endpoints.
  Each call: SIP over UDP 5060 (INVITE+SDP, 100, 180, 200+SDP, ACK, BYE, 200),
  PCMU RTP every 20 ms in both directions on the SDP ports (12-byte header +
  160-byte payload), and an RTCP compound (SR with one report block + SDES
  CNAME) every 5 s per direction on port+1.  Default 400 calls x 150 s, about
  6 M packets.  ``rtp-heavy-half.pcap`` is the same with half the call
  duration (same concurrency, half the file), to show memory is flat in file
  size.
* ``sig-only.pcap``: SIG_CALLS calls (default 50 000) of 7 SIP messages each,
  arriving at SIG_RATE calls/s and held 10..110 s, so several thousand
  Call-IDs are open at once.

Speed: no scapy, no per-packet object.  Every RTP stream owns one
pre-built pcap record (bytearray); per packet only the pcap timestamp, IP
ID + IP checksum and UDP checksum + RTP seq/timestamp are patched with
``struct.pack_into`` and the record is written.  Checksums are updated
incrementally: the ones' complement sum of 16-bit words is the big integer
modulo 0xffff (2**16 == 1 mod 0xffff), so a varying word adds its value.
Packets are written in timestamp order: all streams share the 20 ms period,
so each tick walks the active streams in phase order and merges in the
(rare) SIP and RTCP packets.

Each capture gets a sidecar ``NAME.pcap.json`` with its parameters and the
exact expected counts (packets, SIP requests/responses, RTCP packets); an
existing capture is reused when parameters and size match (``--force``
regenerates).

Usage:
    python bench/gen_captures.py [--out DIR] [--calls 400] [--duration 150]
                                 [--sig-calls 50000] [--only rtp,sig] [--force]
    python bench/gen_captures.py --quick       # 1/20-size set in OUT/quick
    python bench/gen_captures.py --validate    # tiny set + tshark checks
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GEN_VERSION = 3
DEFAULT_OUT = Path("/tmp/sipprobe-bench")
T0_US = 1_700_000_000 * 1_000_000  # 2023-11-14T22:13:20Z, fixed for determinism
NTP_EPOCH_OFFSET = 2_208_988_800
PTIME_US = 20_000
RTP_PAYLOAD_LEN = 160
RTCP_INTERVAL_US = 5_000_000
SIP_PORT = 5060

# Parameter sets.  "quick" is ~1/20 of the full size (run.py --quick smoke run),
# "validate" is tiny (tshark well-formedness check).
FULL = dict(calls=400, duration=150.0, sig_calls=50_000, sig_rate=100.0, seed=1)
QUICK = dict(calls=200, duration=15.0, sig_calls=2_500, sig_rate=100.0, seed=1)
VALIDATE = dict(calls=20, duration=12.0, sig_calls=200, sig_rate=100.0, seed=1)

PCAP_GLOBAL_HDR = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_PCAP_REC = struct.Struct("<IIII")
_PCAP_TS_INTO = struct.Struct("<II").pack_into
_IP_VAR_INTO = struct.Struct("!HHBBH").pack_into  # id, flags/frag, ttl, proto, csum
_UDP_RTP_INTO = struct.Struct("!HBBHI").pack_into  # udp csum, V/P/X/CC, M/PT, seq, ts
_IP_HDR = struct.Struct("!BBHHHBBH4s4s")
_UDP_HDR = struct.Struct("!HHHH")
_RTP_HDR = struct.Struct("!BBHII")
ETH_IPV4 = b"\x08\x00"

# Offsets inside one pcap record (16-byte record header + Ethernet + IPv4 + UDP + RTP).
OFF_IP_ID = 16 + 14 + 4
OFF_UDP_CSUM = 16 + 14 + 20 + 6


# --------------------------------------------------------------------------- helpers


def ip4(a: int, b: int, c: int, d: int) -> bytes:
    return bytes((a, b, c, d))


def ip_str(ip: bytes) -> str:
    return ".".join(map(str, ip))


def mac_for(ip: bytes) -> bytes:
    return b"\x02\x00" + ip  # locally administered, derived from the address


def csum_residue(data: bytes) -> int:
    """Ones' complement sum of 16-bit big-endian words, as a residue mod 0xffff."""
    if len(data) & 1:
        data += b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF


def csum_from_residue(r: int) -> int:
    # folded sum is r (or 0xffff when r == 0 for non-zero data); checksum is its
    # complement; never 0, which matters for UDP (0 means "no checksum").
    return 0xFFFF - (r % 0xFFFF)


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ipid: int, ttl: int = 64) -> bytes:
    """Ethernet + IPv4 (DF) + UDP frame with correct IP and UDP checksums."""
    ulen = 8 + len(payload)
    iphdr = _IP_HDR.pack(0x45, 0xB8 if sport != SIP_PORT else 0x68, 20 + ulen, ipid, 0x4000, ttl, 17, 0, src, dst)
    ipcs = csum_from_residue(csum_residue(iphdr))
    iphdr = iphdr[:10] + struct.pack("!H", ipcs) + iphdr[12:]
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    udph = _UDP_HDR.pack(sport, dport, ulen, 0)
    ucs = csum_from_residue(csum_residue(pseudo + udph + payload))
    udph = _UDP_HDR.pack(sport, dport, ulen, ucs)
    return mac_for(dst) + mac_for(src) + ETH_IPV4 + iphdr + udph + payload


def pcap_record(t_us: int, frame: bytes) -> bytes:
    sec, usec = divmod(t_us, 1_000_000)
    n = len(frame)
    return _PCAP_REC.pack(sec, usec, n, n) + frame


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


# --------------------------------------------------------------------------- SIP


@dataclass
class SipCall:
    caller_ip: bytes
    callee_ip: bytes
    caller_user: str
    callee_user: str
    caller_name: str
    domain: str
    call_id: str
    from_tag: str
    to_tag: str
    branches: tuple  # INVITE, ACK, BYE
    cseq: int
    callee_cseq: int
    bye_by_callee: bool
    caller_rtp_port: int
    callee_rtp_port: int
    sess_a: int
    sess_b: int
    ipid: int


ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, REFER, NOTIFY, INFO"
FIRST_NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar", "Peggy", "Trent", "Victor", "Walter")


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def new_sip_call(rng: random.Random, caller_ip: bytes, callee_ip: bytes, caller_port: int, callee_port: int) -> SipCall:
    return SipCall(
        caller_ip=caller_ip,
        callee_ip=callee_ip,
        caller_user=f"4930{rng.randrange(10**7):07d}",
        callee_user=f"4989{rng.randrange(10**7):07d}",
        caller_name=rng.choice(FIRST_NAMES),
        domain="voip.example.net",
        call_id=f"{_hex(rng, 64)}-{_hex(rng, 32)}@{ip_str(caller_ip)}",
        from_tag=_hex(rng, 32),
        to_tag=_hex(rng, 32),
        branches=tuple("z9hG4bK" + _hex(rng, 64) for _ in range(3)),
        cseq=rng.randrange(1, 30000),
        callee_cseq=rng.randrange(1, 30000),
        bye_by_callee=rng.random() < 0.4,
        caller_rtp_port=caller_port,
        callee_rtp_port=callee_port,
        sess_a=rng.randrange(10**9, 10**10),
        sess_b=rng.randrange(10**9, 10**10),
        ipid=rng.randrange(65536),
    )


def _sdp(ip: str, sess: int, port: int, answer: bool) -> str:
    fmts = "0 101" if answer else "0 8 101"
    lines = [
        "v=0",
        f"o=- {sess} {sess} IN IP4 {ip}",
        "s=-",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {fmts}",
        "a=rtpmap:0 PCMU/8000",
    ]
    if not answer:
        lines.append("a=rtpmap:8 PCMA/8000")
    lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


def _msg(start: str, headers: list[str], body: str = "") -> bytes:
    if body:
        headers = headers + ["Content-Type: application/sdp"]
    headers = headers + [f"Content-Length: {len(body.encode())}"]
    return (start + "\r\n" + "\r\n".join(headers) + "\r\n\r\n" + body).encode()


SIP_SEQUENCE = ("INVITE", "100", "180", "200", "ACK", "BYE", "200")


def render_sip_call(c: SipCall) -> list[bytes]:
    """The 7 frames of one call, in SIP_SEQUENCE order (Ethernet frames, no pcap header)."""
    a, b = ip_str(c.caller_ip), ip_str(c.callee_ip)
    from_hdr = f'From: "{c.caller_name}" <sip:{c.caller_user}@{c.domain}>;tag={c.from_tag}'
    to_hdr = f"To: <sip:{c.callee_user}@{c.domain}>"
    to_hdr_t = f"{to_hdr};tag={c.to_tag}"
    cid = f"Call-ID: {c.call_id}"
    via_inv = f"Via: SIP/2.0/UDP {a}:{SIP_PORT};branch={c.branches[0]};rport"
    via_inv_r = f"Via: SIP/2.0/UDP {a}:{SIP_PORT};branch={c.branches[0]};rport={SIP_PORT};received={a}"
    contact_a = f"Contact: <sip:{c.caller_user}@{a}:{SIP_PORT}>"
    contact_b = f"Contact: <sip:{c.callee_user}@{b}:{SIP_PORT}>"
    ua_a = "User-Agent: sipprobe-bench-ua/1.0"
    ua_b = "Server: sipprobe-bench-ua/1.0"
    cseq_inv = f"CSeq: {c.cseq} INVITE"
    ruri_b = f"sip:{c.callee_user}@{b}:{SIP_PORT}"

    invite = _msg(
        f"INVITE {ruri_b} SIP/2.0",
        [via_inv, "Max-Forwards: 70", from_hdr, to_hdr, cid, cseq_inv, contact_a, f"Allow: {ALLOW}", "Supported: replaces, timer", ua_a],
        _sdp(a, c.sess_a, c.caller_rtp_port, answer=False),
    )
    trying = _msg("SIP/2.0 100 Trying", [via_inv_r, from_hdr, to_hdr, cid, cseq_inv, ua_b])
    ringing = _msg("SIP/2.0 180 Ringing", [via_inv_r, from_hdr, to_hdr_t, cid, cseq_inv, contact_b, ua_b])
    ok = _msg(
        "SIP/2.0 200 OK",
        [via_inv_r, from_hdr, to_hdr_t, cid, cseq_inv, contact_b, f"Allow: {ALLOW}", "Supported: replaces, timer", ua_b],
        _sdp(b, c.sess_b, c.callee_rtp_port, answer=True),
    )
    ack = _msg(
        f"ACK {ruri_b} SIP/2.0",
        [f"Via: SIP/2.0/UDP {a}:{SIP_PORT};branch={c.branches[1]};rport", "Max-Forwards: 70", from_hdr, to_hdr_t, cid, f"CSeq: {c.cseq} ACK", ua_a],
    )
    if c.bye_by_callee:
        via_bye = f"Via: SIP/2.0/UDP {b}:{SIP_PORT};branch={c.branches[2]};rport"
        bye_hdrs = [
            "Max-Forwards: 70",
            "From: " + to_hdr_t[4:],
            "To: " + from_hdr[6:],
            cid,
            f"CSeq: {c.callee_cseq} BYE",
        ]
        bye = _msg(f"BYE sip:{c.caller_user}@{a}:{SIP_PORT} SIP/2.0", [via_bye] + bye_hdrs + [ua_b])
        bye_ok = _msg("SIP/2.0 200 OK", [via_bye + f"={SIP_PORT};received={b}"] + bye_hdrs[1:] + [ua_a])
    else:
        via_bye = f"Via: SIP/2.0/UDP {a}:{SIP_PORT};branch={c.branches[2]};rport"
        bye_hdrs = ["Max-Forwards: 70", from_hdr, to_hdr_t, cid, f"CSeq: {c.cseq + 1} BYE"]
        bye = _msg(f"BYE {ruri_b} SIP/2.0", [via_bye] + bye_hdrs + [ua_a])
        bye_ok = _msg("SIP/2.0 200 OK", [via_bye + f"={SIP_PORT};received={a}"] + bye_hdrs[1:] + [ua_b])

    A, B = c.caller_ip, c.callee_ip
    fwd, rev = (A, B), (B, A)
    bye_fwd = rev if c.bye_by_callee else fwd
    bye_rev = fwd if c.bye_by_callee else rev
    plan = [(fwd, invite), (rev, trying), (rev, ringing), (rev, ok), (fwd, ack), (bye_fwd, bye), (bye_rev, bye_ok)]
    return [udp_frame(s, d, SIP_PORT, SIP_PORT, payload, (c.ipid + i * 7) & 0xFFFF) for i, ((s, d), payload) in enumerate(plan)]


def expected_sip_counts(calls: int) -> dict:
    return {
        "requests": {"INVITE": calls, "ACK": calls, "BYE": calls},
        "responses": {"100": calls, "180": calls, "200": 2 * calls},
        "total": 7 * calls,
    }


def sip_offsets(rng: random.Random, ring_s: tuple, hold_us: int) -> list[int]:
    """Relative times (us) of the 7 messages: INVITE .. 200(BYE)."""
    t100 = rng.randrange(1_000, 6_000)
    t180 = t100 + rng.randrange(20_000, 150_000)
    t200 = t180 + rng.randrange(int(ring_s[0] * 1e6), int(ring_s[1] * 1e6))
    tack = t200 + rng.randrange(5_000, 30_000)
    tbye = tack + hold_us
    tbok = tbye + rng.randrange(2_000, 12_000)
    return [0, t100, t180, t200, tack, tbye, tbok]


# --------------------------------------------------------------------------- RTCP


def ntp_of(t_us: int) -> tuple[int, int]:
    sec, usec = divmod(t_us, 1_000_000)
    return sec + NTP_EPOCH_OFFSET, (usec << 32) // 1_000_000


@dataclass
class Stream:
    src: bytes
    dst: bytes
    sport: int
    dport: int
    ssrc: int
    seq0: int
    ts0: int
    ipid0: int
    phase: int
    kstart: int
    kend: int
    cname: str
    rtcp_times: list
    payload: bytes

    def sent_before(self, t_us: int) -> int:
        """RTP packets of this stream with timestamp < t_us."""
        k = ceil_div(t_us - T0_US - self.phase, PTIME_US)
        return max(0, min(self.kend, k) - self.kstart)

    def first_time(self) -> int:
        return T0_US + self.kstart * PTIME_US + self.phase


def rtcp_compound(s: Stream, peer: Stream, t_us: int, jitter: int) -> bytes:
    """SR (one report block about the peer stream) + SDES CNAME."""
    count = s.sent_before(t_us)
    ntp_sec, ntp_frac = ntp_of(t_us)
    rtp_ts = (s.ts0 + (t_us - s.first_time()) * 8 // 1000) & 0xFFFFFFFF
    received = peer.sent_before(t_us)
    blocks = b""
    if received:
        ext_seq = (peer.seq0 + received - 1) & 0xFFFFFFFF
        lsr = dlsr = 0
        prev = [x for x in peer.rtcp_times if x < t_us]
        if prev:
            ps, pf = ntp_of(prev[-1])
            lsr = ((ps & 0xFFFF) << 16) | (pf >> 16)
            dlsr = ((t_us - prev[-1]) << 16) // 1_000_000
        # fraction lost 0, cumulative lost 0 (the generated RTP has no loss)
        blocks = struct.pack("!IIIIII", peer.ssrc, 0, ext_seq, jitter, lsr, dlsr)
    rc = len(blocks) // 24
    sr_body = struct.pack("!IIIIII", s.ssrc, ntp_sec, ntp_frac, rtp_ts, count, count * RTP_PAYLOAD_LEN) + blocks
    sr = struct.pack("!BBH", 0x80 | rc, 200, (4 + len(sr_body)) // 4 - 1) + sr_body
    cname = s.cname.encode()
    chunk = struct.pack("!IBB", s.ssrc, 1, len(cname)) + cname + b"\x00"  # item + end-of-list
    chunk += b"\x00" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, 202, (4 + len(chunk)) // 4 - 1) + chunk
    return sr + sdes


# --------------------------------------------------------------------------- RTP-heavy capture


def _host(net: int, i: int) -> bytes:
    h = i + 1
    return ip4(10, net, h // 250, h % 250 + 1)


def gen_rtp_heavy(path: Path, calls: int, duration: float, seed: int) -> dict:
    rng = random.Random(f"rtp-heavy/{seed}/{calls}/{duration}")
    stagger_us = int(duration * 0.1 * 1e6)
    dur_us = int(duration * 1e6)
    nstreams = 2 * calls
    if nstreams <= PTIME_US:
        phases = rng.sample(range(PTIME_US), nstreams)
    else:
        phases = [rng.randrange(PTIME_US) for _ in range(nstreams)]

    events: list[tuple] = []  # (t_us, tiebreak, pcap record bytes)
    streams: list[Stream] = []
    pairs = []
    used_ips = set()
    for i in range(calls):
        a, b = _host(1, i), _host(2, i)
        assert a not in used_ips and b not in used_ips
        used_ips.update((a, b))
        pa, pb = rng.randrange(16384, 32768, 2), rng.randrange(16384, 32768, 2)
        sc = new_sip_call(rng, a, b, pa, pb)
        t_inv = T0_US + 1_000_000 + rng.randrange(stagger_us + 1)
        hold = int(dur_us * rng.uniform(0.9, 1.1))
        offs = sip_offsets(rng, (1.0, 4.0), hold)
        for j, frame in enumerate(render_sip_call(sc)):
            events.append((t_inv + offs[j], len(events), pcap_record(t_inv + offs[j], frame)))
        t200, tack, tbye = t_inv + offs[3], t_inv + offs[4], t_inv + offs[5]
        pair = []
        for d, (src, dst, sp, dp, tstart) in enumerate(((b, a, pb, pa, t200 + rng.randrange(5_000, 20_000)), (a, b, pa, pb, tack + rng.randrange(1_000, 5_000)))):
            phase = phases[2 * i + d]
            kstart = ceil_div(tstart - T0_US - phase, PTIME_US)
            kend = ceil_div(tbye - T0_US - phase, PTIME_US)
            off = rng.randrange(RTCP_INTERVAL_US // 2, RTCP_INTERVAL_US)
            t0 = T0_US + kstart * PTIME_US + phase
            rtcp_times = list(range(t0 + off, tbye, RTCP_INTERVAL_US))
            ssrc = rng.getrandbits(32)
            st = Stream(src, dst, sp, dp, ssrc, rng.randrange(65536), rng.getrandbits(32), rng.randrange(65536), phase, kstart, kend,
                        f"{ssrc:08x}@{ip_str(src)}", rtcp_times, rng.randbytes(RTP_PAYLOAD_LEN))
            pair.append(st)
            streams.append(st)
        pairs.append(pair)

    n_rtcp = 0
    for s0, s1 in pairs:
        for s, peer in ((s0, s1), (s1, s0)):
            for t in s.rtcp_times:
                payload = rtcp_compound(s, peer, t, rng.randrange(2, 60))
                frame = udp_frame(s.src, s.dst, s.sport + 1, s.dport + 1, payload, rng.randrange(65536))
                events.append((t, len(events), pcap_record(t, frame)))
                n_rtcp += 1
    events.sort(key=lambda e: (e[0], e[1]))

    # Per-stream record templates and incremental checksum bases.
    starts: dict[int, list] = {}
    ends: dict[int, list] = {}
    for s in streams:
        if s.kend <= s.kstart:
            continue
        rtp_hdr = _RTP_HDR.pack(0x80, 0, 0, 0, s.ssrc)  # PT 0 (PCMU), seq/ts patched
        payload = rtp_hdr + s.payload
        frame = bytearray(udp_frame(s.src, s.dst, s.sport, s.dport, payload, 0))
        ulen = 8 + len(payload)
        # IP residue with id = 0 and checksum = 0
        frame[14 + 10:14 + 12] = b"\x00\x00"
        ip_base = csum_residue(bytes(frame[14:34]))
        udp_base = csum_residue(s.src + s.dst + struct.pack("!BBH", 0, 17, ulen) + _UDP_HDR.pack(s.sport, s.dport, ulen, 0) + payload)
        rec = bytearray(_PCAP_REC.pack(0, 0, len(frame), len(frame))) + frame
        entry = (s.phase, rec, s.seq0, s.ts0, s.ipid0, s.kstart, ip_base, udp_base)
        starts.setdefault(s.kstart, []).append(entry)
        ends.setdefault(s.kend, []).append(entry)

    n_rtp = sum(max(0, s.kend - s.kstart) for s in streams)
    kmin = min(starts) if starts else 0
    kmax = max(ends) if ends else 0
    change_ticks = set(starts) | set(ends)

    ts_into, ip_into, udp_into = _PCAP_TS_INTO, _IP_VAR_INTO, _UDP_RTP_INTO
    OFF_ID, OFF_U = OFF_IP_ID, OFF_UDP_CSUM
    BIG = 1 << 62
    ev_iter = iter(events)
    nxt = next(ev_iter, None)
    ev_t = nxt[0] if nxt else BIG
    active: list = []
    written = 0
    with open(path, "wb", buffering=1 << 22) as f:
        w = f.write
        w(PCAP_GLOBAL_HDR)
        for k in range(kmin, kmax):
            if k in change_ticks:
                gone = ends.get(k)
                if gone:
                    ids = {id(e) for e in gone}
                    active = [e for e in active if id(e) not in ids]
                new = starts.get(k)
                if new:
                    active = sorted(active + new, key=lambda e: e[0])
            base = T0_US + k * PTIME_US
            bsec, busec = divmod(base, 1_000_000)
            for phase, rec, seq0, ts0, id0, kst, ipb, ub in active:
                t = base + phase
                while ev_t <= t:
                    w(nxt[2])
                    written += 1
                    nxt = next(ev_iter, None)
                    ev_t = nxt[0] if nxt else BIG
                n = k - kst
                seq = (seq0 + n) & 0xFFFF
                ts = (ts0 + 160 * n) & 0xFFFFFFFF
                ipid = (id0 + n) & 0xFFFF
                usec = busec + phase
                if usec >= 1_000_000:
                    ts_into(rec, 0, bsec + 1, usec - 1_000_000)
                else:
                    ts_into(rec, 0, bsec, usec)
                ip_into(rec, OFF_ID, ipid, 0x4000, 64, 17, 0xFFFF - (ipb + ipid) % 0xFFFF)
                udp_into(rec, OFF_U, 0xFFFF - (ub + seq + ts) % 0xFFFF, 0x80, 0, seq, ts)
                w(rec)
            written += len(active)
        while nxt is not None:
            w(nxt[2])
            written += 1
            nxt = next(ev_iter, None)

    expected_total = n_rtp + n_rtcp + 7 * calls
    assert written == expected_total, (written, expected_total)
    return {
        "packets": written,
        "rtp_packets": n_rtp,
        "rtcp_packets": n_rtcp,
        "sip": expected_sip_counts(calls),
        "max_open_calls": calls,
        "rtp_ports_example": [pairs[0][0].sport, pairs[0][0].dport] if pairs else [],
    }


# --------------------------------------------------------------------------- signalling-only capture


def gen_sig_only(path: Path, calls: int, rate: float, seed: int) -> dict:
    rng = random.Random(f"sig-only/{seed}/{calls}/{rate}")
    window_us = int(calls / rate * 1e6)
    pool = 4000
    callers = [ip4(10, 10, i // 250, i % 250 + 1) for i in range(pool)]
    callees = [ip4(10, 20, i // 250, i % 250 + 1) for i in range(pool)]
    params: list[SipCall] = []
    keys: list[tuple] = []
    for c in range(calls):
        a, b = rng.choice(callers), rng.choice(callees)
        sc = new_sip_call(rng, a, b, rng.randrange(16384, 32768, 2), rng.randrange(16384, 32768, 2))
        params.append(sc)
        t_inv = T0_US + 1_000_000 + rng.randrange(window_us)
        hold = rng.randrange(10_000_000, 110_000_000)
        for m, off in enumerate(sip_offsets(rng, (1.0, 6.0), hold)):
            keys.append((t_inv + off, c, m))
    keys.sort()

    cache: dict[int, list] = {}
    open_now = max_open = 0
    rec = _PCAP_REC.pack
    with open(path, "wb", buffering=1 << 22) as f:
        w = f.write
        w(PCAP_GLOBAL_HDR)
        for t, c, m in keys:
            if m == 0:
                cache[c] = render_sip_call(params[c])
                open_now += 1
                if open_now > max_open:
                    max_open = open_now
            frame = cache[c][m]
            if m == 6:
                del cache[c]
                open_now -= 1
            sec, usec = divmod(t, 1_000_000)
            w(rec(sec, usec, len(frame), len(frame)))
            w(frame)
    return {
        "packets": len(keys),
        "rtp_packets": 0,
        "rtcp_packets": 0,
        "sip": expected_sip_counts(calls),
        "max_open_calls": max_open,
    }


# --------------------------------------------------------------------------- capture sets


def capture_specs(p: dict) -> dict:
    """name -> (kind, parameters) for a parameter set."""
    return {
        "rtp": ("rtp-heavy", dict(calls=p["calls"], duration=p["duration"], seed=p["seed"])),
        "rtp-half": ("rtp-heavy-half", dict(calls=p["calls"], duration=p["duration"] / 2, seed=p["seed"])),
        "sig": ("sig-only", dict(calls=p["sig_calls"], rate=p["sig_rate"], seed=p["seed"])),
    }


def meta_path(pcap: Path) -> Path:
    return pcap.with_name(pcap.name + ".json")


def load_meta(pcap: Path) -> dict | None:
    try:
        return json.loads(meta_path(pcap).read_text())
    except (OSError, ValueError):
        return None


def ensure_capture(out: Path, fname: str, params: dict, force: bool = False, log=print) -> tuple[Path, dict]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{fname}.pcap"
    kind = "sig-only" if fname.startswith("sig") else "rtp-heavy"
    meta = load_meta(path)
    if (not force and meta and meta.get("generator_version") == GEN_VERSION and meta.get("params") == params
            and path.exists() and path.stat().st_size == meta.get("bytes")):
        meta["reused"] = True
        log(f"reuse    {path}  {meta['bytes'] / 1e6:8.1f} MB  {meta['packets']:>9,} packets  (generated in {meta['gen_seconds']:.1f} s)")
        return path, meta
    tmp = path.with_name(path.name + ".tmp")
    t0 = time.perf_counter()
    if kind == "rtp-heavy":
        info = gen_rtp_heavy(tmp, **params)
    else:
        info = gen_sig_only(tmp, **params)
    dt = time.perf_counter() - t0
    os.replace(tmp, path)
    meta = dict(kind=kind, generator_version=GEN_VERSION, params=params, bytes=path.stat().st_size, gen_seconds=round(dt, 2), **info)
    meta_path(path).write_text(json.dumps(meta, indent=1) + "\n")
    meta["reused"] = False
    log(f"generate {path}  {meta['bytes'] / 1e6:8.1f} MB  {meta['packets']:>9,} packets  in {dt:5.1f} s  ({meta['packets'] / dt / 1e6:.2f} M packets/s)")
    return path, meta


def ensure_set(out: Path, p: dict, which=("rtp", "rtp-half", "sig"), force: bool = False, log=print) -> dict:
    specs = capture_specs(p)
    return {name: ensure_capture(out, specs[name][0], specs[name][1], force, log) for name in which}


# --------------------------------------------------------------------------- tshark validation


def parse_sip_stat(text: str) -> dict:
    """Parse `tshark -q -z sip,stat` output into {'requests':{}, 'responses':{}, 'total':n}."""
    import re

    # tshark 4.0 format:
    #   Number of SIP messages: 1400
    #   Number of resent SIP messages: 0
    #   * SIP Status Codes in reply packets
    #     SIP 200 OK              :   400 Packets
    #   * List of SIP Request methods
    #     INVITE          :   200 Packets
    # (older versions: "Number of Unique SIP Messages", "SIP/2.0 200 OK : n")
    req: dict[str, int] = {}
    resp: dict[str, int] = {}
    unique = resent = None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"Number of (?:unique )?SIP messages:\s*(\d+)", s, re.I)
        if m:
            unique = int(m.group(1))
            continue
        m = re.match(r"Number of resent SIP messages:\s*(\d+)", s, re.I)
        if m:
            resent = int(m.group(1))
            continue
        m = re.match(r"SIP(?:/2\.0)? (\d{3})\b.*:\s*(\d+)(?:\s+Packets)?\s*$", s)
        if m:
            resp[m.group(1)] = resp.get(m.group(1), 0) + int(m.group(2))
            continue
        m = re.match(r"([A-Z][A-Z_-]*)\s*:\s*(\d+)(?:\s+Packets)?\s*$", s)
        if m:
            req[m.group(1)] = req.get(m.group(1), 0) + int(m.group(2))
    total = sum(req.values()) + sum(resp.values())
    return {"requests": req, "responses": resp, "total": total, "unique": unique, "resent": resent}


def validate(out: Path, force: bool) -> int:
    tshark = shutil.which("tshark")
    if not tshark:
        print("tshark not found: cannot validate", file=sys.stderr)
        return 2
    files = ensure_set(out, VALIDATE, force=force)
    bad = 0
    for name, (path, meta) in files.items():
        r = subprocess.run([tshark, "-q", "-z", "sip,stat", "-r", str(path)], capture_output=True, text=True)
        got = parse_sip_stat(r.stdout)
        exp = meta["sip"]
        ok = got["requests"] == exp["requests"] and got["responses"] == exp["responses"]
        print(f"[{'OK' if ok else 'MISMATCH'}] tshark sip,stat {path.name}: requests {got['requests']} responses {got['responses']}"
              f" unique={got['unique']} resent={got['resent']} (expected {exp['requests']} {exp['responses']})")
        bad += not ok
        # Malformed / expert-error packets of any layer.
        r = subprocess.run([tshark, "-r", str(path), "-o", "rtcp.heuristic_rtcp:TRUE", "-o", "udp.check_checksum:TRUE",
                            "-o", "ip.check_checksum:TRUE", "-Y", "_ws.malformed || _ws.expert.severity >= warning", "-T", "fields",
                            "-e", "frame.number", "-e", "_ws.expert.message"], capture_output=True, text=True)
        lines = [x for x in r.stdout.splitlines() if x.strip()]
        print(f"[{'OK' if not lines else 'BAD'}] {path.name}: {len(lines)} malformed/warning packets (IP+UDP checksums verified)")
        for x in lines[:5]:
            print("      ", x)
        bad += bool(lines)
        if meta["rtcp_packets"]:
            port = meta["rtp_ports_example"][0] + 1
            # NB: -c counts packets *read*, not displayed, so "-Y rtcp -c 5" shows nothing
            # unless RTCP is among the first 5 packets of the file.
            r = subprocess.run([tshark, "-r", str(path), "-Y", f"rtcp && udp.port=={port}", "-d", f"udp.port=={port},rtcp", "-V",
                                "-O", "rtcp"], capture_output=True, text=True)
            head = [x for x in r.stdout.splitlines() if "Packet type" in x or "Length:" in x or "CNAME" in x or "Report" in x]
            print(f"[{'OK' if head else 'BAD'}] RTCP decodes with -d udp.port=={port},rtcp (first packets):")
            for x in head[:12]:
                print("      ", x.strip())
            bad += not head
            r = subprocess.run([tshark, "-r", str(path), "-o", "rtcp.heuristic_rtcp:TRUE", "-Y", "rtcp.pt == 200", "-T", "fields",
                                "-e", "frame.number"], capture_output=True, text=True)
            n = len([x for x in r.stdout.splitlines() if x.strip()])
            ok = n == meta["rtcp_packets"]
            print(f"[{'OK' if ok else 'MISMATCH'}] RTCP SR packets (heuristic RTCP on): {n}, expected {meta['rtcp_packets']}")
            bad += not ok
            r = subprocess.run([tshark, "-r", str(path), "-Y", "rtp", "-T", "fields", "-e", "frame.number"], capture_output=True, text=True)
            n = len([x for x in r.stdout.splitlines() if x.strip()])
            ok = n == meta["rtp_packets"]
            print(f"[{'OK' if ok else 'MISMATCH'}] RTP packets decoded via SDP: {n}, expected {meta['rtp_packets']}")
            bad += not ok
    print("validation", "PASSED" if not bad else f"FAILED ({bad} problems)")
    return 1 if bad else 0


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--calls", type=int, default=FULL["calls"], help="concurrent calls in the RTP-heavy capture (default %(default)s)")
    ap.add_argument("--duration", type=float, default=FULL["duration"], help="mean call duration in s, RTP-heavy (default %(default)s)")
    ap.add_argument("--sig-calls", type=int, default=FULL["sig_calls"], help="calls in the signalling-only capture (default %(default)s)")
    ap.add_argument("--sig-rate", type=float, default=FULL["sig_rate"], help="call arrival rate /s, signalling-only (default %(default)s)")
    ap.add_argument("--seed", type=int, default=FULL["seed"])
    ap.add_argument("--only", default="rtp,rtp-half,sig", help="comma list of rtp, rtp-half, sig (default all)")
    ap.add_argument("--force", action="store_true", help="regenerate even if a matching capture exists")
    ap.add_argument("--quick", action="store_true", help="1/20-size set in OUT/quick (what run.py --quick uses)")
    ap.add_argument("--validate", action="store_true", help="generate a tiny set in OUT/validate and check it with tshark")
    a = ap.parse_args(argv)
    if a.validate:
        return validate(a.out / "validate", a.force)
    which = [x.strip() for x in a.only.split(",") if x.strip()]
    for x in which:
        if x not in ("rtp", "rtp-half", "sig"):
            ap.error(f"unknown capture {x!r}")
    if a.quick:
        p, out = dict(QUICK), a.out / "quick"
    else:
        p = dict(calls=a.calls, duration=a.duration, sig_calls=a.sig_calls, sig_rate=a.sig_rate, seed=a.seed)
        out = a.out
    t0 = time.perf_counter()
    files = ensure_set(out, p, which, force=a.force)
    print(f"total {time.perf_counter() - t0:.1f} s")
    for name, (path, meta) in files.items():
        sip = meta["sip"]["total"]
        print(f"  {path.name:22s} {meta['bytes'] / 1e6:8.1f} MB  packets {meta['packets']:>9,}  RTP {meta['rtp_packets']:>9,}  "
              f"RTCP {meta['rtcp_packets']:>6,}  SIP {sip:>7,}  max open calls {meta['max_open_calls']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
