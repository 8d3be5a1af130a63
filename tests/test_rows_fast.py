"""The shortcuts that build acc rows and CDRs (positional records, the sip_code table, the
request's URI parts in one call, the duration's rounding) give what the plain way gives."""
from __future__ import annotations

import math
import random

import pytest
from lab_oracle import LAB_PCAPS, PROXY

from pipeline import ProbeOptions, account_files
from sip_dissect.accounting import ProxySet
from sip_dissect.cdr import CdrRecord, cdr_from_call, round_ms
from sip_dissect.records import CODE_TEXT, AccRecord
from sip_dissect.uri import name_addr_uri, uri_parts

SCENARIOS = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/capture.pcap"))


def test_code_text_is_the_formatted_status():
    for code in [*range(-5, 1100), 10**6]:
        assert (CODE_TEXT.get(code) or f"{code:03d}") == f"{code:03d}"


def test_round_ms_is_round_to_three_digits():
    """Random durations, every exact half-millisecond below 100 s and the floats either side
    of each (where x * 1000 lands within an ulp of a half), and the range ends."""
    rng = random.Random(11)
    values = [rng.uniform(0, 10.0 ** rng.randint(0, 7)) for _ in range(50_000)]
    halves = [k / 1000 + 0.0005 for k in range(100_000)]
    values += halves + [math.nextafter(v, 0.0) for v in halves] \
        + [math.nextafter(v, math.inf) for v in halves]
    values += [0.0, 5e-324, 0.0005, 2.675, 1e9 - 0.0005, 1e12, 1e15 + 0.5, math.inf]
    wrong = [v for v in values if round_ms(v) != round(v, 3) or type(round_ms(v)) is not float]
    assert wrong == []


def plain_uri_parts(req) -> tuple:
    src, dst_o, ruri = (uri_parts(name_addr_uri(req.from_value)),
                        uri_parts(name_addr_uri(req.to_value)), uri_parts(req.uri or ""))
    return src.user, src.host, dst_o.user, ruri.user, ruri.host


def replay(scenario, proxies):
    known = ProxySet(list(proxies))
    records, calls = [], []

    def on_end(call):
        calls.append((call, cdr_from_call(call, known)))

    account_files([str(scenario / "capture.pcap")], records.append, ProbeOptions(strict=True),
                  proxy_set=known, on_call_end=on_end)
    return known, records, calls


@pytest.mark.parametrize("proxies", [(PROXY,), ()], ids=["proxy-given", "proxy-learned"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_uri_parts_give_the_plain_rows(scenario, proxies):
    known, records, calls = replay(scenario, proxies)
    assert calls
    for rec in records:
        assert type(rec) is AccRecord and len(rec) == len(AccRecord._fields)
        assert isinstance(rec.sip_code, str) and isinstance(rec.time, float)
        assert isinstance(rec.cseq, int) and isinstance(rec.src_user, str)
    for call, cdr in calls:
        req = call.invite  # its uri, from_value and to_value: the INVITE's
        if cdr is None:
            continue
        assert type(cdr) is CdrRecord and len(cdr) == len(CdrRecord._fields)
        again = cdr_from_call(call, known)
        assert again == cdr and [type(v) for v in again] == [type(v) for v in cdr]
        assert (cdr.src_user, cdr.src_domain, cdr.dst_ouser, cdr.dst_user,
                cdr.dst_domain) == plain_uri_parts(req)
        assert cdr.duration == round(max(cdr.end_time - cdr.start_time, 0.0), 3)



def test_a_resent_invite_gives_the_uris_of_the_resent_request():
    """After a 407 the call's INVITE is the re-sent one, and the CDR reads its request."""
    known, _, calls = replay(LAB_PCAPS / "lab-auth-407", (PROXY,))
    (call, cdr), = calls
    assert call.challenges == 1
    assert (cdr.src_user, cdr.src_domain, cdr.dst_ouser, cdr.dst_user,
            cdr.dst_domain) == plain_uri_parts(call.invite)
