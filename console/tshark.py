"""Wireshark's decode of a capture, for `sipprobe crosscheck` and the oracle tests: tshark's
PDML (its full dissection tree as XML) read as it streams, each packet mapped onto the fields
sipprobe decodes. SIP: RFC 3261 section 7 (start line) and section 20 (Call-ID, CSeq, From/To
tags, top Via branch, Content-Length); RTCP: RFC 3550 sections 6.4-6.6 (SR/RR report blocks,
SDES CNAME, BYE) in the shape console.crosscheck.rtcp_shape gives sipprobe's records.

Read through a subprocess rather than pyshark: pyshark parses the same PDML into an object
per field and costs several times more on a whole capture (ARCHITECTURE.md)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from typing import Iterator

from rtcp_mos.rtcp import PACKET_TYPES

SENDER_FIELDS = ("rtcp.timestamp.ntp.msw", "rtcp.timestamp.ntp.lsw", "rtcp.timestamp.rtp",
                 "rtcp.sender.packetcount", "rtcp.sender.octetcount")
BLOCK_FIELDS = ("rtcp.ssrc.identifier", "rtcp.ssrc.fraction", "rtcp.ssrc.cum_nr",
                "rtcp.ssrc.ext_high", "rtcp.ssrc.jitter", "rtcp.ssrc.lsr", "rtcp.ssrc.dlsr")
# SIP and RTCP as they travel: a copy quoted inside an ICMP error is not a message, and
# sipprobe's decoder ignores ICMP (decode.icmp_ignored)
DISPLAY_FILTER = "(sip or rtcp or srtcp) and not icmp and not icmpv6"


class TsharkError(Exception):
    """tshark is missing or could not read the capture; the message says which."""


def executable() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        raise TsharkError("tshark not found: install it (Debian: apt-get install tshark)")
    return exe


def command(path: str, display_filter: str = DISPLAY_FILTER, sip_ports=(),
            decode_as=()) -> list[str]:
    """tshark's arguments: no name resolution, the RTCP heuristic on (RTCP is found on any
    port, as sipprobe finds it), SIP decoded on the extra `sip_ports` as sipprobe is told."""
    rules = [f"{proto}.port=={p},sip" for p in sip_ports for proto in ("udp", "tcp")]
    rules += list(decode_as)
    return [executable(), "-n", "-r", path, "-o", "rtcp.heuristic_rtcp:TRUE",
            *(arg for rule in rules for arg in ("-d", rule)), "-Y", display_filter, "-T", "pdml"]


def packets(path: str, display_filter: str = DISPLAY_FILTER, sip_ports=(),
            decode_as=()) -> Iterator[ET.Element]:
    """Each PDML <packet> as tshark writes it (memory stays flat: each is cleared after use).
    TsharkError when tshark wrote nothing readable; a capture cut short still yields what
    tshark read (sipprobe's own reader reports the damage)."""
    with tempfile.TemporaryFile() as err:  # a file: a pipe left unread could stall tshark
        proc = subprocess.Popen(command(path, display_filter, sip_ports, decode_as),
                                stdout=subprocess.PIPE, stderr=err)
        seen = 0
        try:
            for _, elem in ET.iterparse(proc.stdout, events=("end",)):
                if elem.tag == "packet":
                    seen += 1
                    yield elem
                    elem.clear()
        except ET.ParseError as exc:
            if seen == 0:
                proc.wait()
                raise TsharkError(f"tshark could not read {path}: {_text(err) or exc}") \
                    from None
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0 and seen == 0 and "cut short" not in _text(err):
            raise TsharkError(f"tshark could not read {path}: {_text(err) or f'exit {code}'}")


def _text(err) -> str:
    """tshark's complaint, without its warning about running as root."""
    err.seek(0)
    lines = err.read().decode(errors="replace").splitlines()
    return "; ".join(ln.strip() for ln in lines if ln.strip() and
                     not ln.startswith("Running as user"))


def pdml(path: str, *decode_as: str) -> list[ET.Element]:
    """tshark's PDML of the SIP and RTCP frames, whole (for tests that walk it themselves)."""
    out = subprocess.run(command(path, decode_as=decode_as), capture_output=True,
                         check=True).stdout
    return ET.fromstring(out).findall("packet")


def number(text: str) -> int:
    return int(text, 0)


def _fields(elem, wanted) -> list:
    """Values of the fields named in `wanted` inside `elem` (any depth), in document order."""
    return [f.get("show") for f in elem.iter("field") if f.get("name") in wanted]


def frame_number(packet) -> int:
    return int(packet.find("proto[@name='geninfo']/field[@name='num']").get("show"))


def frame_time(packet) -> str:
    """Epoch seconds as tshark prints them (nanosecond digits)."""
    return packet.find("proto[@name='geninfo']/field[@name='timestamp']").get("value")


# -- RTCP ---------------------------------------------------------------------------------------

def rtcp_entry(packet) -> dict | None:
    """The RTCP of one packet as {"reports", "srtcp", "cnames", "byes"} (the shape of
    console.crosscheck.rtcp_shape), None when the packet has none."""
    entry = {"reports": [], "srtcp": False, "cnames": [], "byes": []}
    found = False
    for proto in packet.findall("proto"):
        if proto.get("name") not in ("rtcp", "srtcp"):
            continue
        found = True
        entry["srtcp"] |= proto.get("name") == "srtcp"
        top = {f.get("name"): f.get("show") for f in proto.findall("field")}
        pt = int(top["rtcp.pt"])
        if pt in (200, 201):
            sender = [number(v) for v in _fields(proto, SENDER_FIELDS)]
            blocks = []
            for source in proto.findall("field"):
                if (source.get("show") or "").startswith("Source "):
                    blocks.append(tuple(number(v) for v in _fields(source, BLOCK_FIELDS)))
            entry["reports"].append((PACKET_TYPES[pt], number(top["rtcp.senderssrc"]),
                                     tuple(sender) if sender else None, blocks))
        elif pt == 202:
            for chunk in proto.findall("field"):
                if (chunk.get("show") or "").startswith("Chunk "):
                    ssrc = number(_fields(chunk, ("rtcp.ssrc.identifier",))[0])
                    cnames, kind = [], None
                    for f in chunk.iter("field"):  # type, length, then text if length > 0
                        name = f.get("name")
                        if name == "rtcp.sdes.type":
                            kind = f.get("show")
                        elif name == "rtcp.sdes.length" and kind == "1":
                            cnames.append("")
                        elif name == "rtcp.sdes.text" and kind == "1":
                            cnames[-1] = f.get("show")
                    entry["cnames"] += [(ssrc, text) for text in cnames[:1]]
        elif pt == 203:
            entry["byes"].append([number(f.get("show")) for f in proto.findall("field")
                                  if f.get("name") == "rtcp.ssrc.identifier"])
    return entry if found else None


def rtcp_frames(path: str, *decode_as: str) -> dict:
    """{frame: rtcp_entry} of every RTCP frame; `decode_as` ("udp.port==N,rtcp") where the
    heuristic, which wants SR or RR first, would not look."""
    out = {}
    for packet in packets(path, "(rtcp or srtcp) and not icmp and not icmpv6",
                          decode_as=decode_as):
        entry = rtcp_entry(packet)
        if entry is not None:
            out[frame_number(packet)] = entry
    return out


# -- SIP ----------------------------------------------------------------------------------------

def _first(proto, name: str, default=None):
    elem = proto.find(f".//field[@name='{name}']")
    return default if elem is None else elem.get("show")


def sip_messages(packet) -> list[dict]:
    """Each SIP message of a packet (a TCP segment may carry several) with the fields sipprobe
    decodes, as text: addresses and ports of the innermost IP and transport header before it."""
    out = []
    src = dst = sport = dport = transport = None
    for proto in packet.findall("proto"):
        name = proto.get("name")
        if name in ("ip", "ipv6"):
            src, dst = _first(proto, f"{name}.src"), _first(proto, f"{name}.dst")
        elif name in ("udp", "tcp"):
            transport = name
            sport, dport = _first(proto, f"{name}.srcport"), _first(proto, f"{name}.dstport")
        elif name == "sip":
            start = proto.find("field[@name='sip.Request-Line']")
            if start is None:
                start = proto.find("field[@name='sip.Status-Line']")
            if start is None:
                continue  # a keep-alive or a fragment tshark did not read as a message
            via = proto.find(".//field[@name='sip.Via']")
            branch = via.find(".//field[@name='sip.Via.branch']") if via is not None else None
            body = proto.find("field[@name='sip.msg_body']")
            out.append({
                "src": f"{src}:{sport}", "dst": f"{dst}:{dport}", "transport": transport,
                "method": _first(proto, "sip.Method", ""),
                "status": _first(proto, "sip.Status-Code", ""),
                "ruri": _first(start, "sip.r-uri", ""),
                "ruri_user": _first(start, "sip.r-uri.user", ""),
                "ruri_host": _first(start, "sip.r-uri.host", ""),
                "callid": _first(proto, "sip.Call-ID", ""),
                "cseq": _first(proto, "sip.CSeq.seq", ""),
                "cseq_method": _first(proto, "sip.CSeq.method", ""),
                "from_tag": _first(proto, "sip.from.tag", ""),
                "to_tag": _first(proto, "sip.to.tag", ""),
                "via_branch": "" if branch is None else branch.get("show"),
                "content_length": _first(proto, "sip.Content-Length", ""),
                "body_bytes": "0" if body is None else body.get("size"),
            })
    return out
