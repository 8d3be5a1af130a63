"""Via headers (RFC 3261 section 20.42) and the transaction key they give (section 17.2.3)."""
from __future__ import annotations

import re
from typing import NamedTuple

MAGIC_COOKIE = "z9hG4bK"
_PARAM = re.compile(r";\s*([^=;\s]+)\s*(?:=\s*([^;\s]*))?")
_NEXT_VIA = re.compile(r",(?=\s*SIP\s*/)", re.I)


class Via(NamedTuple):
    transport: str  # UDP, TCP, TLS, SCTP, WS...
    sent_by: str  # host[:port] as written, lower-cased
    branch: str  # "" when absent


def split_vias(values: list[str]) -> list[str]:
    """Every Via value in order: header lines may hold comma-separated lists."""
    out: list[str] = []
    for value in values:
        if "," not in value:
            out.append(value.strip())
            continue
        out.extend(p.strip() for p in _NEXT_VIA.split(value) if p.strip())
    return out


def parse_via(value: str) -> Via | None:
    """SIP/2.0/UDP host:port;branch=...; None when the protocol part is malformed."""
    proto, _, rest = value.partition(" ")
    parts = proto.split("/")
    if len(parts) != 3:
        return None
    rest = rest.strip()
    semi = rest.find(";")
    sent_by = (rest if semi < 0 else rest[:semi]).strip().lower()
    branch = ""
    if semi >= 0:
        for name, val in _PARAM.findall(rest[semi:]):
            if name.lower() == "branch":
                branch = val
                break
    return Via(parts[2].strip().upper(), sent_by, branch)
