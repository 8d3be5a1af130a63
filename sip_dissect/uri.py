"""SIP URIs and name-addr headers (RFC 3261 sections 19.1 and 20.10), just what accounting reads.

    From: "Alice" <sip:alice@example.com;transport=tcp>;tag=1928301774
          display     URI inside <>                    header parameters

`request_uris`, `name_addr_uri` and `uri_parts` run per call at accounting time: the native
twins in `_sipscan` (C) handle clean ASCII sip:/sips:/tel: values and hand anything else back
(None) to the pure-Python references here, `_request_uris_py`, `_name_addr_uri_py` and
`_uri_parts_py`, which decide.
tests/test_native_uri.py compares the two.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from probe.native import load

# compiled once: re's module functions re-check their flags on every call (an enum lookup)
_SCHEME = re.compile(r"^(sips?|tel):", re.I)
_TAG_PARAM = re.compile(r";\s*tag\s*=\s*([^;,\s]+)", re.I)


class UriParts(NamedTuple):
    user: str  # Kamailio's $rU/$fU/$tU: empty when the URI has no user part
    host: str  # $rd/$fd: host as written, IPv6 references keep their brackets
    port: int | None


def _name_addr_uri_py(value: str | None) -> str:
    """The URI of a From/To/Contact value: inside <> when present, else up to the first ';'
    (in an addr-spec without <>, parameters belong to the header, RFC 3261 section 20)."""
    if not value:
        return ""
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt + 1)
        return value[lt + 1:gt if gt >= 0 else len(value)].strip()
    if value.startswith('"'):
        return ""  # a display name without <>: malformed
    return value.split(";", 1)[0].strip()


def _uri_parts_py(uri: str) -> UriParts:
    """User, host and port of a sip:, sips: or tel: URI; empty parts for anything else."""
    head = uri[:5].lower()  # the common schemes without a regex match; the rest by _SCHEME
    if head[:4] == "sip:":
        rest, tel = uri[4:], False
    elif head == "sips:":
        rest, tel = uri[5:], False
    else:
        m = _SCHEME.match(uri)
        if not m:
            return UriParts("", "", None)
        rest, tel = uri[m.end():], m.group(1).lower() == "tel"
    rest = rest.partition(";")[0].partition("?")[0]  # parameters and headers off
    if tel:
        return UriParts(rest, "", None)
    user, at, hostport = rest.rpartition("@")
    if at:
        user = user.split(":", 1)[0]  # drop a password
    else:
        user, hostport = "", rest
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[:end + 1] if end > 0 else hostport
        port_text = hostport[end + 2:] if end > 0 and hostport[end + 1:end + 2] == ":" else ""
    else:
        host, _, port_text = hostport.partition(":")
    # str.isdigit() accepts "\u00b2", and int() rejects it and numbers over 4300 digits
    ok = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    return UriParts(user, host, int(port_text) if ok else None)


def _native():
    """The C twins (uri_parts, name_addr_uri, request_uris), or Nones (not built, or
    SIPPROBE_PURE=1)."""
    _sipscan = load("sip_dissect._sipscan")
    if _sipscan is None or not hasattr(_sipscan, "request_uris"):  # not built, or built before
        return None, None, None
    _sipscan.init_uri(UriParts)
    return _sipscan.uri_parts, _sipscan.name_addr_uri, _sipscan.request_uris


_uri_parts_c, _name_addr_uri_c, _request_uris_c = _native()
NATIVE = _uri_parts_c is not None


def _hand_over(*values) -> None:
    return None


# the C twins, or stand-ins that always hand over to the Python ones
_uri_parts_first = _uri_parts_c if NATIVE else _hand_over
_name_addr_uri_first = _name_addr_uri_c if NATIVE else _hand_over
_request_uris_first = _request_uris_c if NATIVE else _hand_over


def name_addr_uri(value: str | None) -> str:
    """The URI of a From/To/Contact value (see _name_addr_uri_py)."""
    uri = _name_addr_uri_first(value)  # "" is an answer: `is None`, not `or`
    return uri if uri is not None else _name_addr_uri_py(value)


def uri_parts(uri: str) -> UriParts:
    """User, host and port of a sip:, sips: or tel: URI (see _uri_parts_py)."""
    return _uri_parts_first(uri) or _uri_parts_py(uri)  # a 3-tuple: always true


def request_uris(from_value: str | None, to_value: str | None,
                 ruri: str | None) -> tuple[str, str, str, str, str]:
    """($fU, $fd, $tU, $rU, $rd): the users and hosts of a request's From, To and request
    URIs, as acc rows and CDRs read them; one call for the five, in C when every value is
    clean (a third of a row's cost in Python), else _request_uris_py."""
    return _request_uris_first(from_value, to_value, ruri) or _request_uris_py(
        from_value, to_value, ruri)


def _request_uris_py(from_value: str | None, to_value: str | None,
                     ruri: str | None) -> tuple[str, str, str, str, str]:
    """request_uris() by name_addr_uri() and uri_parts()."""
    src = uri_parts(name_addr_uri(from_value))
    dst = uri_parts(name_addr_uri(to_value))
    req = uri_parts(ruri or "")
    return src.user, src.host, dst.user, req.user, req.host


def tag_of(value: str | None) -> str:
    """The tag parameter of a From/To value, outside the <> of the URI."""
    if not value:
        return ""
    gt = value.rfind(">")
    params = value[gt + 1:] if gt >= 0 else value
    m = _TAG_PARAM.search(params)
    return m.group(1) if m else ""
