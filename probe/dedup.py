"""Suppression of the duplicate copies a SPAN port makes of one IP packet.

A mirror that copies both ingress and egress, or two mirrored hops, shows the same IP packet
again within microseconds to milliseconds. The key is the IP packet itself with the fields a
router rewrites (TTL or hop limit, header checksum) masked, so those copies collapse while a
SIP retransmission (at least T1 = 500 ms later) stays distinct.
"""
from __future__ import annotations

from collections import deque


class SpanDedup:
    """Remembers packets seen within `window` seconds of packet time."""

    def __init__(self, window: float = 0.010):
        self.window = window
        self._seen: dict[bytes, float] = {}
        self._order: deque[tuple[float, bytes]] = deque()

    def is_duplicate(self, key: bytes, ts: float) -> bool:
        if self.window <= 0:
            return False
        order, seen = self._order, self._seen
        horizon = ts - self.window
        while order and order[0][0] < horizon:
            old_ts, old_key = order.popleft()
            if seen.get(old_key) == old_ts:
                del seen[old_key]
        last = seen.get(key)
        if last is not None and ts - last <= self.window:
            return True
        seen[key] = ts
        order.append((ts, key))
        return False


def ipv4_key(packet: bytes) -> bytes:
    """The IPv4 packet without TTL (byte 8) and header checksum (bytes 10-11)."""
    return packet[:8] + packet[9:10] + packet[12:]


def ipv6_key(packet: bytes) -> bytes:
    """The IPv6 packet without the hop limit (byte 7)."""
    return packet[:7] + packet[8:]
