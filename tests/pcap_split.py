"""Cut a classic pcap file in two at a frame, as hourly capture files cut a call: for the tests
of calls carried across runs (tests/test_carry.py)."""
from __future__ import annotations

import struct
from pathlib import Path

_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",  # microseconds
           b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}  # nanoseconds


def records(path: Path) -> tuple[bytes, list[bytes]]:
    """The global header and each record (its 16-byte header included), in file order."""
    data = path.read_bytes()
    order = _MAGICS[data[:4]]
    out, at = [], 24
    while at + 16 <= len(data):
        length = struct.unpack(order + "I", data[at + 8:at + 12])[0]
        out.append(data[at:at + 16 + length])
        at += 16 + length
    return data[:24], out


def sip_frames(path: Path) -> list[int]:
    """Indexes of the records that carry a SIP message (a start line's SIP/2.0 in them)."""
    _, recs = records(path)
    return [i for i, rec in enumerate(recs) if b"SIP/2.0" in rec[16:]]


def split(path: Path, at: int, first: Path, second: Path) -> None:
    """Records before index `at` into `first`, the rest into `second`."""
    head, recs = records(path)
    first.write_bytes(head + b"".join(recs[:at]))
    second.write_bytes(head + b"".join(recs[at:]))
