"""TCP stream reassembly for message-oriented protocols (SIP, RFC 3261 section 18.3).

Each direction of a connection is a byte stream rebuilt from segments in sequence order,
tolerating retransmissions, overlaps, reordering and a capture that starts mid-connection.
A `framer` cuts complete messages off the front of the stream. A hole that is not filled
within `gap_timeout` seconds of packet time, or by `max_ooo_bytes` of later data, is
skipped and counted (`tcp.gap`): the partial message is lost, the stream goes on.

The bytes held (unframed plus out of order) are bounded per stream and, across all streams,
by `MAX_TOTAL_BYTES`: without it 20,000 half-open streams could hold 25 GB.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from .counters import Counters

FIN, SYN, RST = 0x01, 0x02, 0x04
# all streams' unframed and out-of-order bytes together; over it the least recently fed
# streams holding data are dropped (`tcp.budget_evicted`) until a quarter of it is free, so
# that the walk over the streams happens once per 16 MiB dropped, not per segment
MAX_TOTAL_BYTES = 64 << 20
Framer = Callable[[bytearray], "tuple[list[bytes], int, list[str]]"]


class _Stream:
    __slots__ = ("next_seq", "buf", "ooo", "ooo_bytes", "ooo_since", "last_ts")

    def __init__(self):
        self.next_seq: int | None = None
        self.buf = bytearray()
        self.ooo: dict[int, bytes] = {}
        self.ooo_bytes = 0
        self.ooo_since = 0.0
        self.last_ts = 0.0


def _size(st: _Stream) -> int:
    return len(st.buf) + st.ooo_bytes


def _delta(a: int, b: int) -> int:
    """a - b in sequence space (RFC 793 modular arithmetic)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d & 0x80000000 else d


class TcpReassembler:
    def __init__(self, framer: Framer, counters: Counters, *, max_streams: int = 20000,
                 max_buffer: int = 1 << 20, max_ooo_bytes: int = 256 * 1024,
                 gap_timeout: float = 2.0, idle_timeout: float = 600.0,
                 max_total_bytes: int = MAX_TOTAL_BYTES):
        self.framer = framer
        self.counters = counters
        self.max_streams = max_streams
        self.max_buffer = max_buffer
        self.max_ooo_bytes = max_ooo_bytes
        self.gap_timeout = gap_timeout
        self.idle_timeout = idle_timeout
        self.max_total_bytes = max_total_bytes
        self.held = 0  # bytes in all streams' buf and ooo
        self._streams: OrderedDict[tuple, _Stream] = OrderedDict()
        self._next_sweep = 0.0

    def tracks(self, key: tuple) -> bool:
        return key in self._streams

    def feed(self, key: tuple, seq: int, flags: int, payload: bytes, ts: float) -> list[bytes]:
        """One segment of the direction `key`; the messages it completes, in order."""
        c = self.counters
        streams = self._streams
        if ts >= self._next_sweep:
            self._sweep(ts)
        st = streams.get(key)
        if st is None:
            if not payload and not flags & SYN:
                return []
            if len(streams) >= self.max_streams:
                self.held -= _size(streams.popitem(last=False)[1])
                c["tcp.stream_evicted"] += 1
            st = streams[key] = _Stream()
            c["tcp.streams"] += 1
        else:
            streams.move_to_end(key)
        before = _size(st)
        st.last_ts = ts
        if flags & SYN:
            st.next_seq = (seq + 1) & 0xFFFFFFFF
            st.buf.clear()
            st.ooo.clear()
            st.ooo_bytes = 0
        out: list[bytes] = []
        if payload:
            if st.next_seq is None:
                st.next_seq = seq  # capture began mid-connection: trust the first data seen
            self._place(st, seq, payload, ts)
            out = self._frame(st)
        if flags & (FIN | RST):
            if st.ooo:  # a hole no longer fillable: the whole messages queued behind it still count
                self._skip_gap(st)
                out += self._frame(st)
            if st.buf or st.ooo:
                c["tcp.incomplete_at_close"] += 1
            del streams[key]
            self.held -= before
            return out
        self.held += _size(st) - before
        if self.held > self.max_total_bytes:
            self._shed()
        return out

    def _shed(self) -> None:
        """Over the total budget: drop the least recently fed streams that hold data (their
        partial messages are lost) until a quarter of the budget is free again."""
        target = self.max_total_bytes * 3 // 4
        victims = []
        for key, st in self._streams.items():
            if self.held <= target:
                break
            size = _size(st)
            if size:
                victims.append(key)
                self.held -= size
        else:  # every stream with data is going: none holds any (and no count can drift)
            self.held = 0
        for key in victims:
            del self._streams[key]
        self.counters["tcp.budget_evicted"] += len(victims)

    def _place(self, st: _Stream, seq: int, payload: bytes, ts: float) -> None:
        c = self.counters
        d = _delta(seq, st.next_seq)
        if d > 0:
            if seq not in st.ooo:
                if not st.ooo:
                    st.ooo_since = ts
                st.ooo[seq] = payload
                st.ooo_bytes += len(payload)
                c["tcp.out_of_order"] += 1
            if st.ooo_bytes > self.max_ooo_bytes or ts - st.ooo_since > self.gap_timeout:
                self._skip_gap(st)
            return
        end = d + len(payload)
        if end <= 0:
            c["tcp.retransmission"] += 1
            return
        if d < 0:
            c["tcp.overlap"] += 1
            payload = payload[-d:]
        self._append(st, payload)
        self._drain_ooo(st)

    def _append(self, st: _Stream, data: bytes) -> None:
        st.buf += data
        st.next_seq = (st.next_seq + len(data)) & 0xFFFFFFFF
        if len(st.buf) > self.max_buffer:
            self.counters["tcp.buffer_overflow"] += 1
            st.buf.clear()

    def _drain_ooo(self, st: _Stream) -> None:
        while st.ooo:
            progressed = False
            for seq in list(st.ooo):
                d = _delta(seq, st.next_seq)
                if d > 0:
                    continue
                data = st.ooo.pop(seq)
                st.ooo_bytes -= len(data)
                if d + len(data) > 0:
                    self._append(st, data[-d:] if d < 0 else data)
                progressed = True
            if not progressed:
                break

    def _skip_gap(self, st: _Stream) -> None:
        """Give up on the hole: drop the partial message and resume at the earliest later data."""
        self.counters["tcp.gap"] += 1
        st.buf.clear()
        st.next_seq = min(st.ooo, key=lambda s: _delta(s, st.next_seq))
        self._drain_ooo(st)

    def _frame(self, st: _Stream) -> list[bytes]:
        if not st.buf:
            return []
        messages, consumed, events = self.framer(st.buf)
        if consumed:
            del st.buf[:consumed]
        for e in events:
            self.counters[e] += 1
        return messages

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 60.0
        stale = [k for k, st in self._streams.items() if now - st.last_ts > self.idle_timeout]
        for k in stale:
            self.held -= _size(self._streams.pop(k))
        self.counters["tcp.stream_expired"] += len(stale)

    def flush(self) -> None:
        """End of input: streams holding a partial message are counted."""
        self.counters["tcp.incomplete_at_close"] += sum(
            1 for st in self._streams.values() if st.buf or st.ooo)
        self._streams.clear()
        self.held = 0
