"""SIP: message parsing (RFC 3261 section 7), stream framing (section 18.3), and above them the
transaction and dialog layers."""

from probe import native as _native  # noqa: F401  before the compiled modules: SIPPROBE_PURE
