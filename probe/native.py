"""What runs natively, and the switch back to Python for all of it (SIPPROBE_PURE=1: tests,
bisecting, a fault to tell apart from a compiler's).

Two kinds, both optional at install (setup.py), so that an install without a compiler works:
- C extensions for byte parsing (`probe._fastdecode`, `sip_dissect._sipscan`,
  `rtcp_mos._rtcpscan`), each with a
  pure-Python twin its module picks through `load`;
- the modules of COMPILED, compiled by Cython from their own .py source (pure-Python mode,
  native/pxdgen.py): the same file runs interpreted when the .so is absent, or under PURE,
  where the import hook below loads the .py in place of the .so (and otherwise the .so, which
  an editable install would pass over for a top-level .py).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

PURE = os.environ.get("SIPPROBE_PURE") == "1"  # read once, at import, as the modules choose

# Compiled by Cython at install (setup.py reads this list); dependencies first
COMPILED = ("sip_dissect.sdp", "sip_dissect.transaction", "sip_dissect.dialog", "sip_dissect.accounting",
            "sip_dissect.cdr", "sip_dissect.signalling",
            "rtcp_mos.emodel", "rtcp_mos.rtpengine_mos", "rtcp_mos.metrics", "rtcp_mos.rtcp",
            "rtcp_mos.quality", "rtcp_mos.binding", "rtcp_mos.media", "store.buffer", "pipeline")
# those whose annotations Cython reads as types (their classes are extension types); in the
# others annotations are documentation only, as when interpreted (`proxies: list = ()`)
TYPED = ("sip_dissect.transaction", "sip_dissect.dialog", "sip_dissect.accounting",
         "sip_dissect.cdr", "sip_dissect.signalling",
         "rtcp_mos.emodel", "rtcp_mos.rtpengine_mos", "rtcp_mos.metrics", "rtcp_mos.rtcp",
         "rtcp_mos.quality", "rtcp_mos.binding", "rtcp_mos.media", "store.buffer")
C_EXTENSIONS = ("probe._fastdecode", "sip_dissect._sipscan", "probe._pcapfile",
                "rtcp_mos._rtcpscan")


def load(name: str):
    """The extension module `name` (e.g. "probe._fastdecode"), or None: not built, or PURE."""
    if PURE:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def is_compiled(module) -> bool:
    """Whether a module object came from an extension (.so) rather than its .py."""
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _source_spec(name: str, origin: str):
    """A spec loading `name` from the .py beside `origin` (its extension module)."""
    source = os.path.join(os.path.dirname(origin), name.rpartition(".")[2] + ".py")
    return importlib.util.spec_from_file_location(name, source) if os.path.isfile(source) \
        else None


def _compiled_spec(name: str, origin: str):
    """A spec loading `name` from an extension module beside `origin` (its .py), or None."""
    base = os.path.join(os.path.dirname(origin), name.rpartition(".")[2])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.isfile(base + suffix):
            return importlib.util.spec_from_file_location(name, base + suffix)
    return None


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the modules of COMPILED as the other finders do (the path finder, an editable
    install's), then picks between the .py and the extension module beside it: the .py under
    PURE, else the extension (setuptools' editable finder prefers a top-level module's .py)."""

    def find_spec(self, name, path=None, target=None):
        if name not in COMPILED:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        else:
            return None
        origin = spec.origin or ""
        compiled = origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        if PURE and compiled:
            return _source_spec(name, origin) or spec
        if not PURE and origin.endswith(".py"):
            return _compiled_spec(name, origin) or spec
        return spec


def _install_hook() -> None:
    if any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _SourceFirst())
    # A module of COMPILED being imported right now got here first (`import pipeline` imports
    # probe, and so this, as its first line), from the file the other finders chose: the .so
    # under PURE, the .py when an editable install's finder preferred it (`sipprobe`'s
    # `from cli import main` imports pipeline before probe). Put the twin this run wants in
    # sys.modules, which is what the import system hands back once that file's code ends
    # (importlib._bootstrap._load_unlocked re-reads sys.modules).
    for name in COMPILED:
        module = sys.modules.get(name)
        if module is None or is_compiled(module) != PURE:
            continue
        origin = module.__spec__.origin
        spec = _source_spec(name, origin) if PURE else _compiled_spec(name, origin)
        if spec is not None:
            twin = importlib.util.module_from_spec(spec)
            sys.modules[name] = twin
            spec.loader.exec_module(twin)


_install_hook()
