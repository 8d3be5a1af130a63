"""The native dialog layer (sip_dissect/_dialogs.c) against its reference, dialog.py.

Replays compare the two through the signalling layers (test_native_transactions.py: the C
dialog layer runs with the C add); here seeded random sequences of dialog events (forks,
challenges, CANCELs, BYEs from either side or the proxy, re-sent INVITEs, expiry, eviction,
the end of input) drive both step by step and every call's attributes, the totals, the
counters and the order of finished calls must agree.

Build it with: python setup.py build_ext --inplace
"""
from __future__ import annotations

import gc
import os
import random
import sys
from types import SimpleNamespace

import pytest

from probe.counters import Counters
from sip_dissect import dialog, signalling
from sip_dissect.dialog import DialogLayer
from sip_dissect.uri import request_uris

try:
    from sip_dissect import _dialogs
except ImportError:  # not built: no compiler, or build_ext not run
    _dialogs = None
else:
    _dialogs.init(request_uris)  # dialog.py does it too, unless SIPPROBE_PURE=1

pytestmark = pytest.mark.skipif(
    _dialogs is None, reason="sip_dissect._dialogs is not built "
    "(python setup.py build_ext --inplace); the signalling uses dialog.py")

FIELDS = ("callid", "caller_tag", "created", "state", "callee_tags", "confirmed_tag",
          "ring_time", "answer_time", "end_time", "final_code", "final_reason", "ended_by",
          "end_reason", "last_activity", "challenges")


def test_the_signalling_runs_it_with_the_native_transaction_layer():
    if os.environ.get("SIPPROBE_PURE") == "1":
        pytest.skip("SIPPROBE_PURE=1 turns the native layers off on purpose")
    assert dialog.NativeDialogLayer is _dialogs.DialogLayer
    sig = signalling.Signalling(Counters(), lambda rec: None)
    assert type(sig.dialogs) is _dialogs.DialogLayer


def txn(callid, from_tag, created, **kw):
    """What the dialog layer reads of a transaction."""
    fields = dict(callid=callid, from_tag=from_tag, created=created, final_status=None,
                  final_ts=None, final_to_tag="", final_reason="", cancel=None,
                  request=SimpleNamespace(from_value=f"<sip:u{callid}@a>;tag={from_tag}",
                                          to_value="<sip:b@c>", uri=f"sip:{callid}@d"))
    fields.update(kw)
    return SimpleNamespace(**fields)


def fields(call) -> tuple:
    """A call's attributes now (copies: the lists change later)."""
    return tuple(tuple(v) if isinstance(v, list) else v
                 for v in (getattr(call, f) for f in FIELDS))


def state(layer, calls) -> tuple:
    return (dict(layer.totals), {k: fields(c) for k, c in layer.calls.items()},
            [fields(c) for c in calls])


def run_both(ops):
    """Apply each op to a Python and a C layer, in turn; the states after every step."""
    out = {}
    for name, cls in (("python", DialogLayer), ("native", _dialogs.DialogLayer)):
        counters, ended = Counters(), []
        layer = cls(counters, dialog_timeout=30.0, max_calls=4, on_end=ended.append)
        calls, steps = {}, []  # invite number -> this layer's call
        for op, *args in ops:
            if op == "invite":
                calls[args[0]] = layer.initial_invite(args[1])
            elif op == "provisional":
                layer.provisional(calls[args[0]], args[1], *args[2:])
            elif op == "final":
                invite, fields = args[1], args[2]
                for key, value in fields.items():  # the reply as it is at this step
                    setattr(invite, key, value)
                layer.final(calls[args[0]], invite)
            elif op == "bye":
                layer.bye(calls[args[0]], args[1], sent_by_proxy=args[2])
            elif op == "find":
                found = layer.find(*args)
                steps.append(None if found is None else (found.callid, found.caller_tag))
            elif op == "sweep":
                layer.sweep(args[0])
                steps.append(layer.next_sweep)
            elif op == "close":
                layer.close()
            steps.append(state(layer, ended))
        steps.append(dict(counters))
        out[name] = steps
    return out["python"], out["native"]


def random_ops(rnd: random.Random, n: int) -> list:
    ops, t, invites = [], 1000.0, []
    for _ in range(n):
        t += rnd.choice([0.01, 0.5, 5.0, 40.0])
        kind = rnd.random()
        if kind < 0.3 or not invites:
            invites.append(txn(f"c{rnd.randrange(8)}", f"f{rnd.randrange(3)}", t))
            ops.append(("invite", len(invites) - 1, invites[-1]))
            continue
        i = rnd.randrange(len(invites))
        inv = invites[i]
        if kind < 0.55:
            ops.append(("provisional", i, inv, rnd.choice([100, 180, 183, 181]),
                        rnd.choice(["", "t1", "t2", "t3"]), t))
        elif kind < 0.75:
            status = rnd.choice([200, 202, 401, 407, 486, 487, 404, 302, 603])
            ops.append(("final", i, inv, dict(
                final_status=status, final_ts=t, final_to_tag=rnd.choice(["t1", "t2", ""]),
                final_reason=f"R{status}", cancel=object() if rnd.random() < 0.2 else None)))
        elif kind < 0.85:
            ops.append(("bye", i, txn(inv.callid, rnd.choice([inv.from_tag, "t1", "t2"]), t),
                        rnd.random() < 0.2))
        elif kind < 0.93:
            ops.append(("find", inv.callid, rnd.choice([inv.from_tag, "t1", "zz"]),
                        rnd.choice([inv.from_tag, "t2", "zz"])))
        else:
            ops.append(("sweep", t))
    ops.append(("close",))
    return ops


@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_step_by_step(seed):
    python, native = run_both(random_ops(random.Random(seed), 120))
    assert native == python


def test_calls_are_read_only_but_last_activity_and_the_uri_cache():
    layer = _dialogs.DialogLayer(Counters())
    call = layer.initial_invite(txn("c1", "f1", 5.0))
    assert (call.state, call.last_activity, call.callee_tags, call.challenges) == ("INIT", 5.0, [], 0)
    with pytest.raises(AttributeError):
        call.state = "CONFIRMED"
    call.last_activity = 9.0
    assert layer.find("c1", "x", "f1") is call
    req = call.invite.request
    assert call.invite_uris() == (req, "uc1", "a", "b", "c1", "d")
    assert call.invite_uris() is call.invite_uris()  # parsed once per request
    call.uris = None
    assert call.invite_uris()[1:] == ("uc1", "a", "b", "c1", "d")
    del call.last_activity  # as a Python __slots__ member: the next read says so
    with pytest.raises(AttributeError):
        layer.sweep(10_000.0)


def test_bad_arguments_raise_not_crash():
    layer = _dialogs.DialogLayer(Counters())
    call = layer.initial_invite(txn("c1", "f1", 5.0))
    plain = dialog.Call(txn("c2", "f2", 6.0))
    with pytest.raises(TypeError):
        layer.provisional(plain, None, 180, "t", 7.0)  # a Python Call: not this layer's
    with pytest.raises(TypeError):
        layer.final(call)
    with pytest.raises(TypeError):
        layer.bye(call, txn("c1", "f1", 8.0), sent_by_peer=True)
    with pytest.raises(AttributeError):
        layer.initial_invite(object())
    with pytest.raises(TypeError):
        layer.final(call, txn("c1", "f1", 8.0))  # no final reply: None < 300, as in Python
    with pytest.raises(TypeError):
        layer.sweep("now")
    with pytest.raises(ValueError):
        _dialogs.DialogLayer(Counters(), max_calls=0)
    with pytest.raises(TypeError):
        _dialogs.init(None)
    assert call.invite_uris()  # init() refused: the function it had stays
    layer.calls[("x", "y")] = "not a call"
    with pytest.raises(TypeError):
        layer.initial_invite(txn("x", "y", 9.0))


def test_on_end_errors_propagate():
    def broken(call):
        raise RuntimeError("store down")
    layer = _dialogs.DialogLayer(Counters(), on_end=broken)
    inv = txn("c1", "f1", 5.0)
    call = layer.initial_invite(inv)
    with pytest.raises(RuntimeError, match="store down"):
        layer.bye(call, txn("c1", "f1", 9.0), False)
    assert call.state == "TERMINATED" and ("c1", "f1") not in layer.calls


def test_no_leaks_over_many_calls():
    def cycle(layer, n):
        for i in range(n):
            inv = txn(f"c{i}", "f", float(i))
            call = layer.initial_invite(inv)
            layer.provisional(call, inv, 180, "t1", i + 0.1)
            inv.final_status, inv.final_ts, inv.final_to_tag = 200, i + 0.2, "t1"
            inv.final_reason = "OK"
            layer.final(call, inv)
            call.invite_uris()
            layer.find(f"c{i}", "t1", "f")
            if i % 3:
                layer.bye(call, txn(f"c{i}", "t1", i + 0.3), sent_by_proxy=False)
        layer.sweep(float(n) + 10_000)
        layer.close()

    ended = []
    cycle(_dialogs.DialogLayer(Counters(), max_calls=50, on_end=ended.append), 500)
    ended.clear()
    gc.collect()
    blocks = sys.getallocatedblocks()
    for _ in range(5):
        cycle(_dialogs.DialogLayer(Counters(), max_calls=50, on_end=ended.append), 500)
        ended.clear()
    gc.collect()
    assert sys.getallocatedblocks() - blocks < 300
