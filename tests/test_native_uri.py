"""The native URI twins (_sipscan.uri_parts, _sipscan.name_addr_uri, _sipscan.request_uris)
against sip_dissect/uri.py's pure-Python references, _uri_parts_py, _name_addr_uri_py and
_request_uris_py.

The C functions may hand a value back (None) but must never disagree: on seeded random values
strung together from the pieces the Python code looks at (schemes in every case, '@', ':',
'[', ']', ';', '?', '<', '>', '"', ports of every length, white space, control and non-ASCII
characters), and on every From, To and request-URI of every public and lab capture. uri.py
must use them whenever they are built.

Build them with: python setup.py build_ext --inplace
"""
from __future__ import annotations

import gc
import os
import random
import sys

import pytest

from sip_dissect import accounting, transaction
from sip_dissect import uri as uri_mod
from sip_dissect.scan import SipHead, scan
from sip_dissect.uri import UriParts, _name_addr_uri_py, _request_uris_py, _uri_parts_py
from test_native_scan import LAB_CAPTURES, LAB_DIR, sip_payloads
from shared_pcaps import all_shared, shared

try:
    from sip_dissect import _sipscan
except ImportError:  # not built: no compiler, or build_ext not run
    _sipscan = None
else:
    _sipscan.init(SipHead)
    _sipscan.init_uri(UriParts)  # uri.py does it too, unless SIPPROBE_PURE=1

pytestmark = pytest.mark.skipif(
    _sipscan is None, reason="sip_dissect._sipscan is not built "
    "(python setup.py build_ext --inplace); uri.py uses the pure-Python functions")


def same_parts(uri) -> bool:
    """_sipscan.uri_parts(uri) is None or equals _uri_parts_py(uri), field and type for field
    and type. True when the C function handled it."""
    got = _sipscan.uri_parts(uri)
    if got is None:
        return False
    want = _uri_parts_py(uri)
    assert type(got) is UriParts, (uri, got)
    assert got == want, (uri, got, want)
    assert [type(v) for v in got] == [type(v) for v in want], (uri, got, want)
    return True


def same_request(from_value, to_value, ruri) -> bool:
    """_sipscan.request_uris is None or equals _request_uris_py, as same_parts."""
    got = _sipscan.request_uris(from_value, to_value, ruri)
    if got is None:
        return False
    want = _request_uris_py(from_value, to_value, ruri)
    assert type(got) is tuple and got == want, (from_value, to_value, ruri, got, want)
    assert all(type(v) is str for v in got), got
    return True


def same_addr(value) -> bool:
    got = _sipscan.name_addr_uri(value)
    if got is None:
        return False
    want = _name_addr_uri_py(value)
    assert type(got) is str and got == want, (value, got, want)
    return True


# -- the functions uri.py uses ---------------------------------------------------------------

TYPICAL_URI = "sip:user123@10.2.3.4:5060;transport=udp"
TYPICAL_FROM = '"Alice" <sip:alice@example.com>;tag=a1'


def test_uri_py_uses_the_native_functions_when_built(monkeypatch):
    if os.environ.get("SIPPROBE_PURE") == "1":
        pytest.skip("SIPPROBE_PURE=1 turns the native functions off on purpose")
    assert uri_mod.NATIVE, "sip_dissect._sipscan imports but uri.py does not use it"
    assert uri_mod._uri_parts_c is _sipscan.uri_parts
    assert uri_mod._name_addr_uri_c is _sipscan.name_addr_uri
    assert uri_mod._request_uris_first is _sipscan.request_uris
    # the layers that parse per call go through request_uris(), which tries them first
    assert uri_mod._uri_parts_first is _sipscan.uri_parts
    assert uri_mod._name_addr_uri_first is _sipscan.name_addr_uri
    # acc rows and CDRs read a request's through Transaction.request_uris (kept for an INVITE)
    assert transaction._request_uris is uri_mod.request_uris
    assert accounting.uri_parts is uri_mod.uri_parts

    def must_not_run(value):
        raise AssertionError("uri.py fell back to the Python function on a clean value")

    monkeypatch.setattr(uri_mod, "_uri_parts_py", must_not_run)
    monkeypatch.setattr(uri_mod, "_name_addr_uri_py", must_not_run)
    monkeypatch.setattr(uri_mod, "_request_uris_py", must_not_run)
    assert uri_mod.uri_parts(TYPICAL_URI) == ("user123", "10.2.3.4", 5060)
    assert type(uri_mod.uri_parts(TYPICAL_URI)) is UriParts
    assert uri_mod.name_addr_uri(TYPICAL_FROM) == "sip:alice@example.com"
    assert uri_mod.name_addr_uri(None) == ""
    assert uri_mod.request_uris(TYPICAL_FROM, None, TYPICAL_URI) == (
        "alice", "example.com", "", "user123", "10.2.3.4")


def test_request_uris_falls_back_where_c_hands_back():
    """request_uris() gives the Python twins' answers for values the C ones hand back."""
    from_value, to_value, ruri = '"Zo\u00eb" <sip:z\u00eb@x>;tag=1', "<sip:caf\u00e9@y>", "sip:a@b:\u00b2"
    assert _sipscan.name_addr_uri(from_value) is None and _sipscan.uri_parts(ruri) is None
    src = _uri_parts_py(_name_addr_uri_py(from_value))
    dst = _uri_parts_py(_name_addr_uri_py(to_value))
    req = _uri_parts_py(ruri)
    assert _sipscan.request_uris(from_value, to_value, ruri) is None
    assert uri_mod.request_uris(from_value, to_value, ruri) == (
        src.user, src.host, dst.user, req.user, req.host)
    assert uri_mod.request_uris(None, None, None) == ("", "", "", "", "")
    # one part the C function hands back is enough for Python to decide all five
    assert _sipscan.request_uris(TYPICAL_FROM, TYPICAL_FROM, "http://x") is None
    assert uri_mod.request_uris(TYPICAL_FROM, '"Bob"', "http://x") == (
        "alice", "example.com", "", "", "")


def test_handed_back_values_fall_back():
    """The public functions give the Python result where the C one hands back."""
    for uri in ("x", "http://x", "sips", "tel", "sip:caf\u00e9@x", "sip:a@b:\u00b2", "SIP:a\x0b@b", "\u017fip:a@b"):
        assert _sipscan.uri_parts(uri) is None, uri
        assert uri_mod.uri_parts(uri) == _uri_parts_py(uri)
    for value in ("<sip:a@b\u2003>", "sip:a@b\x1c", '"Zo\u00eb" <sip:z@x>', "\x85sip:a"):
        assert _sipscan.name_addr_uri(value) is None, value
        assert uri_mod.name_addr_uri(value) == _name_addr_uri_py(value)
    for odd in (b"sip:a@b", 5, ["sip:a@b"]):  # not str: Python decides (and raises)
        assert _sipscan.uri_parts(odd) is None
        assert _sipscan.name_addr_uri(odd) is None

    class Str(str):
        pass

    assert _sipscan.uri_parts(Str("sip:a@b")) is None
    assert _sipscan.name_addr_uri(Str("sip:a@b")) is None


URIS = [
    (TYPICAL_URI, ("user123", "10.2.3.4", 5060)),
    ("sip:bob@example.com", ("bob", "example.com", None)),
    ("SIPS:Bob@Example.COM:5061", ("Bob", "Example.COM", 5061)),
    ("sip:example.com", ("", "example.com", None)),
    ("sip:alice:secret@host:5060", ("alice", "host", 5060)),
    ("sip:a@b@c:1", ("a@b", "c", 1)),  # rpartition: the last '@'
    ("sip:a:b:c@h", ("a", "h", None)),
    ("sip:alice@[2001:db8::1]:5060;transport=tcp", ("alice", "[2001:db8::1]", 5060)),
    ("sip:[2001:db8::1]", ("", "[2001:db8::1]", None)),
    ("sip:[2001:db8::1", ("", "[2001:db8::1", None)),  # no ']': the rest is the host
    ("sip:[::1]x:5", ("", "[::1]", None)),
    ("sip:[]:5", ("", "[]", 5)),
    ("sip:h:", ("", "h", None)), ("sip:h:00000", ("", "h", 0)), ("sip:h:65536", ("", "h", 65536)),
    ("sip:h:123456", ("", "h", None)), ("sip:h:50x", ("", "h", None)), ("sip:h:+5", ("", "h", None)),
    ("sip:h:5 ", ("", "h", None)), ("sip:h?subject=x:5", ("", "h", None)),
    ("sip:u@h;maddr=x@y:5", ("u", "h", None)), ("sip:u@h?to=x@y", ("u", "h", None)),
    ("", ("", "", None)), ("sip:", ("", "", None)), ("sip:@", ("", "", None)), ("sip:;x", ("", "", None)),
    ("tel:+1-555-0100;phone-context=x", ("+1-555-0100", "", None)),
    ("TEL:+1@x:5", ("+1@x:5", "", None)),
    ("sip:\ta b@h:1", ("\ta b", "h", 1)),
]


@pytest.mark.parametrize("uri,want", URIS)
def test_uri_examples(uri, want):
    assert same_parts(uri)
    assert _sipscan.uri_parts(uri) == want


ADDRS = [
    (TYPICAL_FROM, "sip:alice@example.com"), (None, ""), ("", ""),
    ("<sip:a@b;transport=tcp>;tag=1", "sip:a@b;transport=tcp"), ("sip:a@b;tag=1", "sip:a@b"),
    ('"Alice"', ""), ('"Alice" sip:a@b', ""), ("< \tsip:a@b\t >", "sip:a@b"),
    ("<sip:a@b", "sip:a@b"), ("x>y<sip:a@b>", "sip:a@b"), ("<>", ""), (" \t ", ""),
    ('Bob <sip:b@c>;tag=x', "sip:b@c"), ("  sip:a@b  ;x", "sip:a@b"), ('"a<b" <sip:x>', 'b" <sip:x'),
]


@pytest.mark.parametrize("value,want", ADDRS)
def test_name_addr_examples(value, want):
    assert same_addr(value)
    assert _sipscan.name_addr_uri(value) == want


# -- differential fuzz -----------------------------------------------------------------------

SCHEMES = ["sip:", "SIP:", "Sip:", "sIp:", "sips:", "SIPS:", "SiPs:", "tel:", "TEL:", "Tel:"]
ODD_SCHEMES = ["", "sip", "sips", "http:", "sipx:", "si:", "im:", "\u017fip:", "s\u0130p:",
               "\u0130sip:", " sip:", "sip :", "sip\x00:", "SIP\u00a0:", "te l:", "sip\t:"]
URI_PIECES = ["user", "alice", "123", "a:pw", "@", "@", "@@", ":", ":", "::", "[", "]",
              "[2001:db8::1]", "[::1]:5060", "10.2.3.4", "example.com", ":5060", ":65535",
              ":99999", ":123456", ":0", ":00000", ":5060x", ";transport=udp", ";", "?", "?h=v",
              "%40", " ", "\t", "+1-555", "-", ".", "1", "99", "<", ">", '"']
ADDR_PIECES = ['"Alice"', '"x<y"', '"', "Bob", " ", " ", "\t", "<", "<", ">", ">", "sip:",
               "SIPS:", "tel:", "alice", "@", "example.com", ":5060", ";tag=1", ";", ";", ",",
               "[::1]"]
# what the C functions hand back: non-ASCII (some of it str.strip() or str.isdigit() or re's
# IGNORECASE treat as ASCII would not) and control characters (\x1c-\x1f are str.strip() space)
DIRTY = ["\u00e9", "\u00a0", "\u2003", "\u3000", "\x85", "\u00b2", "\u0665", "\u017f",
         "\x00", "\x0b", "\x0c", "\r\n", "\x1c", "\x1f", "\x7f"]


def pieces(rnd: random.Random, clean: list[str], most: int) -> str:
    return "".join(rnd.choice(DIRTY) if rnd.random() < 0.02 else rnd.choice(clean)
                   for _ in range(rnd.randrange(most)))


def random_uri(rnd: random.Random) -> str:
    scheme = rnd.choice(ODD_SCHEMES) if rnd.random() < 0.1 else rnd.choice(SCHEMES)
    return scheme + pieces(rnd, URI_PIECES, 9)


def random_addr(rnd: random.Random) -> str:
    return pieces(rnd, ADDR_PIECES, 12)


# 190k cases. Measured with seed 20240614: uri_parts handles 83 % of the random URIs and 95 %
# of the URIs the random name-addrs give, name_addr_uri 90 % of the random name-addrs (the rest
# has a dirty piece or an odd scheme, or no scheme at all). The bars leave room.
# request_uris handles 12 % of random (From, To, request-URI) triples: all three must be clean
# (the captures below are the coverage that matters).
FUZZ_MIN = {"uri": 0.75, "chained": 0.85, "addr": 0.80, "request": 0.08}


def test_fuzz_agrees():
    rnd = random.Random(20240614)
    counts = dict.fromkeys(FUZZ_MIN, 0)
    handled = dict.fromkeys(FUZZ_MIN, 0)
    for _ in range(90_000):
        counts["uri"] += 1
        handled["uri"] += same_parts(random_uri(rnd))
        value = random_addr(rnd)
        counts["addr"] += 1
        handled["addr"] += same_addr(value)
        counts["request"] += 1
        handled["request"] += same_request(value, random_addr(rnd), random_uri(rnd))
        chained = _name_addr_uri_py(value)
        if chained.startswith(("sip", "SIP", "tel", "TEL")):
            counts["chained"] += 1
            handled["chained"] += same_parts(chained)
    for name, bar in FUZZ_MIN.items():
        assert handled[name] >= bar * counts[name], (name, handled[name], counts[name])


def test_every_ascii_character_agrees():
    """Each ASCII character (and a few others) in every position of a typical URI and From."""
    chars = [chr(c) for c in range(128)] + ["\u00e9", "\u00b2", "\u0665", "\u2003", "\u017f"]
    for base in (TYPICAL_URI, "sip:alice@[2001:db8::1]:5060", "tel:+15550100"):
        for i in range(len(base) + 1):
            for c in chars:
                same_parts(base[:i] + c + base[i:])
                same_parts(base[:i] + c + base[i + 1:])
    for i in range(len(TYPICAL_FROM) + 1):
        for c in chars:
            same_addr(TYPICAL_FROM[:i] + c + TYPICAL_FROM[i:])
            same_addr(TYPICAL_FROM[:i] + c + TYPICAL_FROM[i + 1:])


# -- every capture ---------------------------------------------------------------------------

def capture_heads() -> list[SipHead]:
    paths = [shared(name) for name in all_shared()]
    paths += [str(LAB_DIR / lab / "capture.pcap") for lab in LAB_CAPTURES]
    heads = []
    for path in paths:
        heads += [h for h in map(scan, sip_payloads(path)) if isinstance(h, SipHead)]
    return heads


# measured: 99.7 % of the captures' From/To values, 99.8 % of their URIs are handled (the rest
# is fuzzed: NUL and high bytes, broken schemes); the bar leaves room
CAPTURE_HANDLED_MIN = 0.95


def test_captures_agree():
    assert all_shared(), "no public captures: tests expect ../shared/pcaps beside the repo"
    heads = capture_heads()
    assert len(heads) > 1000
    addrs = uris = handled_addrs = handled_uris = requests = handled_requests = 0
    for head in heads:
        for value in (head.from_value, head.to_value):
            addrs += 1
            handled_addrs += same_addr(value)
            uris += 1
            handled_uris += same_parts(_name_addr_uri_py(value))
            assert uri_mod.uri_parts(uri_mod.name_addr_uri(value)) == \
                _uri_parts_py(_name_addr_uri_py(value))
        if head.method is not None:
            requests += 1
            handled_requests += same_request(head.from_value, head.to_value, head.uri)
        if head.uri is not None:
            uris += 1
            handled_uris += same_parts(head.uri)
            assert uri_mod.uri_parts(head.uri) == _uri_parts_py(head.uri)
    assert handled_addrs >= CAPTURE_HANDLED_MIN * addrs, (handled_addrs, addrs)
    assert handled_uris >= CAPTURE_HANDLED_MIN * uris, (handled_uris, uris)
    assert handled_requests >= CAPTURE_HANDLED_MIN * requests, (handled_requests, requests)


# -- robustness ------------------------------------------------------------------------------

def test_results_are_not_tracked_by_the_gc():
    parts = _sipscan.uri_parts(TYPICAL_URI)
    assert not gc.is_tracked(parts)
    assert not gc.is_tracked(_sipscan.uri_parts("tel:+1"))
    assert not gc.is_tracked(_sipscan.request_uris(TYPICAL_FROM, TYPICAL_FROM, TYPICAL_URI))


def test_request_uris_checks_its_arguments():
    with pytest.raises(TypeError):
        _sipscan.request_uris(TYPICAL_FROM, TYPICAL_FROM)
    with pytest.raises(TypeError):
        _sipscan.request_uris(TYPICAL_FROM, TYPICAL_FROM, TYPICAL_URI, None)
    assert _sipscan.request_uris(b"<sip:a@b>", None, None) is None  # not str: Python decides


def test_init_uri_rejects_anything_but_the_namedtuple():
    with pytest.raises(AttributeError):
        _sipscan.init_uri(tuple)  # no _fields
    with pytest.raises(TypeError):
        _sipscan.init_uri(object())
    with pytest.raises(TypeError):
        _sipscan.init_uri(SipHead)  # 20 fields, not 3
    assert type(_sipscan.uri_parts(TYPICAL_URI)) is UriParts  # still the class it had


def test_no_leaks_and_sane_refcounts():
    values = [TYPICAL_URI, TYPICAL_FROM, "sip:[::1]:5", "tel:+1", "http://x", "sip:\u00e9", None,
              "", '"a"', "<sip:a@b:99999>"]
    for v in values:
        _sipscan.uri_parts(v)
        _sipscan.name_addr_uri(v)
        _sipscan.request_uris(v, TYPICAL_FROM, v)
    gc.collect()
    refs = [sys.getrefcount(v) for v in values[:6]]  # None and "" are shared: other code moves
    none_refs = sys.getrefcount(None)                 # their counts
    type_refs = sys.getrefcount(UriParts)
    blocks = sys.getallocatedblocks()
    for _ in range(20_000):  # 400k calls
        for v in values:
            _sipscan.uri_parts(v)
            _sipscan.name_addr_uri(v)
            _sipscan.request_uris(v, TYPICAL_FROM, v)
    gc.collect()
    assert sys.getallocatedblocks() - blocks < 500
    assert [sys.getrefcount(v) for v in values[:6]] == refs
    assert abs(sys.getrefcount(None) - none_refs) < 1000  # 120k calls give None back
    assert sys.getrefcount(UriParts) == type_refs
    parts = _sipscan.uri_parts(TYPICAL_URI)
    assert sys.getrefcount(parts) == 2
    alone = ("".join(["fre", "sh"]),)  # held by its tuple only: the baseline
    for i in (0, 1):
        assert sys.getrefcount(parts[i]) == sys.getrefcount(alone[0]), UriParts._fields[i]
