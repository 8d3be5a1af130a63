"""DialogLayer bounds: the oldest call makes room when max_calls are open."""
from probe.counters import Counters
from probe.records import Datagram
from sip_dissect.dialog import DialogLayer
from sip_dissect.events import Publisher
from sip_dissect.scan import SipHead
from sip_dissect.transaction import Transaction


def _invite(n: int, state: str = "PROCEEDING") -> Transaction:
    msg = SipHead(**{**dict.fromkeys(SipHead._fields), "method": "INVITE", "call_id": f"c{n}",
                     "from_tag": f"t{n}", "to_tag": "", "cseq": 1})
    d = Datagram(100.0 + n, n, "192.0.2.10", "192.0.2.1", 5060, 5060, "udp", b"")
    txn = Transaction((f"z9hG4bK{n}", "192.0.2.10:5060", "INVITE"), msg, d, "INVITE")
    txn.state = state  # PROCEEDING: a 100 Trying came back; CALLING: no reply at all
    return txn


def _layer(max_calls: int):
    ended, counters = [], Counters()
    events = Publisher()
    events.add_handler("call_ended", ended.append)
    return DialogLayer(counters, max_calls=max_calls, events=events), ended, counters


def test_oldest_call_evicted_and_reported_expired():
    layer, ended, counters = _layer(2)
    for n in range(3):
        layer.initial_invite(_invite(n))
    assert [c.callid for c in ended] == ["c0"]
    assert (ended[0].end_reason, ended[0].end_time) == ("expired", 100.0)
    assert counters["state.dialog_evicted"] == 1
    assert list(layer.calls) == [("c1", "t1"), ("c2", "t2")]
    assert layer.find("c1", "x", "t1") is layer.calls[("c1", "t1")]


def test_an_evicted_call_whose_invite_got_no_reply_ends_unanswered():
    layer, ended, counters = _layer(2)
    for n in range(3):
        layer.initial_invite(_invite(n, "CALLING"))
    assert [(c.callid, c.end_reason) for c in ended] == [("c0", "unanswered")]
    assert counters["state.dialog_evicted"] == counters["state.invite_unanswered"] == 1


def test_eviction_skips_calls_that_already_ended_and_the_queue_stays_bounded():
    """Calls that end on their own leave their key in the arrival queue; eviction drops
    such keys on the way to the oldest live call, and the sweep rebuilds the queue when
    ended calls' keys outnumber the live ones."""
    layer, ended, counters = _layer(3)
    calls = [layer.initial_invite(_invite(n)) for n in range(3)]
    layer.bye(calls[0], calls[0].invite, False)  # c0 ends: its key stays queued
    layer.initial_invite(_invite(3))  # room without eviction
    layer.initial_invite(_invite(4))  # evicts c1, the oldest live call, not c0's stale key
    assert [(c.callid, c.end_reason) for c in ended] == [("c0", "completed"), ("c1", "expired")]
    assert counters["state.dialog_evicted"] == 1
    for n in range(5, 3000):
        call = layer.initial_invite(_invite(n))
        layer.bye(call, call.invite, False)
    layer.sweep(200.0)
    assert len(layer.calls) == 2 and len(layer._order) <= 2 * len(layer.calls) + 1024
