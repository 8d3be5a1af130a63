"""DialogLayer bounds: the oldest call makes room when max_calls are open."""
from types import SimpleNamespace

from probe.counters import Counters
from sip_dissect.dialog import DialogLayer
from sip_dissect.events import Publisher


def _invite(n: int):
    return SimpleNamespace(callid=f"c{n}", from_tag=f"t{n}", created=100.0 + n)


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
