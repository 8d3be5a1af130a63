"""`sipprobe crosscheck`: sipprobe's decode of a capture against Wireshark's, field by field.

sipprobe's side runs the probe's own decoder (probe/decode.py: links, tunnels, reassembly) on
every frame, unfiltered and without SPAN de-duplication, so that frame numbers are Wireshark's
and every copy is seen; datagrams are told apart by pipeline.classify as a replay tells them,
SIP read by sip_dissect.scan (the C scanner or its twin) and RTCP by rtcp_mos.rtcp. The other
side is tshark's PDML (console/tshark.py). Items are keyed by frame: the n-th SIP message a
frame completed, and the frame's RTCP compound. An item only one side has is a disagreement
whose note says what the other side made of that frame.
"""
from __future__ import annotations

import ipaddress
from typing import NamedTuple

from console import tshark

SIP_FIELDS = ("time", "src", "dst", "transport", "method", "status", "ruri", "ruri_user",
              "ruri_host",
              "callid", "cseq", "cseq_method", "from_tag", "to_tag", "via_branch",
              "content_length", "body_bytes")
TIME_TOLERANCE = 1.5e-6  # pcap stores microseconds, pcapng up to nanoseconds: compare at 1 us


class Disagreement(NamedTuple):
    capture: str
    frame: int
    item: str  # "sip[0]" (the first SIP message of the frame), "rtcp"
    field: str  # a SIP_FIELDS name, "message" (one side only), or an RTCP path
    sipprobe: str
    tshark: str
    note: str  # why, where known


class Decoded(NamedTuple):
    """sipprobe's side of one capture."""

    items: dict  # (frame, item) -> {field: text}
    frames: dict  # frame -> what sipprobe made of it, for items tshark alone has
    damaged: list  # CaptureStats.damaged
    counters: dict  # skip counters of the whole run


# -- sipprobe's side ----------------------------------------------------------------------------

def rtcp_shape(compound) -> dict:
    """An RtcpCompound as {"reports", "srtcp", "cnames", "byes"}, tshark.rtcp_entry's shape:
    reports as (type, reporter SSRC, sender info or None, blocks as 7-tuples)."""
    reports = [(r.packet_type, r.reporter_ssrc, None if r.sender is None else tuple(r.sender),
                [tuple(b) for b in r.blocks]) for r in compound.reports]
    return {"reports": reports, "srtcp": compound.srtcp,
            "cnames": [(c.ssrc, c.cname) for c in compound.sdes if c.cname is not None],
            "byes": [list(b.ssrcs) for b in compound.byes]}


_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
_SHOWN = {c: _ESCAPES.get(c, f"\\x{c:02x}") for c in (*range(32), 127)}


def shown(text: str) -> str:
    """Text as Wireshark displays a string field: control characters escaped (\\r, \\x13),
    so that a value prints on one line and compares with tshark's."""
    return text.translate(_SHOWN)


def sip_fields(d, head) -> dict:
    """The comparable text of a datagram and its SipHead (tshark.sip_messages' fields)."""
    from sip_dissect.uri import uri_parts

    parts = uri_parts(head.uri) if head.uri else None
    length = head.content_length
    return {"time": f"{d.ts:.6f}", "src": f"{d.src}:{d.sport}", "dst": f"{d.dst}:{d.dport}",
            "transport": d.transport, "method": head.method or "",
            "status": "" if head.status is None else str(head.status),
            "ruri": shown(head.uri or ""),
            "ruri_user": shown(parts.user) if parts else "",
            "ruri_host": shown(parts.host) if parts else "",
            "callid": shown(head.call_id or ""),
            "cseq": "" if head.cseq is None else str(head.cseq),
            "cseq_method": shown(head.cseq_method or ""), "from_tag": shown(head.from_tag),
            "to_tag": shown(head.to_tag), "via_branch": shown(head.via_branch or ""),
            "content_length": "" if length is None else "invalid" if length < 0 else str(length),
            "body_bytes": str(len(head.body))}


def decode(path: str, sip_ports=None) -> Decoded:
    """sipprobe's decode of every frame of `path`: SIP messages and RTCP compounds by frame,
    and, for frames that gave something else, what (a skip counter, a malformed message, a
    datagram that is neither SIP nor RTCP to sipprobe)."""
    from pipeline import RTCP, SIP, ProbeOptions, classify, datagram_batches
    from probe.counters import Counters
    from probe.records import batch_frames
    from probe.sources import CaptureStats, read_batches
    from rtcp_mos.rtcp import parse_compound
    from sip_dissect.scan import scan

    opts = ProbeOptions(bpf_filter="", dedup_window=0.0)
    if sip_ports:
        opts.sip_ports = tuple(sip_ports)
    ports = frozenset(opts.sip_ports)
    counters, capture = Counters(), CaptureStats()
    items: dict = {}
    notes: dict = {}  # frame -> what sipprobe made of it besides items
    messages: dict = {}  # frame -> index of its last SIP message
    current = [0]

    def frames():  # one frame at a time, so that each frame's skip counters are its own
        for batch in read_batches([path], opts.filters(), capture):
            for f in batch_frames(batch):
                current[0] = f.frame
                yield f

    seen: dict = {}
    for out in datagram_batches(frames(), opts, counters):
        if len(counters) != len(seen) or counters != seen:
            raised = sorted(k for k, v in counters.items() if v != seen.get(k, 0))
            notes.setdefault(current[0], []).append("counted " + ", ".join(raised))
            seen = dict(counters)
        for d in out:
            kind = classify(d, ports)
            if kind == SIP:
                head = scan(d.payload)
                if isinstance(head, str):
                    what = "keep-alive" if not d.payload.strip(b" \t\r\n\x00") else \
                        f"malformed SIP ({head})"
                    notes.setdefault(d.frame, []).append(what)
                    continue
                n = messages[d.frame] = messages.get(d.frame, -1) + 1
                items[(d.frame, f"sip[{n}]")] = sip_fields(d, head)
            elif kind == RTCP:
                items[(d.frame, "rtcp")] = rtcp_shape(parse_compound(d.payload))
            else:
                notes.setdefault(d.frame, []).append(
                    f"{d.transport} {d.sport}->{d.dport} neither SIP nor RTCP: no SIP port "
                    f"({', '.join(map(str, opts.sip_ports))}; --sip-port adds one) and the "
                    "payload does not start like a SIP message or an RTCP header")
    return Decoded(items, notes, capture.damaged, {k: v for k, v in counters.items() if v})


# -- tshark's side ------------------------------------------------------------------------------

def tshark_items(path: str, sip_ports=()) -> dict:
    """(frame, item) -> fields, from tshark's PDML, keyed as decode() keys sipprobe's."""
    items = {}
    for packet in tshark.packets(path, sip_ports=sip_ports):
        frame = tshark.frame_number(packet)
        for i, fields in enumerate(tshark.sip_messages(packet)):
            items[(frame, f"sip[{i}]")] = {"time": tshark.frame_time(packet), **fields}
        rtcp = tshark.rtcp_entry(packet)
        if rtcp is not None:
            items[(frame, "rtcp")] = rtcp
    return items


def tshark_protocols(path: str, frames) -> dict:
    """{frame: tshark's protocol stack} for a few frames (why tshark saw no SIP there)."""
    import subprocess

    wanted = sorted(frames)
    out = {}
    for i in range(0, len(wanted), 500):  # a display filter of bounded length
        chunk = " ".join(map(str, wanted[i:i + 500]))
        text = subprocess.run(
            [tshark.executable(), "-n", "-r", path, "-o", "rtcp.heuristic_rtcp:TRUE", "-Y",
             f"frame.number in {{{chunk}}}", "-T", "fields", "-e", "frame.number", "-e",
             "frame.protocols"], capture_output=True, text=True).stdout
        for line in text.splitlines():
            number, _, protocols = line.partition("\t")
            if number.isdigit():
                out[int(number)] = protocols
    return out


# -- comparison ---------------------------------------------------------------------------------

def flat_rtcp(entry: dict) -> dict:
    """An RTCP shape as {path: text}: srtcp, report[i].type/.ssrc/.sender,
    report[i].block[j].<field>, cname[k], bye[k]."""
    out = {"srtcp": str(entry["srtcp"])}
    names = ("source_ssrc", "fraction_lost", "cumulative_lost", "highest_seq", "jitter", "lsr",
             "dlsr")
    for i, (kind, ssrc, sender, blocks) in enumerate(entry["reports"]):
        out[f"report[{i}].type"] = kind
        out[f"report[{i}].ssrc"] = str(ssrc)
        out[f"report[{i}].sender"] = "" if sender is None else " ".join(map(str, sender))
        for j, block in enumerate(blocks):
            for name, value in zip(names, block):
                out[f"report[{i}].block[{j}].{name}"] = str(value)
    for k, (ssrc, cname) in enumerate(entry["cnames"]):
        out[f"cname[{k}]"] = f"{ssrc} {cname}"
    for k, ssrcs in enumerate(entry["byes"]):
        out[f"bye[{k}]"] = " ".join(map(str, ssrcs))
    return out


def _address(text: str) -> str:
    """ip:port with the IP in its canonical text form (IPv6 compressed, lower case)."""
    host, _, port = text.rpartition(":")
    try:
        return f"{ipaddress.ip_address(host)}:{port}"
    except ValueError:
        return text


def _same(field: str, ours: str, theirs: str) -> bool:
    if field == "time":
        try:
            return abs(float(ours) - float(theirs)) <= TIME_TOLERANCE
        except ValueError:
            return False
    if field in ("src", "dst"):
        return _address(ours) == _address(theirs)
    if field == "ruri_host":  # an IPv6 reference: tshark shows it without its brackets
        return ours.strip("[]").lower() == theirs.strip("[]").lower()
    return ours == theirs


def known_cause(field: str, ours: dict, theirs: dict) -> str:
    """Why the two decoders legitimately differ on a field, where the difference is one of
    their documented conventions (docs/cli.md, crosscheck)."""
    a, b = ours.get(field, ""), theirs.get(field, "")
    if "\\x00" in a and a.startswith(b):
        return "a NUL byte in the value: Wireshark shows a text field up to its first NUL"
    if field == "ruri_user" and ours.get("ruri", "").lower().startswith("tel:"):
        return ("tel: URI: sipprobe takes the number as the user, as Kamailio's $rU does; "
                "Wireshark gives a tel: URI no user part")
    if field == "content_length" and a == "invalid":
        return ("Content-Length is not a number: Wireshark reads it as 0, sipprobe counts "
                "sip.bad_content_length")
    if field == "cseq_method" and b == "" and a:
        return ("the CSeq method is not a token (RFC 3261 section 25.1): Wireshark gives none, "
                "sipprobe takes the text")
    if field in ("cseq", "cseq_method") and a == "":
        return "CSeq is not a number and a method (RFC 3261 section 20.16): sipprobe reads none"
    return ""


def summary(item: str, fields: dict) -> str:
    """One side's item in a few words, for a row that says only that side has it."""
    if item == "rtcp":
        return "RTCP " + " ".join(r[0] for r in fields["reports"]) if fields["reports"] \
            else "RTCP"
    what = fields["method"] or fields["status"]
    return f"SIP {what} {fields['src']} -> {fields['dst']} {fields['callid']}"


def compare(capture: str, ours: Decoded, theirs: dict, protocols=None) -> list[Disagreement]:
    """Every field where the two sides differ, and every item only one side has."""
    out = []
    protocols = protocols or {}
    for frame, item in sorted(ours.items.keys() | theirs.keys()):
        mine, other = ours.items.get((frame, item)), theirs.get((frame, item))
        if mine is None:
            why = "; ".join(ours.frames.get(frame, ())) or "sipprobe decoded nothing here"
            out.append(Disagreement(capture, frame, item, "message", "", summary(item, other),
                                    "sipprobe: " + why))
            continue
        if other is None:
            stack = protocols.get(frame)
            why = f"tshark: {stack}" if stack else "tshark did not dissect it as SIP or RTCP"
            out.append(Disagreement(capture, frame, item, "message", summary(item, mine), "",
                                    why))
            continue
        if item == "rtcp":
            mine, other = flat_rtcp(mine), flat_rtcp(other)
        for field in (SIP_FIELDS if item != "rtcp" else sorted(mine.keys() | other.keys())):
            a, b = mine.get(field, ""), other.get(field, "")
            if not _same(field, a, b):
                cause = known_cause(field, mine, other) if item != "rtcp" else ""
                out.append(Disagreement(capture, frame, item, field, a, b, cause))
    return out


def crosscheck(paths, sip_ports=()) -> dict:
    """Both decodes of each capture and their disagreements: {"disagreements": [...],
    "compared": {capture: {"sip": n, "rtcp": n}}, "damaged": [...], "agree": bool}."""
    rows, compared, damaged = [], {}, []
    for path in paths:
        ours = decode(path, sip_ports)
        theirs = tshark_items(path, sip_ports)
        only_tshark = [f for f, _ in theirs.keys() - ours.items.keys()]
        only_ours = {f for f, _ in ours.items.keys() - theirs.keys()}
        protocols = tshark_protocols(path, only_ours) if only_ours else {}
        rows += compare(path, ours, theirs, protocols)
        compared[path] = {
            "sip": sum(1 for _, i in ours.items.keys() & theirs.keys() if i != "rtcp"),
            "rtcp": sum(1 for _, i in ours.items.keys() & theirs.keys() if i == "rtcp"),
            "sipprobe_only": len(only_ours), "tshark_only": len(only_tshark)}
        damaged += ours.damaged
    return {"agree": not rows, "compared": compared, "disagreements": [r._asdict() for r in rows],
            "damaged": damaged}
