"""Named counters (`layer.what`), shared by every stage of one run."""
from __future__ import annotations

from collections import Counter


class Counters(Counter):
    """A Counter whose keys are `layer.what` reasons, e.g. `decode.ipv4_truncated`."""

    def by_layer(self, layer: str) -> dict[str, int]:
        prefix = layer + "."
        return {k: v for k, v in sorted(self.items()) if k.startswith(prefix)}
