"""Plain records handed from probe/ to the layers above."""
from __future__ import annotations

from typing import NamedTuple


class Frame(NamedTuple):
    """One captured frame as read from a file or an interface."""

    ts: float  # capture time, epoch seconds
    frame: int  # 1-based index among the frames this source delivered
    linktype: int  # DLT_* / LINKTYPE_* of the frame
    data: bytes  # captured bytes
    wirelen: int  # length on the wire (> len(data) when the snap length cut it)


class Datagram(NamedTuple):
    """A transport payload: one UDP datagram or one framed TCP message."""

    ts: float  # capture time of the frame that completed it
    frame: int  # that frame's number
    src: str  # source IP address, text form
    dst: str
    sport: int
    dport: int
    transport: str  # "udp" or "tcp"
    payload: bytes
    vlan: tuple = ()  # VLAN ids, outermost first
    tunnel: tuple = ()  # encapsulations crossed, outermost first ("gre", "vxlan", ...)


# Datagram's fields by position, for the compiled layers that index it as the tuple it is
# (their typed aliases make C indexes of these; see sip_dissect/transaction.py)
D_TS, D_FRAME, D_SRC, D_DST, D_SPORT, D_DPORT, D_TRANSPORT, D_PAYLOAD = (
    Datagram._fields.index(name) for name in
    ("ts", "frame", "src", "dst", "sport", "dport", "transport", "payload"))


class RawBatch(NamedTuple):
    """Frames as libpcap hands them over: one buffer and 16-byte (sec, usec, offset, caplen)
    records in native byte order. Kept raw so the decoder's hot loop builds no Frame objects."""

    linktype: int
    data: bytes  # or a buffer of the same bytes (probe/_pcapfile.c's Batch)
    meta: bytes
    first: int  # frame number of the first record


def batch_frames(batch) -> list[Frame]:
    """The frames of a batch, whichever form it has (RawBatch or a list of Frame)."""
    if not isinstance(batch, RawBatch):
        return batch
    data, lt = batch.data, batch.linktype
    return [Frame(sec + usec * 1e-6, batch.first + i, lt, data[off:off + caplen], caplen)
            for i, (sec, usec, off, caplen) in enumerate(META.iter_unpack(batch.meta))]


META = __import__("struct").Struct("=IIII")
