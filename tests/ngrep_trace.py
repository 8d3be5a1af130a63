"""An ngrep text trace (`U src:port -> dst:port` then the message, each CRLF shown as a '.' at
the end of its line) turned into a pcap with scapy, for traces published only as text.

The seed trace (../shared/seeds/003) hides its addresses as <name>: they become documentation
addresses (RFC 5737) and private ones, and Content-Length is recomputed for the body as
rewritten (the original counted the real addresses). Times are 1 ms apart: the trace has none.
"""
from __future__ import annotations

import re
from pathlib import Path

ADDRESSES = {"<from_ip>": "198.51.100.20", "<opensips_proxy_ip>": "192.0.2.10",
             "<outbound_server_ip>": "192.0.2.30", "<ofrom_pvtip>": "10.0.0.5",
             "<opensips_proxy_pubip>": "203.0.113.10"}
_HEAD = re.compile(r"^U (\S+):(\d+) -> (\S+):(\d+)$")


def _messages(text: str):
    """(src, sport, dst, dport, message bytes) of each `U ...` block of the trace."""
    for name, value in ADDRESSES.items():
        text = text.replace(name, value)
    block, lines = None, []
    for line in text.splitlines() + ["```"]:
        head = _HEAD.match(line.strip())
        if head or line.startswith("```"):
            if block is not None:
                yield (*block, _message(lines))
            block, lines = (head.groups() if head else None), []
        elif block is not None:
            lines.append(line)
    return


def _message(lines: list[str]) -> bytes:
    lines = [ln[:-1] if ln.endswith(".") else ln for ln in lines]
    while lines and not lines[-1]:
        lines.pop()
    split = lines.index("") if "" in lines else len(lines)
    head, body = lines[:split], lines[split + 1:]
    body_bytes = "".join(f"{ln}\r\n" for ln in body).encode()
    head = [f"Content-Length: {len(body_bytes)}" if ln.lower().startswith("content-length:")
            else ln for ln in head]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body_bytes


def trace_to_pcap(text: str, path: Path, start: float = 1_500_000_000.0) -> list[bytes]:
    """Write the trace's messages as UDP datagrams to `path`; returns the messages."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    packets, messages = [], []
    for i, (src, sport, dst, dport, message) in enumerate(_messages(text)):
        pkt = Ether() / IP(src=src, dst=dst) / UDP(sport=int(sport), dport=int(dport)) / message
        pkt.time = start + i / 1000
        packets.append(pkt)
        messages.append(message)
    wrpcap(str(path), packets)
    return messages
