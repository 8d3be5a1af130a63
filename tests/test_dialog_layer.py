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


def test_eviction_is_oldest_first_and_skips_calls_that_already_ended():
    """A flood at the cap: each new call evicts the oldest live one; calls that ended on
    their own after the arrival order was copied are skipped, never evicted twice."""
    layer, ended, counters = _layer(3)
    calls = [layer.initial_invite(_invite(n)) for n in range(3)]
    layer.initial_invite(_invite(3))  # evicts c0; the order copy holds c1, c2 (c3 is younger)
    layer.bye(calls[1], calls[1].invite, False)  # c1 ends: its key stays in the copy
    layer.initial_invite(_invite(4))  # room without eviction
    layer.initial_invite(_invite(5))  # evicts c2, skipping c1's key
    layer.initial_invite(_invite(6))  # the copy ran out: copied again, evicts c3
    assert [(c.callid, c.end_reason) for c in ended] == [
        ("c0", "expired"), ("c1", "completed"), ("c2", "expired"), ("c3", "expired")]
    assert counters["state.dialog_evicted"] == 3
    for n in range(7, 3000):
        layer.initial_invite(_invite(n))
    assert len(layer.calls) == 3 and counters["state.dialog_evicted"] == 2996
    assert len(layer._order) <= 3
