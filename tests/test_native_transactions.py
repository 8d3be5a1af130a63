"""The native transaction layer (sip_dissect/_txnlayer.c) against its reference, transaction.py.

The dialog and accounting layers must not be able to tell which one runs: every capture the
project has gives the same acc rows, CDRs, counters and learned proxies through both; seeded
random message sequences (retransmissions, forks, CANCELs, RFC 2543 branches, relayed copies,
timeouts, evictions) give the same answers and the same transaction state step by step.
The crafted signalling tests also run against both (test_signalling_crafted.py).

Build it with: python setup.py build_ext --inplace
"""
from __future__ import annotations

import gc
import os
import random
import sys
from pathlib import Path

import pytest

import pipeline
from probe.counters import Counters
from probe.records import Datagram
from shared_pcaps import all_shared, shared
from sip_dissect import signalling, transaction
from sip_dissect.accounting import AccOptions, ProxySet
from sip_dissect.cdr import cdr_from_call
from sip_dissect.scan import SipHead

try:
    from sip_dissect import _txnlayer
except ImportError:  # not built: no compiler, or build_ext not run
    _txnlayer = None

pytestmark = pytest.mark.skipif(
    _txnlayer is None, reason="sip_dissect._txnlayer is not built "
    "(python setup.py build_ext --inplace); the signalling uses transaction.py")

REPO = Path(__file__).resolve().parents[1]
LABS = sorted(str(p) for p in (REPO / "pcaps").glob("lab-*/capture.pcap"))
BENCH_QUICK = "/tmp/sipprobe-bench/quick/sig-only.pcap"
ALL_OPTIONS = AccOptions(report_cancels=True, early_media=True, failed_transaction=True,
                         detect_direction=True, methods=frozenset({"MESSAGE", "OPTIONS"}))


def replay(path: str, layer, **kw) -> tuple:
    """Rows, CDRs and summary of one capture with the signalling on `layer`."""
    known = ProxySet(list(kw.pop("proxies", ())))
    rows, cdrs = [], []
    saved = signalling.Layer
    signalling.Layer = layer
    try:
        summary = pipeline.account_files(
            [path], rows.append, pipeline.ProbeOptions(strict=True), proxy_set=known,
            on_call_end=lambda call: cdrs.append(cdr_from_call(call, known)), **kw)
    finally:
        signalling.Layer = saved
    summary.pop("engine")
    return rows, cdrs, summary


def same_replay(path: str, **kw) -> tuple:
    native = replay(path, _txnlayer.TransactionLayer, **kw)
    python = replay(path, transaction.TransactionLayer, **kw)
    assert native[2] == python[2]
    assert native[0] == python[0]
    assert native[1] == python[1]
    return native


# -- the extension is what runs ------------------------------------------------------------------

def test_native_layer_in_use():
    if os.environ.get("SIPPROBE_PURE") == "1":
        pytest.skip("SIPPROBE_PURE=1 turns the native layer off on purpose")
    assert transaction.Layer is _txnlayer.TransactionLayer
    sig = signalling.Signalling(Counters(), lambda rec: None)
    assert type(sig.transactions) is _txnlayer.TransactionLayer
    assert type(sig.add) is _txnlayer.SignallingAdd  # Signalling.add's twin, on the instance
    assert "transactions" in pipeline.engine()


# -- differential on real captures --------------------------------------------------------------

@pytest.mark.parametrize("name", all_shared())
def test_shared_capture(name):
    same_replay(shared(name))


@pytest.mark.parametrize("path", LABS, ids=lambda p: Path(p).parent.name)
def test_lab_capture(path):
    rows, cdrs, summary = same_replay(path)
    assert rows and cdrs


@pytest.mark.parametrize("path", LABS[:4], ids=lambda p: Path(p).parent.name)
def test_lab_capture_with_every_acc_option_and_a_given_proxy(path):
    same_replay(path, acc_options=ALL_OPTIONS, proxies=[("127.0.0.1", 5060)])


def test_bench_quick_capture():
    if not os.path.exists(BENCH_QUICK):
        pytest.skip(f"{BENCH_QUICK} absent (made by the benchmark scripts)")
    rows, cdrs, _ = same_replay(BENCH_QUICK)
    assert len(rows) > 1000 and len(cdrs) > 500


# -- seeded random message sequences, step by step ------------------------------------------------

STATE = ("key", "method", "src", "dst", "transport", "created", "frame", "state", "callid",
         "from_tag", "to_tag", "cseq", "final_status", "final_reason", "final_ts",
         "final_to_tag", "extra_2xx_tags", "retransmissions", "is_initial_invite")
LINKS = ("upstream", "downstream", "cancel", "invite", "call")
HOSTS = ("10.0.0.1", "10.0.0.2", "10.0.0.9", "fd00::5")
SENT_BY = ("10.0.0.1:5060", "10.0.0.2", "10.0.0.9:5070", "[fd00::5]:5062", "[fd00::5]",
           "fd00::5", "h:1x", "h:123456", "h:0", "h:\u0661")


def view(txn) -> tuple:
    """A transaction's state, its links named by their key and creation time."""
    def name(t):
        return None if t is None else (t.key, t.created)
    state = tuple(getattr(txn, a) for a in STATE)
    links = (name(txn.upstream), tuple(name(t) for t in txn.downstream), name(txn.cancel),
             name(txn.invite), txn.call)
    branch = txn.winning_branch()
    return state + links + (name(branch),)


def random_message(rnd: random.Random, ts: float, sent: list) -> tuple[SipHead, Datagram]:
    """A request, often with the Via of an earlier one second (a relayed copy), or a response
    to one of the requests in `sent`; now and then a mandatory field is missing."""
    def maybe_none(value):
        return None if rnd.random() < 0.03 else value

    d = Datagram(ts, rnd.randrange(1000), rnd.choice(HOSTS), rnd.choice(HOSTS),
                 rnd.choice([5060, 5062, 40000]), 5060, "udp", b"")
    to_tag = rnd.choice(["", "", "b1", "b2", "b3"])
    if sent and rnd.random() < 0.55:
        method, branch, sent_by, call_id, cseq, from_tag = rnd.choice(sent[-12:])
        status = rnd.choice([100, 180, 183, 200, 200, 202, 302, 401, 486, 487])
        return SipHead(None, None, status, rnd.choice(["OK", "", "Busy"]), call_id,
                       maybe_none(cseq), "INVITE" if method == "ACK" else method, "<sip:a@h>",
                       from_tag, "<sip:b@h>", to_tag, 1, "UDP", sent_by, maybe_none(branch),
                       None, None, 0, b"", ()), d
    method = rnd.choice(["INVITE", "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"])
    if sent and rnd.random() < 0.4:  # a retransmission, an ACK or CANCEL of an earlier one
        _, branch, sent_by, call_id, cseq, from_tag = rnd.choice(sent[-12:])
    else:
        branch = rnd.choice(["z9hG4bK" + str(rnd.randrange(50)), str(rnd.randrange(20)), ""])
        sent_by = rnd.choice(SENT_BY)
        call_id, cseq = rnd.choice(["c1", "c2", "c3"]), rnd.choice([1, 2])
        from_tag = rnd.choice(["a", ""])
    via2 = rnd.choice(sent[-12:]) if sent and rnd.random() < 0.3 else None
    head = SipHead(method, "sip:x@h", None, None, maybe_none(call_id), maybe_none(cseq),
                   method, "<sip:a@h>", from_tag, "<sip:b@h>", to_tag, 2,
                   rnd.choice(["UDP", "TLS", "WSS"]), sent_by, maybe_none(branch),
                   via2 and via2[2], via2 and via2[1], 0, b"", ())
    sent.append((method, branch, sent_by, call_id, cseq, from_tag))
    return head, d


@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_step_by_step(seed):
    rnd = random.Random(seed)
    cn, cp = Counters(), Counters()
    small = rnd.choice([3, 8, 200_000])  # small tables make evictions
    native = _txnlayer.TransactionLayer(cn, invite_timeout=rnd.choice([5.0, 300.0]),
                                        max_transactions=small)
    python = transaction.TransactionLayer(cp, invite_timeout=native.invite_timeout,
                                          max_transactions=small)
    sent = []
    ts = 1000.0
    for step in range(400):
        ts += rnd.choice([0.0, 0.001, 0.2, 0.2, 1.0, 1.0, 3.0, 40.0])
        msg, d = random_message(rnd, ts, sent)
        if msg.method is not None:
            got, want = native.request(msg, d), python.request(msg, d)
            pair_n = None if got is None else view(got)
            pair_p = None if want is None else view(want)
        else:
            got, want = native.response(msg, d), python.response(msg, d)
            pair_n = None if got is None else (view(got[0]), got[1])
            pair_p = None if want is None else (view(want[0]), want[1])
        assert pair_n == pair_p, (seed, step, msg, d)
        assert cn == cp, (seed, step)
        assert native.forwarders == python.forwarders
        assert native.by_key.keys() == python.by_key.keys()
        assert native.next_sweep == python.next_sweep
    native.close()
    python.close()
    assert cn == cp and not native.by_key


class Text(str):
    """A str subclass: equal to the str of the same text, so keys holding one must be matched
    by by_key itself (the C layer's index holds only keys of exact str and int)."""


@pytest.mark.parametrize("seed", range(12))
def test_by_key_changed_from_outside_and_odd_key_types(seed):
    """by_key is a plain dict anyone can change, and SipHead fields could be str subclasses:
    the native layer still answers as the Python one, step by step."""
    rnd = random.Random(1000 + seed)
    cn, cp = Counters(), Counters()
    native = _txnlayer.TransactionLayer(cn, invite_timeout=5.0, max_transactions=20)
    python = transaction.TransactionLayer(cp, invite_timeout=5.0, max_transactions=20)
    sent = []
    ts = 1000.0
    for step in range(400):
        ts += rnd.choice([0.0, 0.001, 0.2, 1.0, 3.0])
        msg, d = random_message(rnd, ts, sent)
        if rnd.random() < 0.15:
            field = rnd.choice(["via_branch", "via_sent_by", "call_id", "method", "cseq_method"])
            if isinstance(getattr(msg, field), str):
                msg = msg._replace(**{field: Text(getattr(msg, field))})
        if rnd.random() < 0.05 and python.by_key:
            key = rnd.choice(list(python.by_key))
            del python.by_key[key], native.by_key[key]
        if rnd.random() < 0.01:
            python.by_key.clear(), native.by_key.clear()
        if msg.method is not None:
            got, want = native.request(msg, d), python.request(msg, d)
            got = None if got is None else view(got)
            want = None if want is None else view(want)
        else:
            got, want = native.response(msg, d), python.response(msg, d)
            got = None if got is None else (view(got[0]), got[1])
            want = None if want is None else (view(want[0]), want[1])
        assert got == want, (seed, step, msg, d)
        assert cn == cp, (seed, step)
        assert list(native.by_key) == list(python.by_key)
    native.close()
    python.close()
    assert cn == cp and not native.by_key


def test_a_transaction_can_be_linked_to_a_call_and_freed():
    """Python stores its Call on the C transaction; the layer cuts that link when it forgets
    the transaction, so nothing needs the cyclic collector."""
    layer = _txnlayer.TransactionLayer(Counters())
    msg, d = random_message(random.Random(1), 1.0, [])
    msg = msg._replace(method="INVITE", via_branch="z9hG4bKx", via_sent_by="h", cseq=1,
                       call_id="c", to_tag="")
    txn = layer.request(msg, d)

    class Call:
        pass
    call = txn.call = Call()
    call.invite = txn
    assert txn.is_initial_invite and txn.state == "CALLING" and txn.retransmissions == 0
    layer.close()
    assert txn.call is None and not layer.by_key
    del txn, call
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is _txnlayer.Transaction]


def test_fields_the_c_code_relies_on_are_read_only():
    layer = _txnlayer.TransactionLayer(Counters())
    msg, d = random_message(random.Random(1), 1.0, [])
    msg = msg._replace(method="INVITE", via_branch="z9hG4bKy", via_sent_by="h", cseq=1,
                       call_id="c", to_tag="")
    txn = layer.request(msg, d)
    for name in ("final_status", "downstream", "method", "key", "retransmissions"):
        with pytest.raises(AttributeError):
            setattr(txn, name, None)
        with pytest.raises(AttributeError):
            delattr(txn, name)
    del txn.call  # the one the layers above set: gone, as from the Python twin's slots
    with pytest.raises(AttributeError):
        txn.call  # noqa: B018
    py = transaction.Transaction(("k",), msg, d, "INVITE")
    del py.call
    with pytest.raises(AttributeError):
        py.call  # noqa: B018
    layer.close()
    layer.__init__(Counters())  # again: starts afresh
    assert not layer.by_key and layer.next_sweep == 0.0


def test_bad_arguments_raise_not_crash():
    layer = _txnlayer.TransactionLayer(Counters())
    with pytest.raises(TypeError):
        layer.request("INVITE", None)
    with pytest.raises(TypeError):
        layer.response((1, 2), (3,))
    with pytest.raises(TypeError):
        _txnlayer.TransactionLayer(Counters(), invite_timeout="long")


def test_no_leaks_over_many_calls():
    """Thousands of transactions made, matched, swept and evicted: the allocated blocks come
    back to where they were, and the messages' refcounts too."""
    rnd = random.Random(7)
    sent: list = []
    msgs = []
    ts = 0.0
    for _ in range(3000):
        ts += rnd.choice([0.001, 0.2, 1.0, 40.0])
        msgs.append(random_message(rnd, ts, sent))
    sample = msgs[:50]

    def run() -> None:
        layer = _txnlayer.TransactionLayer(Counters(), invite_timeout=5.0, max_transactions=50)
        for msg, d in msgs:
            if msg.method is not None:
                layer.request(msg, d)
            else:
                layer.response(msg, d)
        layer.close()

    run()
    gc.collect()
    refs = [(sys.getrefcount(m), sys.getrefcount(d)) for m, d in sample]
    blocks = sys.getallocatedblocks()
    for _ in range(20):  # 60k messages
        run()
    gc.collect()
    assert sys.getallocatedblocks() - blocks < 500
    assert [(sys.getrefcount(m), sys.getrefcount(d)) for m, d in sample] == refs


# -- Signalling.add's twin on odd messages -----------------------------------------------------

INVITE_TEXT = ("INVITE sip:bob@b.example SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{n}\r\n"
               "From: <sip:alice@a.example>;tag=f{n}\r\nTo: <sip:bob@b.example>\r\n"
               "Call-ID: odd-{n}\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: {length}\r\n"
               "\r\n{body}")
ODD = [
    b"", b"\r\n\r\n", b" \t\x00", b"garbage that is no SIP", b"INVITE sip:x SIP/2.0\r\n",
    INVITE_TEXT.format(n=1, extra="", length=4, body="v=0\r").encode(),  # length right
    INVITE_TEXT.format(n=2, extra="", length=9, body="v=0").encode(),  # mismatch
    INVITE_TEXT.format(n=3, extra="", length="x1", body="").encode(),  # bad length
    INVITE_TEXT.format(n=4, extra="Via: \r\n", length=0, body="").encode(),
    INVITE_TEXT.format(n=5, extra="Max-Forwards: 70\r\n  folded\r\n", length=0,
                       body="").encode(),  # handed to scan_py
    "INVITE sip:b\u00f6b@b SIP/2.0\r\nCall-ID: u\r\n\r\n".encode(),
    (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
     b"From: <sip:alice@a.example>;tag=f1\r\nTo: <sip:bob@b.example>;tag=t1\r\n"
     b"Call-ID: odd-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
]


# the C add runs only when the extension is loaded, which SIPPROBE_PURE=1 forbids
needs_c_add = pytest.mark.skipif(transaction.NativeAdd is None,
                                 reason="SIPPROBE_PURE=1: the signalling runs the Python add")


def odd_run(layer, transport: str) -> tuple:
    counters, records = Counters(), []
    saved = signalling.Layer
    signalling.Layer = layer
    try:
        sig = signalling.Signalling(counters, records.append)
    finally:
        signalling.Layer = saved
    for i, payload in enumerate(ODD * 2):  # twice: retransmissions too
        sig.add(Datagram(1.0 + i, i + 1, "10.0.0.1", "10.0.0.2", 5060, 5060, transport,
                         payload))
    return type(sig.add).__name__, sig.messages, dict(counters), records


@needs_c_add
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_c_add_counts_odd_messages_as_the_python_one(transport):
    kind, *native = odd_run(_txnlayer.TransactionLayer, transport)
    python_kind, *python = odd_run(transaction.TransactionLayer, transport)
    assert (kind, python_kind) == ("SignallingAdd", "method")
    assert native == python
    messages, counters, records = native
    assert messages > 0 and counters["sip.keepalive"] == 6 and records
    assert ("sip.content_length_mismatch" in counters) == (transport == "udp")


@needs_c_add
def test_the_c_add_refuses_bad_arguments_and_passes_errors_on():
    sig = signalling.Signalling(Counters(), lambda rec: None)
    for args in ((), (1,), ((1, 2),), (None, None)):
        with pytest.raises(TypeError):
            sig.add(*args)
    with pytest.raises(TypeError):
        _txnlayer.SignallingAdd(object(), None, None, None, None, None, None, False)

    def broken_sink(rec):
        raise OSError("disk full")

    sig = signalling.Signalling(Counters(), broken_sink)
    sig.add(Datagram(1.0, 1, "10.0.0.1", "10.0.0.2", 5060, 5060, "udp", ODD[5]))  # INVITE
    with pytest.raises(OSError, match="disk full"):  # its 200: an acc row for the sink
        sig.add(Datagram(1.1, 2, "10.0.0.2", "10.0.0.1", 5060, 5060, "udp", ODD[-1]))


@needs_c_add
def test_the_c_add_leaks_nothing():
    """Lab calls added again and again through the C add (rows, CDRs, sweeps, time-outs):
    the allocated blocks come back to where they were, and the datagrams' refcounts too."""
    datagrams = []
    saved = signalling.Signalling.__init__

    def keeps_the_datagrams(self, *args, **kw):  # the pipeline's own decoding, no signalling
        saved(self, *args, **kw)
        self.add = datagrams.append
    signalling.Signalling.__init__ = keeps_the_datagrams
    try:
        for path in LABS:
            pipeline.account_files([path], lambda rec: None)
    finally:
        signalling.Signalling.__init__ = saved
    assert len(datagrams) > 100
    sample = datagrams[:30]

    def run(offset: float) -> None:
        records = []
        sig = signalling.Signalling(Counters(), records.append, dialog_timeout=30.0,
                                    on_call_end=lambda call: records.append(call))
        assert type(sig.add) is _txnlayer.SignallingAdd
        for d in datagrams:
            sig.add(d._replace(ts=d.ts + offset))
        sig.close()

    run(0.0)
    gc.collect()
    refs = [sys.getrefcount(d) for d in sample]
    blocks = sys.getallocatedblocks()
    for i in range(1, 40):
        run(i * 1000.0)
    gc.collect()
    assert sys.getallocatedblocks() - blocks < 500
    assert [sys.getrefcount(d) for d in sample] == refs
