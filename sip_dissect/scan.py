"""One pass over a SIP message for what the transaction, dialog and accounting layers read.

`scan(payload)` gives a `SipHead` (or a `sip.*` counter name when the message is malformed).
The native scanner (`_sipscan`, C, built at install when a compiler is there) handles the
common case, clean ASCII headers, in one pass; anything unusual (folded lines, non-ASCII
or control characters in the headers it reads, bare-LF line ends) it hands back, and the
pure-Python twin here, built on message.py, decides. The two agree field for field: the tests
compare them on every capture the project has and on mutated messages.
"""
from __future__ import annotations

from typing import NamedTuple

from probe.native import load

from .message import ParseError, parse
from .uri import tag_of
from .via import parse_via, split_vias


class SipHead(NamedTuple):
    """What the layers above read of one SIP message."""

    method: str | None  # request method; None for a response
    uri: str | None  # request-URI; None for a response
    status: int | None  # response code; None for a request
    reason: str | None  # reason phrase; None for a request
    call_id: str | None  # first Call-ID value, None when absent
    cseq: int | None  # CSeq number; None when CSeq is absent or malformed
    cseq_method: str | None  # CSeq method; None likewise
    from_value: str | None  # first From value, None when absent
    from_tag: str  # its tag parameter, "" when none
    to_value: str | None  # first To value, None when absent
    to_tag: str
    via_count: int  # Via entries, comma-separated lists split (section 7.3.1)
    via_transport: str | None  # top Via: upper-cased; all three None when it is absent or
    via_sent_by: str | None  # malformed. sent-by lower-cased, as written otherwise
    via_branch: str | None  # "" when the Via has no branch
    via2_sent_by: str | None  # second Via, None when absent or malformed: the proxy that
    via2_branch: str | None  # relayed this message received it with that Via on top
    content_length: int | None  # None when absent, -1 when not a number of at most 10 digits
    body: bytes
    anomalies: tuple  # problems that did not stop parsing, as counter names

    @property
    def is_request(self) -> bool:
        return self.method is not None


# positions of the fields the signalling and transaction layers read per message (by index:
# a tuple item costs a fraction of a NamedTuple field name's lookup)
(METHOD, URI, STATUS, REASON, CALL_ID, CSEQ, CSEQ_METHOD, FROM_VALUE, FROM_TAG, TO_VALUE,
 TO_TAG, VIA_SENT_BY, VIA_BRANCH, VIA2_SENT_BY, VIA2_BRANCH, CONTENT_LENGTH, BODY,
 ANOMALIES) = (
    SipHead._fields.index(name) for name in
    ("method", "uri", "status", "reason", "call_id", "cseq", "cseq_method", "from_value",
     "from_tag", "to_value", "to_tag", "via_sent_by", "via_branch", "via2_sent_by",
     "via2_branch", "content_length", "body", "anomalies"))


def scan_py(payload: bytes) -> SipHead | str:
    """The pure-Python scan: the reference the native scanner is tested against."""
    msg = parse(payload)
    if isinstance(msg, ParseError):
        return msg.reason
    vias = split_vias(msg.header_all("via"))
    top = parse_via(vias[0]) if vias else None
    second = parse_via(vias[1]) if len(vias) > 1 else None
    cseq = msg.cseq
    from_value, to_value = msg.header("from"), msg.header("to")
    length = msg.header("content-length")
    if length is not None:
        # isascii and a length bound: str.isdigit() accepts "\u00b2", which int() rejects
        length = int(length) if length.isascii() and length.isdigit() and len(length) <= 10 \
            else -1
    return SipHead(
        msg.method, msg.uri, msg.status, msg.reason, msg.call_id,
        cseq[0] if cseq else None, cseq[1] if cseq else None,
        from_value, tag_of(from_value), to_value, tag_of(to_value), len(vias),
        top.transport if top else None, top.sent_by if top else None,
        top.branch if top else None,
        second.sent_by if second else None, second.branch if second else None,
        length, msg.body, tuple(msg.anomalies))


def _native():
    """The C scanner's entry point, or None (not built, or SIPPROBE_PURE=1)."""
    _sipscan = load("sip_dissect._sipscan")
    if _sipscan is None:
        return None
    _sipscan.init(SipHead)
    return _sipscan.scan


scan_c = _native()  # None when not built or turned off
NATIVE = scan_c is not None


def _hand_over(payload: bytes) -> None:
    return None


# what hot callers run before scan_py: the C scanner, or a stand-in that always hands over
scan_native = scan_c if NATIVE else _hand_over


def scan(payload: bytes) -> SipHead | str:
    """SipHead of one complete message, or the `sip.*` reason it is malformed (Signalling.add
    and its C twin do the same inline)."""
    return scan_native(payload) or scan_py(payload)  # a SipHead or a reason: always true
