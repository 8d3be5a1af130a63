"""A fast, forgiving SIP message parser (RFC 3261 sections 7 and 20).

`parse` reads only the start line and splits the header block; header values are looked up
lazily. Malformed input gives a `ParseError` reason string (`sip.*`), never an exception.
"""
from __future__ import annotations

import re
from typing import NamedTuple

# RFC 3261 section 7.3.3 compact forms
COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events", "x": "session-expires",
}
_TOKEN = re.compile(rb"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BRANCH = re.compile(r";\s*branch\s*=\s*([^;,\s]+)", re.I)
_TAG = re.compile(r";\s*tag\s*=\s*([^;,\s>]+)", re.I)


class ParseError(NamedTuple):
    reason: str  # counter name, e.g. "sip.bad_start_line"


class SipMessage:
    """One SIP request or response; header access is case-insensitive and compact-form aware."""

    __slots__ = ("method", "uri", "status", "reason", "raw_headers", "body", "_headers", "anomalies")

    def __init__(self, method, uri, status, reason, raw_headers, body):
        self.method: str | None = method  # request method, None for a response
        self.uri: str | None = uri
        self.status: int | None = status  # response code, None for a request
        self.reason: str | None = reason
        self.raw_headers: list[bytes] = raw_headers
        self.body: bytes = body
        self._headers: dict[str, list[str]] | None = None
        self.anomalies: list[str] = []  # problems that did not stop parsing, as counter names

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def headers(self) -> dict[str, list[str]]:
        if self._headers is None:
            self._headers = _split_headers(self.raw_headers)
        return self._headers

    def header(self, name: str) -> str | None:
        """First value of a header, by full lower-case name."""
        values = self.headers.get(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str | None:
        return self.header("call-id")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("cseq")
        if not value:
            return None
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        return int(parts[0]), parts[1]

    @property
    def top_via(self) -> str | None:
        value = self.header("via")
        return value.split(",", 1)[0].strip() if value else None

    @property
    def branch(self) -> str | None:
        via = self.top_via
        m = _BRANCH.search(via) if via else None
        return m.group(1) if m else None

    def tag(self, name: str) -> str | None:
        value = self.header(name)
        m = _TAG.search(value) if value else None
        return m.group(1) if m else None


def _split_headers(lines: list[bytes]) -> dict[str, list[str]]:
    """Unfold continuation lines, split comma lists of Via only where needed later."""
    out: dict[str, list[str]] = {}
    last: list[str] | None = None
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        if line[:1] in (" ", "\t") and last is not None:
            last[-1] += " " + line.strip()  # RFC 3261 section 7.3.1 line folding
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        name = COMPACT.get(name, name)
        last = out.setdefault(name, [])
        last.append(value.strip())
    return out


def parse(data: bytes) -> SipMessage | ParseError:
    """Parse one complete message (a UDP payload or one framed TCP message)."""
    head_end = data.find(b"\r\n\r\n")
    bare_lf = False
    if head_end < 0:
        head_end = data.find(b"\n\n")  # bare-LF senders exist; tolerate them
        if head_end < 0:
            return _without_blank_line(data)
        head, body = data[:head_end], data[head_end + 2:]
        lines = head.split(b"\n")
        bare_lf = True
    else:
        head, body = data[:head_end], data[head_end + 4:]
        lines = head.split(b"\r\n")
    start = lines[0]
    cr = start.find(b"\r")
    if cr >= 0:  # a lone CR ends the start line too; the rest is a (damaged) header
        lines[0:1] = [start[:cr], start[cr + 1:]]
        start = start[:cr]
    if _CONTROL.search(start):
        return ParseError("sip.control_char_in_start_line")
    parts = start.split(b" ", 2)
    if len(parts) != 3:
        return ParseError("sip.bad_start_line")
    if parts[0] == b"SIP/2.0":
        code = parts[1]
        if len(code) != 3 or not code.isdigit():
            return ParseError("sip.bad_status_line")
        msg = SipMessage(None, None, int(code), parts[2].decode("utf-8", "replace"), lines[1:], body)
    else:
        if parts[2] != b"SIP/2.0" or not _TOKEN.match(parts[0]) or b" " in parts[1]:
            return ParseError("sip.bad_request_line")
        msg = SipMessage(parts[0].decode("ascii"), parts[1].decode("utf-8", "replace"), None, None,
                         lines[1:], body)
    if bare_lf:
        msg.anomalies.append("sip.bare_lf")
    return msg


def _without_blank_line(data: bytes) -> SipMessage | ParseError:
    """No blank line at all: a message cut short, or headers with no body separator."""
    if not data.strip():
        return ParseError("sip.empty")
    lines = data.rstrip(b"\r\n").split(b"\r\n")
    msg = parse(b"\r\n".join(lines) + b"\r\n\r\n")
    if isinstance(msg, SipMessage):
        msg.anomalies.append("sip.no_blank_line")
    return msg


def content_length_anomaly(msg: SipMessage) -> str | None:
    """Content-Length disagreeing with the body carried (UDP), as a counter name."""
    value = msg.header("content-length")
    if value is None:
        return None
    if not value.isdigit():
        return "sip.bad_content_length"
    if int(value) != len(msg.body):
        return "sip.content_length_mismatch"
    return None
