"""The fuzz harnesses' seed corpus: SIP messages, SDP bodies, RTCP compounds and Ethernet
frames cut from the project's own lab captures and a few public ones (../shared/pcaps), a
handful of each kind, read once per session; and the mutations the harnesses apply."""
from __future__ import annotations

import functools
import random
from pathlib import Path

import pipeline
from probe.counters import Counters
from probe.records import batch_frames
from probe.sources import CaptureStats, read_batches

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "pcaps"
CAPTURES = [REPO / "pcaps" / "lab-basic-call" / "capture.pcap",
            REPO / "pcaps" / "lab-auth-407" / "capture.pcap",
            REPO / "pcaps" / "lab-tcp-call" / "capture.pcap",
            SHARED / "ndpi_rtcp-compound-sr-rr-loss.pcap",
            SHARED / "zeek_sip-invalid-content-length.pcap",
            SHARED / "sngrep_ipv6-frag-sip-prack-update.pcap"]
FILES = [REPO / "pcaps" / "lab-basic-call" / "capture.pcap",
         SHARED / "ndpi_sip-register-401-keepalive.pcapng",
         SHARED / "ndpi_vlan-gre-ppp-sip.pcapng",
         SHARED / "junkie_sip-tcp-invite-sll.pcap"]


@functools.lru_cache(maxsize=None)
def seeds() -> dict[str, list[bytes]]:
    """{"sip": [...], "sdp": [...], "rtcp": [...], "frame": [...]}, distinct, in file order."""
    out: dict[str, list[bytes]] = {"sip": [], "sdp": [], "rtcp": [], "frame": []}
    opts = pipeline.ProbeOptions(bpf_filter="")
    for path in CAPTURES:
        batches = list(read_batches([str(path)], opts.filters(), CaptureStats()))
        for batch in batches:
            out["frame"] += [f.data for f in batch_frames(batch) if f.linktype == 1][:40]
        for d in pipeline.datagrams(batches, opts, Counters()):
            kind = pipeline.classify(d, frozenset(opts.sip_ports))
            if kind == pipeline.SIP:
                out["sip"].append(d.payload)
                body = d.payload.partition(b"\r\n\r\n")[2]
                if body.startswith(b"v="):
                    out["sdp"].append(body)
            elif kind == pipeline.RTCP:
                out["rtcp"].append(d.payload)
    return {k: list(dict.fromkeys(v))[:60] for k, v in out.items()}


def mutate(data: bytes, rnd: random.Random, splice: list[bytes] = ()) -> bytes:
    """One to four of: bit flips, byte sets, truncation, a zeroed or duplicated run, an
    insertion of interesting bytes, a splice with another seed."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7)
        n = len(b)
        if op == 0 and n:
            i = rnd.randrange(n)
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:
            b[rnd.randrange(n)] = rnd.choice((0, 0xFF, 0x0D, 0x0A, 0x3A, 0x20, 0x80, 0x7F))
        elif op == 2 and n:
            del b[rnd.randrange(n):]
        elif op == 3 and n:
            i = rnd.randrange(n)
            b[i:i + rnd.randint(1, 64)] = bytes(len(b[i:i + rnd.randint(1, 64)]))
        elif op == 4 and n:
            i = rnd.randrange(n)
            j = min(n, i + rnd.randint(1, 200))
            b[i:i] = b[i:j] * rnd.randint(1, 8)
        elif op == 5:
            i = rnd.randrange(n + 1)
            b[i:i] = rnd.choice((b"\r\n", b"\r\n\r\n", b";tag=", b"SIP/2.0", b"\x00",
                                 b"Content-Length: 99999999999\r\n", b"\xff" * 8, b"%",
                                 b"m=audio 0 RTP/AVP\r\n", b"Via: ,,,\r\n"))
        elif op == 6 and splice:
            other = rnd.choice(splice)
            i, j = rnd.randrange(n + 1), rnd.randrange(len(other) + 1)
            b = b[:i] + other[j:]
    return bytes(b)
