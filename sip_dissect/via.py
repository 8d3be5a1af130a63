"""Via headers (RFC 3261 section 20.42) and the transaction key they give (section 17.2.3)."""
from __future__ import annotations

import re
from typing import NamedTuple

MAGIC_COOKIE = "z9hG4bK"
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


_VIA = re.compile(r"SIP\s*/\s*[^/\s]+\s*/\s*([^\s;]+)\s+([^;\s]+)\s*(;.*)?$", re.I | re.S)
_BRANCH_PARAM = re.compile(r";\s*branch\s*=\s*([^;\s]*)", re.I)


def parse_via(value: str) -> Via | None:
    """SIP/2.0/UDP host:port;branch=...; None when the protocol part is malformed."""
    m = _VIA.match(value)
    if m is None:
        return None
    transport, sent_by, params = m.groups()
    branch = _BRANCH_PARAM.search(params) if params else None
    return Via(transport.upper(), sent_by.lower(), branch.group(1) if branch else "")
