"""The native RTCP parser (rtcp_mos/_rtcpscan.c) against its pure-Python twin,
parse_compound_py.

The C parser may hand a compound back (None) but must never disagree: on every RTCP payload
of every public and lab capture, on the compounds the crafted tests build, and on a few
thousand seeded mutations of them (byte flips, truncations, bytes appended, counts and
lengths changed). It must be the parser rtcp.py uses whenever it is built.

Build it with: python setup.py build_ext --inplace
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

import pipeline
from probe.counters import Counters
from probe.native import PURE
from probe.sources import CaptureStats, read_batches
from rtcp_mos import rtcp as rtcp_mod
from rtcp_mos.rtcp import (Bye, Report, ReportBlock, RtcpCompound, SdesChunk, SenderInfo,
                           parse_compound_py)
from shared_pcaps import all_shared, shared

try:
    from rtcp_mos import _rtcpscan
except ImportError:  # not built: no compiler, or build_ext not run
    _rtcpscan = None
else:
    _rtcpscan.init(SenderInfo, ReportBlock, Report, SdesChunk, Bye, RtcpCompound)

pytestmark = pytest.mark.skipif(
    _rtcpscan is None, reason="rtcp_mos._rtcpscan is not built "
    "(python setup.py build_ext --inplace); rtcp.py uses the pure-Python parser")

LAB_DIR = Path(__file__).resolve().parents[1] / "pcaps"


def same(payload: bytes) -> bool:
    """The native result is None or equals parse_compound_py's, record for record and type
    for type. True when the native parser handled the compound."""
    got = _rtcpscan.parse(payload)
    if got is None:
        return False
    want = parse_compound_py(payload)
    assert got == want, (payload, got, want)
    assert _types(got) == _types(want), (payload, got, want)
    return True


def _types(value):
    """The classes of a record tree, for comparing more than equality (a tuple equals a
    NamedTuple of the same values)."""
    if isinstance(value, tuple):
        return (type(value), tuple(_types(v) for v in value))
    return type(value)


def rtcp_payloads(path: str) -> list[bytes]:
    opts = pipeline.ProbeOptions()
    ports = frozenset(opts.sip_ports)
    stream = pipeline.datagrams(read_batches([path], opts.filters(), CaptureStats()), opts,
                                Counters())
    return [d.payload for d in stream if pipeline.classify(d, ports) == pipeline.RTCP]


def all_payloads() -> list[bytes]:
    paths = [str(p) for p in sorted(LAB_DIR.glob("*/capture.pcap*"))] + \
        [shared(name) for name in all_shared()]
    out = []
    for path in paths:
        out += rtcp_payloads(path)
    return out


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    found = all_payloads()
    assert len(found) >= 70  # 78 on 2026-12-06: the lab captures and the public ones
    return found


def test_rtcp_py_uses_the_native_parser():
    if PURE:  # SIPPROBE_PURE=1 turns it off
        assert not rtcp_mod.NATIVE and rtcp_mod.parse_compound_c is None
    else:
        assert rtcp_mod.NATIVE and rtcp_mod.parse_compound_c is _rtcpscan.parse


def test_every_capture_agrees(payloads):
    handled = sum(same(p) for p in payloads)
    # most real compounds are SR/RR + SDES (+ BYE); XR, APP, padding and SRTCP go to Python
    assert handled >= len(payloads) // 2, (handled, len(payloads))


def _sr(blocks: int = 1, sdes: bytes = b"\x01\x07cname@x\x00") -> bytes:
    """An SR with `blocks` report blocks, then an SDES chunk with the given items."""
    body = struct.pack("!6I", 0x11223344, 3_900_000_000, 0x80000000, 160, 50, 8000)
    for i in range(blocks):
        body += struct.pack("!6I", 0xAABB0000 + i, (3 << 24) | 0xFFFFFE, 70_000, 12, 0x1234, 99)
    sr = struct.pack("!BBH", 0x80 | blocks, 200, len(body) // 4) + body
    chunk = struct.pack("!I", 0x11223344) + sdes
    chunk += b"\x00" * (-len(chunk) % 4)
    return sr + struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


CRAFTED = [
    _sr(), _sr(0), _sr(3), _sr(1, b"\x01\x03\xff\xfe\x41\x02\x02ab\x00"),  # bad UTF-8 CNAME
    _sr(1, b"\x00"),  # a chunk with no items
    struct.pack("!BBHI", 0x80, 201, 1, 7),  # an empty RR
    _sr() + struct.pack("!BBHI", 0x81, 203, 1, 0x11223344),  # BYE without reason
    _sr() + struct.pack("!BBHI", 0x81, 203, 2, 0x11223344) + b"\x03bye",  # BYE with reason
    b"",
]


@pytest.mark.parametrize("payload", CRAFTED)
def test_crafted_compounds_agree(payload):
    same(payload)


def test_crafted_common_compounds_are_handled():
    assert all(same(p) for p in CRAFTED[:-1])


def _mutations(rng: random.Random, payload: bytes):
    data = bytearray(payload)
    kind = rng.randrange(6)
    if kind == 0 and data:  # flip a byte
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncate
        del data[rng.randrange(len(data) + 1):]
    elif kind == 2:  # bytes appended
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    elif kind == 3 and data:  # a header's count
        i = rng.randrange(0, len(data), 4)
        data[i] = (data[i] & 0xE0) | rng.randrange(32)
    elif kind == 4 and len(data) > 3:  # a header's length
        i = rng.randrange(0, len(data) - 3, 4)
        data[i + 2:i + 4] = struct.pack("!H", rng.randrange(0, 40))
    elif kind == 5 and data:  # SDES lengths and types
        i = rng.randrange(len(data))
        data[i] = rng.choice((0, 1, 2, 255, rng.randrange(256)))
    return bytes(data)


def test_mutations_agree(payloads):
    rng = random.Random(12)
    seeds = CRAFTED[:-1] + rng.sample(payloads, min(len(payloads), 200))
    handled = 0
    for _ in range(5000):
        handled += same(_mutations(rng, rng.choice(seeds)))
    assert handled > 500  # the mutations leave many compounds clean enough for C


def test_not_bytes_is_handed_back():
    assert _rtcpscan.parse(bytearray(CRAFTED[0])) is None
    assert _rtcpscan.parse(memoryview(CRAFTED[0])) is None
