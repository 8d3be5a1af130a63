"""Suppression of the duplicate copies a SPAN port makes of one IP packet.

A mirror that copies both ingress and egress, or two mirrored hops, shows the same IP packet
again within microseconds to milliseconds, possibly with another VLAN tag, TTL or checksum.
The key is what the transport carries: addresses, IPv4 ID, ports and the UDP payload, or the
whole TCP segment (two sends of the same bytes differ in their IPv4 ID); IP fragments are keyed on the fragment with TTL/hop limit and checksum masked.
A SIP retransmission (at least T1 = 500 ms later) stays distinct.
"""
from __future__ import annotations



class SpanDedup:
    """Remembers packets seen within `window` seconds of packet time.

    Two generations of keys: the older is dropped whole each window, so forgetting costs
    nothing per packet and memory holds at most two windows of traffic."""

    def __init__(self, window: float = 0.010):
        self.window = window
        self._seen: dict = {}
        self._older: dict = {}
        self._rotate_at = 0.0

    def is_duplicate(self, key, ts: float) -> bool:
        if self.window <= 0:
            return False
        if ts >= self._rotate_at:
            self._older, self._seen = self._seen, {}
            self._rotate_at = ts + self.window
        seen = self._seen
        last = seen.get(key)
        if last is None:
            last = self._older.get(key)
        seen[key] = ts
        return last is not None and 0 <= ts - last <= self.window


def ipv4_key(packet: bytes) -> bytes:
    """The IPv4 packet without TTL (byte 8) and header checksum (bytes 10-11)."""
    return packet[:8] + packet[9:10] + packet[12:]


def ipv6_key(packet: bytes) -> bytes:
    """The IPv6 packet without the hop limit (byte 7)."""
    return packet[:7] + packet[8:]
