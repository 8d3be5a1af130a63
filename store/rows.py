"""Records to rows, for the writer process: row keys, time texts and the statements' parameters.

A chunk of records (tuples in ACC_FIELDS / CDR_FIELDS order) becomes its rows through map() and
zip() over the whole chunk, not a Python statement per row, and its keys through one check of
the chunk, an f-string each and CPython's own SHA-1: an acc row's key took 15 k instructions
with a JSON quoting call per part and OpenSSL's set-up per hash, 10.5 k here.
"""
from __future__ import annotations

import math
import time
from itertools import chain, repeat
from operator import add, itemgetter

try:  # CPython's own SHA-1: the same digest as OpenSSL's, without its per-call set-up
    from _sha1 import sha1 as _sha1
except ImportError:  # an interpreter built without it
    from hashlib import sha1 as _sha1
try:  # _quote: what json.dumps applies to each str
    from _json import encode_basestring_ascii as _quote
except ImportError:  # an interpreter without the C accelerators
    from json.encoder import encode_basestring_ascii as _quote

# AccRecord / CdrRecord fields as the parent sends them (operator.attrgetter order)
ACC_FIELDS = ("table", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
              "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain", "cseq")
CDR_FIELDS = ("start_time", "end_time", "duration", "callid", "from_tag", "to_tag", "src_user",
              "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain", "sip_code",
              "sip_reason", "created", "ring_time", "answer_time", "setuptime", "pdd", "ended_by",
              "end_reason")
# the columns of acc_rows() / cdr_rows() tuples, in order: a record's fields as they came
# (acc: but the table; acc_cdrs: but the unrounded duration), then what the writer adds
ACC_PARAMS = tuple("time_epoch" if f == "time" else f for f in ACC_FIELDS[1:]) + ("time",
                                                                                  "row_key")
CDR_PARAMS = (("start_epoch", "end_epoch") + CDR_FIELDS[3:]
              + ("start_time", "end_time", "duration", "row_key"))

_ACC_TAIL = itemgetter(slice(1, None))
_CDR_KEPT = itemgetter(0, 1, *range(3, len(CDR_FIELDS)))
_ACC_TIME = itemgetter(ACC_FIELDS.index("time"))
_ACC_KEY = itemgetter(0, 4, 1, 14, 2, 3, 5)  # table, callid, method, cseq, from_tag, to_tag, code
_ACC_KEY_STRS = itemgetter(slice(0, 6))  # the str parts of _ACC_KEY
_ACC_CSEQ = itemgetter(14)
_CDR_KEY = itemgetter(3, 4)  # callid, from_tag
_START, _END, _DURATION = itemgetter(0), itemgetter(1), itemgetter(2)
_hexdigest = _sha1().__class__.hexdigest


def key_text(table, callid, method, cseq, from_tag, to_tag, sip_code) -> str:
    """sha1 of json.dumps([table, callid, method, cseq, from_tag, to_tag, sip_code]), the same
    string json.dumps gives, built without the encoder's generic machinery when every part is
    a str and cseq an int (anything else goes through json.dumps itself)."""
    try:
        if cseq.__class__ is int:
            text = (f"[{_quote(table)}, {_quote(callid)}, {_quote(method)}, {cseq!r}, "
                    f"{_quote(from_tag)}, {_quote(to_tag)}, {_quote(sip_code)}]")
        else:
            raise TypeError
    except TypeError:
        import json

        text = json.dumps([table, callid, method, cseq, from_tag, to_tag, sip_code])
    return _sha1(text.encode()).hexdigest()


def cdr_key_text(callid, from_tag) -> str:
    """sha1 of json.dumps([callid, from_tag]), as key_text builds it."""
    try:
        text = f"[{_quote(callid)}, {_quote(from_tag)}]"
    except TypeError:
        import json

        text = json.dumps([callid, from_tag])
    return _sha1(text.encode()).hexdigest()


def _plain(strings) -> bool:
    """Whether json.dumps writes each of `strings` as itself between two quotes: all str, and
    nothing but printable ASCII other than the quote and the backslash (checked on their join,
    once for a chunk; str.isprintable() cost five times as much)."""
    try:
        text = "".join(strings).encode()
    except (TypeError, UnicodeError):  # not a str; a lone surrogate
        return False
    return not text.translate(None, _PLAIN_BYTES)


_PLAIN_BYTES = bytes(c for c in range(0x20, 0x7f) if c not in b'"\\')


def _hex_sha1(texts) -> list[str]:
    return list(map(_hexdigest, map(_sha1, map(str.encode, texts))))


def acc_keys(acc: list) -> list[str]:
    """key_text() of each record, the same strings, a chunk at a time."""
    if _plain(chain.from_iterable(map(_ACC_KEY_STRS, acc))) \
            and set(map(type, map(_ACC_CSEQ, acc))) <= {int}:
        # json.dumps' text (an f-string costs half of a %-format through map)
        return _hex_sha1([f'["{table}", "{callid}", "{method}", {cseq}, "{from_tag}", '
                          f'"{to_tag}", "{code}"]'
                          for (table, method, from_tag, to_tag, callid, code, _, _, _, _, _, _,
                               _, _, cseq) in acc])
    return [key_text(*parts) for parts in map(_ACC_KEY, acc)]


def cdr_keys(cdrs: list) -> list[str]:
    """cdr_key_text() of each record, the same strings, a chunk at a time."""
    parts = list(map(_CDR_KEY, cdrs))
    if _plain(chain.from_iterable(parts)):
        return _hex_sha1([f'["{callid}", "{from_tag}"]' for callid, from_tag in parts])
    return [cdr_key_text(*p) for p in parts]


def acc_rows(acc: list, times: TimeTexts) -> list[tuple]:
    """Parameters in ACC_PARAMS order of records of one table. Raises (TypeError, ValueError,
    ...) if one of them cannot become a row."""
    if set(map(len, acc)) - {len(ACC_FIELDS)}:
        raise ValueError(f"an acc record has not the {len(ACC_FIELDS)} fields {ACC_FIELDS}")
    seconds = times.seconds(map(_ACC_TIME, acc))
    return list(map(add, map(_ACC_TAIL, acc), zip(seconds, acc_keys(acc))))


def cdr_rows(cdrs: list, times: TimeTexts) -> list[tuple]:
    """Parameters in CDR_PARAMS order. Raises as acc_rows()."""
    if set(map(len, cdrs)) - {len(CDR_FIELDS)}:
        raise ValueError(f"a CDR record has not the {len(CDR_FIELDS)} fields {CDR_FIELDS}")
    return list(map(add, map(_CDR_KEPT, cdrs), zip(times.seconds(map(_START, cdrs)),
                                                   times.seconds(map(_END, cdrs)),
                                                   map(round, map(_DURATION, cdrs), repeat(3)),
                                                   cdr_keys(cdrs))))


def time_text(epoch: float, local_time: bool = False) -> str:
    """Kamailio's `time`: whole seconds, truncated (floor) as the proxy's time_t is."""
    second = math.floor(epoch)
    parts = time.localtime(second) if local_time else time.gmtime(second)
    return time.strftime("%Y-%m-%d %H:%M:%S", parts)


class TimeTexts(dict):
    """time_text() remembered per second: records arrive in time order, many per second."""

    def __init__(self, local_time: bool):
        super().__init__()
        self.local_time = local_time

    def __missing__(self, second: int) -> str:
        if len(self) > 100_000:
            self.clear()
        text = self[second] = time_text(second, self.local_time)
        return text

    def seconds(self, epochs) -> map:
        """The time text of each epoch."""
        return map(self.__getitem__, map(math.floor, epochs))
