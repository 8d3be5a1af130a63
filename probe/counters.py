"""Named counters (`layer.what`), shared by every stage of one run."""
from __future__ import annotations


class Counters(dict):
    """Counts keyed by `layer.what` reasons, e.g. `decode.ipv4_truncated`; a missing one is 0.

    A plain dict with __missing__, not a collections.Counter: Counter defines __delitem__ in
    Python, which routes every `c[k] += 1` (several per SIP message) through a Python-level
    slot, about ten times the cost of a dict's own store."""

    def __missing__(self, key: str) -> int:
        return 0

    def by_layer(self, layer: str) -> dict[str, int]:
        prefix = layer + "."
        return {k: v for k, v in sorted(self.items()) if k.startswith(prefix)}
