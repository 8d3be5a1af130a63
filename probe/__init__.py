"""Capture and decode: packet sources, link/tunnel/IP decoding, reassembly, SPAN de-duplication.

Output is a stream of `Datagram` records; no library packet object leaves this package.
"""

from . import native as _native  # noqa: F401  first: SIPPROBE_PURE's import hook (probe/native.py)
