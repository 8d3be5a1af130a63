"""Cutting SIP messages out of a reassembled TCP byte stream (RFC 3261 section 18.3).

Messages are delimited by the blank line and Content-Length. CRLF keep-alives (RFC 5626
section 3.5.1) between messages are skipped. When the stream does not start with a SIP start
line (a capture that began mid-message, or non-SIP traffic on the port), bytes are dropped up
to the next line that looks like one, and counted.
"""
from __future__ import annotations

import re

MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
_START = re.compile(rb"(?:[A-Za-z]+ [^ \r\n]+ SIP/2\.0|SIP/2\.0 \d{3} [^\r\n]*)\r\n")
_START_ANYWHERE = re.compile(rb"(?:^|\n)((?:[A-Z]+ [^ \r\n]+ SIP/2\.0|SIP/2\.0 \d{3} )[^\r\n]*\r\n)")
_CONTENT_LENGTH = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.I)


def frame_sip_stream(buf: bytearray) -> tuple[list[bytes], int, list[str]]:
    """(complete messages, bytes consumed, events to count) for the front of `buf`."""
    messages: list[bytes] = []
    events: list[str] = []
    pos, size = 0, len(buf)
    while pos < size:
        while pos < size and buf[pos] in (0x0D, 0x0A):
            pos += 1
        if pos >= size:
            break
        if not _START.match(buf, pos):
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0 and size - pos < 512:
                break  # the start line may still be arriving
            m = _START_ANYWHERE.search(buf, pos + 1)
            if m is None:
                # a TLS record (RFC 8446 section 5.1: content type 20-23, version 3.x): SIPS,
                # which no passive probe can read without the keys
                tls = 20 <= buf[pos] <= 23 and size - pos > 1 and buf[pos + 1] == 3
                events.append("sip.tls_record" if tls else "sip.tcp_not_sip")
                pos = size
                break
            events.append("sip.tcp_resync")
            pos = m.start(1)
            continue
        head_end = buf.find(b"\r\n\r\n", pos)
        if head_end < 0:
            if size - pos > MAX_HEADER:
                events.append("sip.header_too_long")
                pos = size
            break
        m = _CONTENT_LENGTH.search(buf, pos, head_end + 2)
        if m is None:
            events.append("sip.tcp_no_content_length")
            length = 0
        else:
            digits = m.group(1)
            # int() refuses over 4300 digits; anything over 10 is too large anyway
            length = int(digits) if len(digits) <= 10 else MAX_BODY + 1
            if length > MAX_BODY:
                events.append("sip.body_too_large")
                pos = size
                break
        end = head_end + 4 + length
        if end > size:
            break
        messages.append(bytes(buf[pos:end]))
        pos = end
    return messages, pos, events
