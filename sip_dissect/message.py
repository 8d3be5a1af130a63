"""A fast, forgiving SIP message parser (RFC 3261 sections 7 and 20).

`parse` checks the start line and decodes the header block once; each header is then found by
a compiled pattern on demand, so a message costs only the headers a caller reads. Malformed
input gives a `ParseError` whose reason is a counter name (`sip.*`), never an exception.
"""
from __future__ import annotations

import re
from typing import NamedTuple

# RFC 3261 section 7.3.3 compact forms, full name -> compact letter
COMPACT = {
    "call-id": "i", "contact": "m", "content-encoding": "e", "content-length": "l",
    "content-type": "c", "from": "f", "subject": "s", "supported": "k", "to": "t", "via": "v",
    "event": "o", "refer-to": "r", "referred-by": "b", "allow-events": "u", "session-expires": "x",
}
FULL_NAME = {v: k for k, v in COMPACT.items()}
# Read on every message by the transaction and accounting layers
HOT_HEADERS = frozenset({"via", "call-id", "cseq", "from", "to", "content-length"})
_HOT_NAMES = {name.encode(): name for name in HOT_HEADERS} | {
    COMPACT[name].encode(): name for name in HOT_HEADERS if name in COMPACT}
_HOT_HEADER = re.compile(
    rb"\n(" + b"|".join(re.escape(n) for n in sorted(_HOT_NAMES, key=len, reverse=True))
    + rb")[ \t]*:[ \t]*([^\r\n]*)", re.I)
_TOKEN = re.compile(rb"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_FOLD = re.compile(rb"\r?\n[ \t]+")
class ParseError(NamedTuple):
    reason: str  # counter name, e.g. "sip.bad_start_line"


class SipMessage:
    """One SIP request or response; header names are case-insensitive and compact-form aware.

    The headers every message needs are indexed by one compiled pattern on first access,
    the rest only if asked for; messages that are only counted (stats) pay for neither.
    """

    __slots__ = ("method", "uri", "status", "reason", "head", "body", "anomalies", "_index",
                 "_full")

    def __init__(self, method, uri, status, reason, head, body):
        self.method: str | None = method  # request method, None for a response
        self.uri: str | None = uri
        self.status: int | None = status  # response code, None for a request
        self.reason: str | None = reason
        self.head: bytes = head  # header block from the start line's end, folding undone
        self.body: bytes = body
        self.anomalies: list[str] = []  # problems that did not stop parsing, as counter names
        self._index: dict[str, list[str]] | None = None  # HOT_HEADERS only
        self._full: dict[str, list[str]] | None = None  # every header, built on demand

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def _build_index(self) -> dict[str, list[str]]:
        """The headers transactions and accounting read on every message, found by one
        compiled pattern; any other header asked for builds the full index once."""
        index: dict[str, list[str]] = {}
        names = _HOT_NAMES
        for raw_name, raw_value in _HOT_HEADER.findall(self.head):
            name = names[raw_name.lower()]
            value = raw_value.decode("utf-8", "replace").strip()
            values = index.get(name)
            if values is None:
                index[name] = [value]
            else:
                values.append(value)
        self._index = index
        return index

    def _build_full_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        full = FULL_NAME
        for line in self.head.decode("utf-8", "replace").split("\n"):
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name = name.strip().lower()
            name = full.get(name, name)
            index.setdefault(name, []).append(value.strip())
        self._full = index
        return index

    def _lookup(self, name: str) -> list[str] | None:
        if name in HOT_HEADERS:
            return (self._index or self._build_index()).get(name)
        return (self._full or self._build_full_index()).get(name)

    def header(self, name: str) -> str | None:
        """Value of the first header called `name` (full lower-case name) or its compact form."""
        if name in HOT_HEADERS:  # inlined _lookup: this runs several times per message
            values = (self._index or self._build_index()).get(name)
        else:
            values = (self._full or self._build_full_index()).get(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Values of every `name` header line, in order (comma lists left as written)."""
        return list(self._lookup(name) or ())

    @property
    def headers(self) -> dict[str, list[str]]:
        """Every header by full lower-case name; for callers that need them all."""
        return {name: list(values) for name, values in
                (self._full or self._build_full_index()).items()}

    @property
    def call_id(self) -> str | None:
        return self.header("call-id")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("cseq")
        parts = value.split() if value else ()
        # ASCII digits only (str.isdigit() accepts "\u00b2", which int() rejects) and within the
        # 32 bits section 8.1.1.5 allows (an unbounded int overflows the store's INTEGER)
        if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()) \
                or len(parts[0]) > 10 or int(parts[0]) > 0xFFFFFFFF:
            return None
        return int(parts[0]), parts[1]



class StartLine(NamedTuple):
    method: str | None  # request method, None for a response
    uri: str | None
    status: int | None  # response code, None for a request
    reason: str | None
    line_end: int  # offset of the CR or LF that ends the start line


_START_LINE = re.compile(
    rb"SIP/2\.0 ([0-9]{3}) ([^\x00-\x08\x0a-\x1f\x7f]*)(?=\r|\n|\Z)"
    rb"|([A-Za-z0-9\-.!%*_+`'~]+) ([^ \x00-\x1f\x7f]+) SIP/2\.0(?=\r|\n|\Z)")


match_start_line = _START_LINE.match  # groups: code, reason | method, uri (bytes)


def parse_start_line(data: bytes) -> StartLine | ParseError:
    """The request or status line alone (RFC 3261 section 7.1 and 7.2), as Wireshark accepts it:
    three space-separated parts, SIP/2.0, a token method or a three-digit code, and no control
    characters. A lone CR or LF ends the line."""
    m = _START_LINE.match(data)
    if m is not None:  # one regex match for the well-formed common case
        code, reason, method, uri = m.groups()
        if code is not None:
            return StartLine(None, None, int(code), reason.decode("utf-8", "replace"), m.end())
        return StartLine(method.decode("ascii"), uri.decode("utf-8", "replace"), None, None, m.end())
    return _start_line_error(data)


def _start_line_error(data: bytes) -> StartLine | ParseError:
    """Why the start line is not acceptable, as a counter name."""
    line_end = data.find(b"\r\n", 0, 8192)
    if line_end < 0 or 0 <= data.find(b"\r", 0, line_end) < line_end or b"\n" in data[:line_end]:
        cr, lf = data.find(b"\r", 0, 8192), data.find(b"\n", 0, 8192)
        ends = [i for i in (cr, lf) if i >= 0]
        line_end = min(ends) if ends else len(data)
    start = data[:line_end]
    if _CONTROL.search(start):
        return ParseError("sip.control_char_in_start_line")
    parts = start.split(b" ", 2)
    if len(parts) != 3:
        return ParseError("sip.bad_start_line")
    if parts[0] == b"SIP/2.0":
        code = parts[1]
        if len(code) != 3 or not code.isdigit():
            return ParseError("sip.bad_status_line")
        return StartLine(None, None, int(code), parts[2].decode("utf-8", "replace"), line_end)
    if parts[2] != b"SIP/2.0" or not _TOKEN.match(parts[0]):
        return ParseError("sip.bad_request_line")
    return StartLine(parts[0].decode("ascii"), parts[1].decode("utf-8", "replace"), None, None,
                     line_end)


def parse(data: bytes) -> SipMessage | ParseError:
    """Parse one complete message (a UDP payload or one framed TCP message)."""
    if not data.strip():
        return ParseError("sip.empty")
    start = parse_start_line(data)
    if isinstance(start, ParseError):
        return start
    anomalies = []
    head_end = data.find(b"\r\n\r\n")
    if head_end >= 0:
        body = data[head_end + 4:]
    else:
        head_end = data.find(b"\n\n")  # bare-LF senders exist; tolerate them
        if head_end >= 0:
            body = data[head_end + 2:]
            anomalies.append("sip.bare_lf")
        else:
            head_end, body = len(data.rstrip(b"\r\n")), b""
            anomalies.append("sip.no_blank_line")
    head = data[start.line_end:head_end] if head_end > start.line_end else b""
    if b"\n " in head or b"\n\t" in head:
        head = _FOLD.sub(b" ", head)  # RFC 3261 section 7.3.1 line folding
    if head[:1] != b"\n":
        head = b"\n" + head  # every header line, the first too, follows a newline
    msg = SipMessage(start.method, start.uri, start.status, start.reason, head, body)
    msg.anomalies = anomalies
    return msg
