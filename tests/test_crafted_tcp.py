"""SIP over TCP: stream reassembly (probe/tcp.py) and message framing (sip_dissect/framing.py)."""
from __future__ import annotations

import pytest

from crafted import (T0, TcpFlow, frames, sip_call, sip_expected, split, stats, write_pcap)

# When each message of the call is sent, seconds after T0 (as in a real call: the callee
# answers after ringing, the caller hangs up later).
TIMES = (0.0, 0.01, 0.2, 2.0, 2.05, 10.0, 10.05)


def tcp_call(segments_of=lambda i, msg: [msg], *, port: int = 5060, handshake: bool = True,
             gap: float = 0.001):
    """The call over one TCP connection; message i is sent as the segments segments_of(i, msg).

    Returns (flow, list of (ts, packet)) with each message's segments `gap` seconds apart.
    """
    flow = TcpFlow(b_port=port)
    out = flow.handshake(T0 - 0.1) if handshake else []
    for i, (t, (who, msg)) in enumerate(zip(TIMES, sip_call(transport="TCP"))):
        for j, piece in enumerate(segments_of(i, msg)):
            out.append(flow.send(who, piece, T0 + t + j * gap))
    return flow, out


def run(tmp_path, packets, **opts):
    return stats(write_pcap(tmp_path / "tcp.pcap", frames(packets), 1), **opts)


def test_invite_over_three_segments(tmp_path):
    """An INVITE split over 3 segments is one message; the whole call counts as over TCP, with
    the server's sequence numbers wrapping past 2**32 on the way."""
    _, packets = tcp_call(lambda i, m: split(m, 3) if i == 0 else [m])
    r = run(tmp_path, packets)
    assert r["frames_matched"] == 3 + 3 + 6
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2}


def test_segments_out_of_order(tmp_path):
    """Segments 1, 3, 2 of the INVITE: the third waits for the second, then the message is whole."""
    _, packets = tcp_call(lambda i, m: split(m, 3) if i == 0 else [m])
    invite = packets[3:6]
    packets[3:6] = [invite[0], (invite[1][0], invite[2][1]), (invite[2][0], invite[1][1])]
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "tcp.out_of_order": 1}


def test_segments_in_reverse_order(tmp_path):
    """Segments 1, 4, 3, 2 of the INVITE: when 2 arrives, 3 and then 4 are drained from the
    out-of-order queue although they were queued in the opposite order."""
    _, packets = tcp_call(lambda i, m: split(m, 4) if i == 0 else [m])
    times = [t for t, _ in packets[3:7]]
    segs = [p for _, p in packets[3:7]]
    packets[3:7] = list(zip(times, [segs[0], segs[3], segs[2], segs[1]]))
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "tcp.out_of_order": 2}


def test_retransmitted_segment(tmp_path):
    """The INVITE's second segment sent again 300 ms later (an RTO, not a SPAN copy) is a
    tcp.retransmission; the INVITE is counted once."""
    _, packets = tcp_call(lambda i, m: split(m, 3) if i == 0 else [m])
    t2, seg2 = packets[4]
    packets.insert(5, (t2 + 0.3, seg2))
    packets[6] = (t2 + 0.301, packets[6][1])
    r = run(tmp_path, sorted(packets, key=lambda p: p[0]))
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "tcp.retransmission": 1}


def test_span_copy_of_a_segment(tmp_path):
    """A segment mirrored twice 1 ms apart (TTL rewritten) is a SPAN duplicate, not a TCP
    retransmission, and the INVITE it belongs to is counted once."""
    from scapy.layers.inet import IP
    _, packets = tcp_call(lambda i, m: split(m, 3) if i == 0 else [m])
    t2, seg2 = packets[4]
    copy = IP(bytes(seg2))
    copy.ttl, copy.chksum = seg2.ttl - 1, None
    packets.insert(5, (t2 + 0.0001, IP(bytes(copy))))
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "dedup.duplicates": 1}


def test_overlapping_resend(tmp_path):
    """A resent segment that starts inside data already seen and carries new bytes after it
    is trimmed (tcp.overlap), not appended twice."""
    flow = TcpFlow()
    call = sip_call(transport="TCP")
    invite = call[0][1]
    packets = flow.handshake(T0 - 0.1)
    packets += [flow.send("a", invite[:300], T0), flow.send("a", invite[200:], T0 + 0.3, back=100)]
    packets += [flow.send(who, msg, T0 + t) for t, (who, msg) in zip(TIMES[1:], call[1:])]
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "tcp.overlap": 1}


def test_two_messages_in_one_segment(tmp_path):
    """180 Ringing and 200 OK written back to back in one segment are two messages."""
    flow = TcpFlow()
    call = sip_call(transport="TCP")
    packets = flow.handshake(T0 - 0.1)
    packets += [flow.send("a", call[0][1], T0), flow.send("b", call[1][1], T0 + 0.01),
                flow.send("b", call[2][1] + call[3][1], T0 + 2.0)]
    packets += [flow.send(who, msg, T0 + 3 + i) for i, (who, msg) in enumerate(call[4:])]
    r = run(tmp_path, packets)
    assert r["frames_matched"] == 3 + 6
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2}


def test_capture_starts_mid_message(tmp_path):
    """The first segment seen (no handshake) holds the tail of an earlier BYE and then the
    INVITE: the tail is skipped (sip.tcp_resync) and the INVITE and the rest are counted."""
    earlier_bye = dict(sip_call(transport="TCP", call_id="earlier@pc33", tag="0")[5:6])["a"]
    flow, packets = tcp_call(lambda i, m: [earlier_bye[-150:] + m] if i == 0 else [m],
                             handshake=False)
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "sip.tcp_resync": 1}


def test_capture_starts_with_a_lone_tail(tmp_path):
    """A first segment holding only the tail of a message is dropped whole (no start line in
    sight: counted as sip.tcp_not_sip); the next segment starts a message and is counted."""
    earlier_bye = dict(sip_call(transport="TCP", call_id="earlier@pc33", tag="0")[5:6])["a"]
    flow = TcpFlow()
    packets = [flow.send("a", earlier_bye[-150:], T0 - 1)]
    packets += [flow.send(who, msg, T0 + t) for t, (who, msg) in zip(TIMES, sip_call(transport="TCP"))]
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "sip.tcp_not_sip": 1}


def test_lost_segment_skipped_after_gap_timeout(tmp_path):
    """The INVITE's middle segment never reaches the capture. The ACK 2 s later waits behind
    the hole until the gap timeout (2 s of packet time) passes; then the hole is skipped
    (tcp.gap), the INVITE's tail dropped (sip.tcp_resync) and ACK and BYE are counted."""
    _, packets = tcp_call(lambda i, m: split(m, 3) if i == 0 else [m])
    del packets[4]  # INVITE segment 2 of 3
    r = run(tmp_path, packets)
    assert r["sip"] == {"messages": 6, "requests": {"ACK": 1, "BYE": 1},
                        "responses": {"100": 1, "180": 1, "200": 2}, "retransmissions": 0,
                        "transport": {"tcp": 6}}
    assert r["counters"] == {"tcp.streams": 2, "tcp.out_of_order": 2, "tcp.gap": 1,
                             "sip.tcp_resync": 1}


def test_lost_segment_then_close(tmp_path):
    """A hole that is still open when the sender closes the connection (FIN) within the gap
    timeout: the complete messages queued behind it are still delivered."""
    flow = TcpFlow()
    call = sip_call(transport="TCP")
    packets = flow.handshake(T0 - 0.1)
    invite = split(call[0][1], 3)
    packets += [flow.send("a", piece, T0 + i * 0.001) for i, piece in enumerate(invite)]
    del packets[4]  # lost at the capture point
    packets += [flow.send("b", call[i][1], T0 + 0.01 * i) for i in (1, 2, 3)]
    packets += [flow.send("a", call[4][1], T0 + 0.5), flow.send("a", call[5][1], T0 + 0.6),
                flow.send("b", call[6][1], T0 + 0.65), flow.close("a", T0 + 0.7)]
    r = run(tmp_path, packets)
    assert r["sip"]["requests"] == {"ACK": 1, "BYE": 1}
    assert r["sip"]["responses"] == {"100": 1, "180": 1, "200": 2}
    assert r["counters"] == {"tcp.streams": 2, "tcp.out_of_order": 3, "tcp.gap": 1,
                             "sip.tcp_resync": 1}


def test_crlf_keepalives_between_messages(tmp_path):
    """RFC 5626 double-CRLF pings and CRLF pongs between messages are skipped by the framer;
    they are neither messages nor errors."""
    def with_pings(i, msg):
        return [b"\r\n\r\n", msg] if TIMES[i] > 1 else [msg]
    flow, packets = tcp_call(with_pings)
    packets.append(flow.send("b", b"\r\n", T0 + 11))
    r = run(tmp_path, packets)
    assert r["frames_matched"] == 3 + 7 + 4 + 1
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2}


def test_nonstandard_port_one_message_per_segment(tmp_path):
    """SIP over TCP on port 5080 (not a SIP port): each segment that opens with a SIP start line
    passes the filter and starts the stream, so every message is counted; the handshake does not
    (no payload), and nothing else on the port reaches Python."""
    _, packets = tcp_call(port=5080)
    r = run(tmp_path, packets)
    assert r["frames_matched"] == 7
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2}


@pytest.mark.parametrize("sip_ports", [None, (5080,)])
def test_nonstandard_port_message_over_two_segments(tmp_path, sip_ports):
    """On port 5080 the INVITE's continuation segment does not open like SIP, so the built-in
    filter drops it: the INVITE is lost (tcp.gap once the ACK waited 2 s). Declaring the port
    (sip_ports=(5080,)) keeps the whole stream and the INVITE is counted."""
    _, packets = tcp_call(lambda i, m: split(m, 2) if i == 0 else [m], port=5080)
    r = run(tmp_path, packets, **({"sip_ports": sip_ports} if sip_ports else {}))
    if sip_ports:
        assert r["frames_matched"] == 3 + 8
        assert r["sip"] == sip_expected(transport="tcp")
        assert r["counters"] == {"tcp.streams": 2}
    else:
        assert r["frames_matched"] == 7
        assert r["sip"]["requests"] == {"ACK": 1, "BYE": 1}
        assert r["sip"]["responses"] == {"100": 1, "180": 1, "200": 2}
        assert r["counters"] == {"tcp.streams": 2, "tcp.out_of_order": 2, "tcp.gap": 1}


def test_bad_content_length_over_tcp(tmp_path):
    """A Content-Length that is not a number cannot frame the message: it is cut at the blank
    line (sip.tcp_no_content_length), its SDP body, alone in the buffer, is dropped as junk
    (sip.tcp_not_sip) and the following messages are found again."""
    def broken(i, msg):
        return [msg.replace(b"Content-Length: ", b"Content-Length: x")] if i == 0 else [msg]
    _, packets = tcp_call(broken)
    r = run(tmp_path, packets)
    assert r["sip"] == sip_expected(transport="tcp")
    assert r["counters"] == {"tcp.streams": 2, "sip.tcp_no_content_length": 1,
                             "sip.tcp_not_sip": 1}


def test_incomplete_message_at_end_of_capture(tmp_path):
    """A message still missing its last segment when the capture ends is counted as
    tcp.incomplete_at_close, not as a message."""
    _, packets = tcp_call(lambda i, m: split(m, 2) if i == 6 else [m])
    r = run(tmp_path, packets[:-1])
    assert r["sip"]["responses"] == {"100": 1, "180": 1, "200": 1}
    assert r["counters"] == {"tcp.streams": 2, "tcp.incomplete_at_close": 1}
