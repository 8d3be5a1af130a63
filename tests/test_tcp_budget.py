"""The total byte budget of TCP reassembly (probe/tcp.py MAX_TOTAL_BYTES): a flood of
half-open streams that each hold part of a message cannot make the probe hold more than the
budget, however many streams (up to the 20,000 cap) it spreads over."""
from __future__ import annotations

from crafted import sip_call

from probe.counters import Counters
from probe.tcp import MAX_TOTAL_BYTES, TcpReassembler
from sip_dissect.framing import frame_sip_stream

# a SIP request's start and headers with no blank line: the framer must wait for the rest
PARTIAL = b"INVITE sip:b@198.51.100.20 SIP/2.0\r\nX-Pad: " + b"a" * 4000 + b"\r\n"


def held_by_streams(tcp: TcpReassembler) -> int:
    """An independent recount of what the streams hold."""
    return sum(len(st.buf) + sum(map(len, st.ooo.values())) for st in tcp._streams.values())


def key(i: int) -> tuple:
    return ("10.0.%d.%d" % (i >> 8 & 255, i & 255), 40000 + i % 20000, "198.51.100.20", 5060)


def test_flood_of_half_open_streams_stays_within_the_budget():
    """20,000 streams each with 4 KiB of an unfinished INVITE (78 MiB) at the default budget:
    the oldest are dropped and counted, the total never passes 64 MiB, and a call on a stream
    fed during the flood still completes."""
    c = Counters()
    tcp = TcpReassembler(frame_sip_stream, c)
    live = ("192.0.2.10", 5070, "198.51.100.20", 5060)
    invite = sip_call(transport="TCP")[0][1]
    half = len(invite) // 2
    seq = 1000
    assert tcp.feed(live, seq, 0, invite[:half], 0.0) == []
    peak = 0
    for i in range(20_000 - 1):
        assert tcp.feed(key(i), 7, 0, PARTIAL, 0.001 * i) == []
        peak = max(peak, tcp.held)
        if i % 1000 == 0:  # the live call's stream is fed now and then: recently used, kept
            assert tcp.feed(live, seq + half, 0, b"", 0.001 * i) == []
    assert peak <= MAX_TOTAL_BYTES
    assert tcp.held == held_by_streams(tcp)
    evicted = c["tcp.budget_evicted"]
    assert evicted > 0
    assert c["tcp.stream_evicted"] == 0  # the budget, not the stream cap, did it
    # what was dropped is the oldest: the first streams are gone, the last ones are all there
    assert not tcp.tracks(key(0))
    assert all(tcp.tracks(key(i)) for i in range(20_000 - 1000, 20_000 - 1))
    # 20,000 x 4 KiB: a quarter of the budget freed each time the budget is passed
    assert tcp.held == 19_999 * len(PARTIAL) + half - evicted * len(PARTIAL)
    assert tcp.feed(live, seq + half, 0, invite[half:], 20.0) == [invite]


def test_out_of_order_flood_is_bounded_too():
    """1,000 streams each holding 200 KiB behind a hole (under the 256 KiB per-stream bound):
    200 MB of out-of-order data in theory, the budget in fact; what is left is counted right
    when streams close or expire."""
    c = Counters()
    tcp = TcpReassembler(frame_sip_stream, c)
    chunk = b"x" * (200 * 1024)
    for i in range(1000):
        tcp.feed(key(i), 1, 0, b"", 0.0)  # no data, no SYN: not even tracked
        tcp.feed(key(i), 100, 0x02, b"", 0.0)  # SYN: next data at 101
        tcp.feed(key(i), 5000, 0, chunk, 0.0)  # a hole from 101 to 5000
        assert tcp.held <= MAX_TOTAL_BYTES
    assert tcp.held == held_by_streams(tcp) > MAX_TOTAL_BYTES // 2
    assert c["tcp.budget_evicted"] > 0
    # closing a stream gives its bytes back
    survivor = next(k for k in (key(i) for i in range(999, 0, -1)) if tcp.tracks(k))
    before = tcp.held
    tcp.feed(survivor, 5000 + len(chunk), 0x01, b"", 0.5)  # FIN
    assert tcp.held == held_by_streams(tcp) == before - len(chunk)
    tcp.feed(key(0), 1, 0x02, b"", 700.0)  # past the 600 s idle timeout: the sweep expires the rest
    assert tcp.held == held_by_streams(tcp) == 0
