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
