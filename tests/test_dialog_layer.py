"""DialogLayer bounds: the oldest call makes room when max_calls are open."""
from probe.counters import Counters
from probe.records import Datagram
from sip_dissect.dialog import DialogLayer
from sip_dissect.events import Publisher
from sip_dissect.scan import SipHead
from sip_dissect.transaction import Transaction


def _invite(n: int) -> Transaction:
    msg = SipHead(**{**dict.fromkeys(SipHead._fields), "method": "INVITE", "call_id": f"c{n}",
                     "from_tag": f"t{n}", "to_tag": "", "cseq": 1})
    d = Datagram(100.0 + n, n, "192.0.2.10", "192.0.2.1", 5060, 5060, "udp", b"")
    return Transaction((f"z9hG4bK{n}", "192.0.2.10:5060", "INVITE"), msg, d, "INVITE")


def test_oldest_call_evicted_and_reported_expired():
    ended, counters = [], Counters()
    events = Publisher()
    events.add_handler("call_ended", ended.append)
    layer = DialogLayer(counters, max_calls=2, events=events)
    for n in range(3):
        layer.initial_invite(_invite(n))
    assert [c.callid for c in ended] == ["c0"]
    assert (ended[0].end_reason, ended[0].end_time) == ("expired", 100.0)
    assert counters["state.dialog_evicted"] == 1
    assert list(layer.calls) == [("c1", "t1"), ("c2", "t2")]
    assert layer.find("c1", "x", "t1") is layer.calls[("c1", "t1")]
