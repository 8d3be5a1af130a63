"""The C replay loop (_fastdecode.account_batch, with its twins of is_sip and looks_like_rtcp)
against pipeline.account_batch_py: the same classification of every datagram of every capture,
the same calls of add, the same counters, and the same handling of an error on one datagram.
Without the extension built the native side is skipped (see the first test)."""
from __future__ import annotations

import gc
import os
import sys
import weakref
from pathlib import Path

import pytest

import pipeline
from crafted import call_packets, frames, write_pcap
from probe import decode
from probe.counters import Counters
from probe.decode import DecodeBug
from probe.records import Datagram
from probe.sources import CaptureStats, read_batches
from rtcp_mos.rtcp import looks_like_rtcp
from shared_pcaps import all_shared, shared

REPO = Path(__file__).resolve().parents[1]
LABS = sorted(str(p) for p in REPO.glob("pcaps/lab-*/capture.pcap"))
BENCH_QUICK = "/tmp/sipprobe-bench/quick/sig-only.pcap"
NATIVE = decode._fastdecode
need_native = pytest.mark.skipif(NATIVE is None, reason="probe._fastdecode not built, or PURE")

# port sets: the default, none, edge values, and sets C cannot map to bits (a float equal to
# 5060, True equal to 1, a mutable set), which it must ask as Python does
PORT_SETS = [frozenset(pipeline.ProbeOptions().sip_ports), frozenset(), frozenset({0, 1, 65535}),
             frozenset({5060.0}), frozenset({True}), {5060, 5080}]


def test_native_loop_in_use():
    if os.environ.get("SIPPROBE_PURE") == "1":
        pytest.skip("SIPPROBE_PURE=1 turns the native path off")
    if NATIVE is None:
        pytest.skip("probe._fastdecode not built: python setup.py build_ext --inplace")
    assert pipeline.account_batch_native is NATIVE.account_batch


def _datagrams(path: str, **kw) -> list[list[Datagram]]:
    opts = pipeline.ProbeOptions(**kw)
    batches = read_batches([path], opts.filters(), CaptureStats())
    return list(pipeline.datagram_batches(batches, opts, Counters()))


def _captures() -> list[str]:
    paths = [shared(name) for name in all_shared()] + LABS
    return paths + ([BENCH_QUICK] if os.path.exists(BENCH_QUICK) else [])


# datagrams no capture has: odd ports, TCP on any port, keep-alives, short and RTCP-like payloads
ODD = [Datagram(0.0, i + 1, "10.0.0.1", "10.0.0.2", sport, dport, transport, payload)
       for i, (sport, dport, transport, payload) in enumerate([
           (5060, 9, "udp", b""), (9, 5060, "udp", b"\x80\xc8\x00\x06abcd"), (9, 5061, "udp", b"\r\n\r\n"), (9, 9, "udp", b"\r\n"),
           (9, 9, "udp", b"\x00\x00\x00\x00"), (9, 9, "tcp", b"hello"), (9, 9, "tcp", b""),
           (0, 65535, "udp", b"x"), (1, 2, "udp", b"ACK "), (1, 2, "udp", b"ACK"),
           (1, 2, "udp", b"SIP/2.0 200 OK"), (1, 2, "udp", b"sip/2.0 200"),
           (1, 2, "udp", b"INVITEsip:x"), (1, 2, "udp", b"\x80\xc8\x00\x06abcd"),
           (1, 2, "udp", b"\x80\xc8\x00\x06abc"), (1, 2, "udp", b"\xbf\xcf\x00\x00\x00\x00\x00\x00"),
           (1, 2, "udp", b"\x80\xd0\x00\x06abcd"), (1, 2, "udp", b"\x40\xc8\x00\x06abcd"),
           (4789, 2152, "udp", b"\x08\x00\x00\x00"),
           (1, 2, "".join(["tc", "p"]), b"y")])]  # a "tcp" that is not the interned one


@need_native
@pytest.mark.parametrize("ports", PORT_SETS, ids=lambda p: repr(sorted(p))[:30])
@pytest.mark.parametrize("path", _captures(), ids=os.path.basename)
def test_classification_of_every_datagram(path, ports):
    datagrams = [d for batch in _datagrams(path, bpf_filter="") for d in batch]
    for d in datagrams + ODD:
        assert NATIVE.is_sip(d, ports) is pipeline.is_sip(d, ports), d
        assert NATIVE.looks_like_rtcp(d.payload) is looks_like_rtcp(d.payload), d


@need_native
def test_classification_sees_every_kind():
    """The odd datagrams above cover each outcome, so the test above can tell them apart."""
    ports = PORT_SETS[0]
    kinds = {(pipeline.is_sip(d, ports), looks_like_rtcp(d.payload)) for d in ODD}
    assert kinds == {(True, False), (False, True), (False, False), (True, True)}


def test_non_datagram_is_refused():
    if NATIVE is None:
        pytest.skip("probe._fastdecode not built")
    with pytest.raises(TypeError):
        NATIVE.is_sip(("udp", b"INVITE"), frozenset())
    with pytest.raises(TypeError):
        NATIVE.account_batch([ODD[0]._replace(payload="INVITE")], print, frozenset(),
                             print, Counters())


class Recorder:
    """add(): keeps what it was given; raises `fail(d)` when that returns an exception."""

    def __init__(self, fail=lambda d: None):
        self.added: list[Datagram] = []
        self.fail = fail

    def __call__(self, d: Datagram) -> None:
        self.added.append(d)
        exc = self.fail(d)
        if exc is not None:
            raise exc


def _loop(native: bool, batches, add, ports=PORT_SETS[0], strict=False):
    """_account_batches as account() runs it, through the C or the Python loop."""
    counters = Counters()
    saved = pipeline.account_batch_native
    pipeline.account_batch_native = NATIVE.account_batch if native else None
    try:
        pipeline._account_batches(batches, add, ports, pipeline.ProbeOptions(strict=strict),
                                  counters, CaptureStats(), None, None)
    finally:
        pipeline.account_batch_native = saved
    return dict(counters)


@need_native
@pytest.mark.parametrize("ports", PORT_SETS[:3], ids=["default", "none", "edges"])
@pytest.mark.parametrize("path", _captures(), ids=os.path.basename)
def test_loop_on_every_capture(path, ports):
    batches = _datagrams(path, bpf_filter="") + [ODD]
    native, pure = Recorder(), Recorder()
    got, want = _loop(True, batches, native, ports), _loop(False, batches, pure, ports)
    assert got == want
    assert len(native.added) == len(pure.added)
    assert all(a is b for a, b in zip(native.added, pure.added))  # the same objects, in order


def _batch_with_error_in_the_middle():
    batch = [d._replace(frame=i + 1) for i, d in enumerate(ODD * 3)]
    sip = [d for d in batch if pipeline.is_sip(d, PORT_SETS[0])]
    return batch, sip, sip[len(sip) // 2]


@pytest.mark.parametrize("native", [True, False], ids=["C", "Python"])
def test_error_on_one_datagram_is_counted_and_the_rest_accounted(native):
    if native and NATIVE is None:
        pytest.skip("probe._fastdecode not built")
    batch, sip, bad = _batch_with_error_in_the_middle()
    add = Recorder(lambda d: ValueError("bad CSeq") if d is bad else None)
    counters = _loop(native, [batch, batch[:3]], add)
    assert counters["internal.signalling_error"] == 1
    assert add.added == sip + [d for d in batch[:3] if d in sip]
    rtcp = sum(1 for d in batch + batch[:3] if d not in sip and looks_like_rtcp(d.payload))
    assert counters["rtcp.datagrams"] == rtcp > 0
    assert counters["classify.not_sip_or_rtcp"] == len(batch) + 3 - len(add.added) - rtcp > 0


class Boom(Exception):
    pass


def _raised(native, exc, strict=False):
    """What leaves the loop when add raises `exc` in the middle of a batch, the counters the
    loop had written by then, and whether add was called up to that datagram and no further."""
    batch, sip, bad = _batch_with_error_in_the_middle()
    add = Recorder(lambda d: exc if d is bad else None)
    counters = Counters()
    account = NATIVE.account_batch if native else pipeline.account_batch_py
    with pytest.raises(BaseException) as info:
        account(batch, add, PORT_SETS[0],
                lambda e, d: pipeline._signalling_error(e, d, pipeline.ProbeOptions(strict=strict),
                                                       counters), counters)
    return info.value, dict(counters), add.added == sip[:sip.index(bad) + 1]


@need_native
def test_strict_raises_decode_bug_from_the_error():
    exc = Boom("bad")
    (got, c_counts, c_added), (want, p_counts, p_added) = (
        _raised(True, exc, strict=True), _raised(False, exc, strict=True))
    for raised in (got, want):
        assert type(raised) is DecodeBug and "frame " in str(raised)
        assert raised.__cause__ is exc and raised.__context__ is exc
    assert str(got) == str(want)
    assert c_counts == p_counts and "rtcp.datagrams" in c_counts  # counted up to the error
    assert c_added and p_added


@need_native
@pytest.mark.parametrize("kind", ["sink", "interrupt"])
def test_sink_errors_and_interrupts_propagate_unchanged(kind):
    for native in (True, False):
        exc = Boom("disk full") if kind == "sink" else KeyboardInterrupt()
        if kind == "sink":
            exc.from_sink = True
        raised, counts, stopped_there = _raised(native, exc)
        assert raised is exc and stopped_there
        assert "internal.signalling_error" not in counts and "rtcp.datagrams" in counts
        assert counts == _raised(False, exc)[1]


def _kept(obj, into: weakref.WeakSet):
    into.add(obj)
    return obj


@need_native
def test_no_references_leak():
    batch, sip, bad = _batch_with_error_in_the_middle()
    raised = weakref.WeakSet()
    add = Recorder(lambda d: _kept(Boom(), raised) if d is bad else None)
    counters, ports = Counters(), frozenset(list(PORT_SETS[0]))  # a set of this test's own
    on_error = lambda e, d: None  # noqa: E731 (an error handled and forgotten)
    # payloads of 0 or 1 byte are interpreter-wide singletons, counted by others too
    watched = [add, on_error, ports, counters, *batch, *{d.payload for d in batch
                                                         if len(d.payload) > 1}]
    gc.collect()  # earlier tests' garbage, which holds some of the same payloads
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(2000):
        NATIVE.account_batch(batch, add, ports, on_error, counters)
        add.added.clear()
    NATIVE.account_batch([], add, frozenset(), on_error, counters)  # let go of `ports`
    gc.collect()  # a traceback and its frames hold their exception in a cycle
    assert len(raised) == 0
    after = [sys.getrefcount(o) for o in watched]
    assert [(o, a - b) for o, a, b in zip(watched, after, before) if a != b] == []
    assert counters["classify.not_sip_or_rtcp"] == 2000 * sum(
        1 for d in batch if d not in sip and not looks_like_rtcp(d.payload))


@need_native
def test_decoded_datagrams_free_their_class(tmp_path):
    """The C decoder allocates Datagrams itself: each holds and releases its class."""
    path = write_pcap(tmp_path / "c.pcap", frames(call_packets()))
    refs = sys.getrefcount(Datagram)
    for _ in range(200):
        got = [d for batch in _datagrams(str(path)) for d in batch]
    assert got and type(got[0]) is Datagram and not gc.is_tracked(got[0])
    del got
    assert sys.getrefcount(Datagram) == refs
