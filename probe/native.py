"""The optional C accelerators: setup.py builds them when a compiler is there; each has a
pure-Python twin that is used when it is not built, or when SIPPROBE_PURE=1 (tests, bisecting)."""
from __future__ import annotations

import importlib
import os

PURE = os.environ.get("SIPPROBE_PURE") == "1"  # read once, at import, as the modules choose


def load(name: str):
    """The extension module `name` (e.g. "probe._fastdecode"), or None: not built, or PURE."""
    if PURE:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
