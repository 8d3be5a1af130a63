"""IPv4 and IPv6 fragment reassembly with a bounded buffer and timeouts on packet time."""
from __future__ import annotations

from collections import OrderedDict

from .counters import Counters

MAX_DATAGRAM = 65535 + 40


class _Pending:
    __slots__ = ("first_ts", "parts", "total", "nbytes")

    def __init__(self, ts: float):
        self.first_ts = ts
        self.parts: dict[int, bytes] = {}
        self.total: int | None = None  # known once the last fragment (MF=0) arrived
        self.nbytes = 0


class Defragmenter:
    """Collects fragments by (version, src, dst, protocol, id); returns the whole payload.

    Bounded by `max_pending` datagrams and `timeout` seconds of packet time; what is dropped
    is counted as `frag.expired` or `frag.evicted`, never silently.
    """

    def __init__(self, counters: Counters, timeout: float = 30.0, max_pending: int = 4096):
        self.counters = counters
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple, _Pending] = OrderedDict()

    def add(self, key: tuple, offset: int, more: bool, data: bytes, ts: float) -> bytes | None:
        """Add one fragment (offset in bytes); the reassembled payload once it is complete."""
        self._expire(ts)
        c = self.counters
        c["frag.fragments"] += 1
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                c["frag.evicted"] += 1
            entry = self._pending[key] = _Pending(ts)
        end = offset + len(data)
        if end > MAX_DATAGRAM or (more and len(data) % 8):
            c["frag.invalid"] += 1
            del self._pending[key]
            return None
        if not more:
            entry.total = end
        if offset in entry.parts:
            c["frag.duplicate"] += 1
            return None
        entry.parts[offset] = data
        entry.nbytes += len(data)
        if entry.total is None or entry.nbytes < entry.total:
            return None
        out = bytearray()
        for off in sorted(entry.parts):
            part = entry.parts[off]
            if off > len(out):
                return None  # a hole remains; overlapping parts made nbytes look complete
            out[off:off + len(part)] = part
        if len(out) != entry.total:
            return None
        del self._pending[key]
        c["frag.reassembled"] += 1
        return bytes(out)

    def _expire(self, now: float) -> None:
        pending = self._pending
        while pending:
            key, entry = next(iter(pending.items()))
            if now - entry.first_ts <= self.timeout:
                break
            del pending[key]
            self.counters["frag.expired"] += 1

    def flush(self) -> None:
        """End of input: whatever is still incomplete is counted as expired."""
        self.counters["frag.expired"] += len(self._pending)
        self._pending.clear()
