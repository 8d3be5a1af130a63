"""Dialog CDRs equal to the acc_cdrs rows a real Kamailio 5.6 wrote (cdr_enable, cdr_on_failed,
lab/kamailio.cfg's dlg_var extras), on the lab captures kept in pcaps/lab-*."""
from __future__ import annotations

import json
import math

import pytest
from lab_oracle import LAB_PCAPS, NOTHING_RELAYED, PROXY

from pipeline import ProbeOptions, cdr_files
from sip_dissect.cdr import CdrRecord

SCENARIOS = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/capture.pcap"))
STATELESS_403 = "lab-missed-early-blocked-403"
TEXT_COLUMNS = [c for c in CdrRecord.KAMAILIO_COLUMNS
                if c not in ("start_time", "end_time", "duration")]


def kamailio_cdrs(scenario):
    data = json.loads((scenario / "kamailio-acc.json").read_text())
    return sorted(data["tables"]["acc_cdrs"]["rows"], key=lambda r: (r["callid"], r["from_tag"]))


def probe_cdrs(scenario, proxies=(PROXY,), **kw):
    cdrs = cdr_files([str(scenario / "capture.pcap")], ProbeOptions(strict=True),
                     proxies=list(proxies), **kw)
    return sorted(cdrs, key=lambda c: (c.callid, c.from_tag))


def assert_same_cdrs(scenario, got):
    want = kamailio_cdrs(scenario)
    assert [tuple(r[c] for c in TEXT_COLUMNS) for r in want] == \
        [tuple(getattr(g, c) for c in TEXT_COLUMNS) for g in got], scenario.name
    for r, g in zip(want, got):
        assert same_second(g.start_time, r["start_time_epoch"]), (scenario.name, g.callid)
        assert same_second(g.end_time, r["end_time_epoch"]), (scenario.name, g.callid)
        assert abs(g.duration - r["duration"]) <= 0.050, (scenario.name, g.callid)


# Kamailio handles a message a little after the mirror saw it (tens of microseconds on the lab's
# loopback; this much at most is taken)
PROXY_LATENCY = 0.010


def same_second(seen: float, stored: int) -> bool:
    """Kamailio stores start and end as whole seconds, the floor of the time it handled the
    event (lab fact 3): the floor of the capture's time, or the next second when the capture
    saw the message less than PROXY_LATENCY before a second's end (found in a fresh lab run:
    a BYE seen at .999969 s, stored as the next second)."""
    whole = math.floor(seen)
    return stored == whole or (stored == whole + 1 and whole + 1 - seen < PROXY_LATENCY)


def test_the_next_second_only_within_the_proxys_latency_of_its_start():
    """same_second's one allowance is the fresh lab's case (a BYE seen 31 us before a second's
    end, stored by Kamailio as the next second); a second off anywhere else is a mismatch."""
    assert same_second(1796611257.999969, 1796611258)
    assert same_second(1796611257.5, 1796611257) and same_second(1796611257.0, 1796611257)
    assert not same_second(1796611257.5, 1796611258)
    assert not same_second(1796611257.98, 1796611258)  # 20 ms before: not the proxy's delay
    assert not same_second(1796611258.001, 1796611257)  # the proxy never stamps earlier
    assert not same_second(1796611257.999969, 1796611259)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_cdrs_equal_kamailio(scenario):
    assert_same_cdrs(scenario, probe_cdrs(scenario, kamailio_exact=True))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS
                                      if s.name not in NOTHING_RELAYED - {STATELESS_403}],
                         ids=lambda p: p.name)
def test_cdrs_equal_kamailio_with_proxy_detected(scenario):
    """Without --proxy only the proxy's own replies cannot be told apart (see the 404 below)."""
    assert_same_cdrs(scenario, probe_cdrs(scenario, proxies=(), kamailio_exact=True))


def test_proxy_generated_404_has_null_code_and_tag():
    """Lab fact 8: the proxy rejected before relaying, its onreply_route never ran."""
    [cdr] = probe_cdrs(LAB_PCAPS / "lab-notfound-proxy-404", kamailio_exact=True)
    assert (cdr.to_tag, cdr.sip_code, cdr.sip_reason) == (None, None, None)
    assert (cdr.duration, cdr.end_time, cdr.end_reason) == (0.0, cdr.start_time, "rejected")


def test_stateless_rejection_has_no_cdr_in_kamailio():
    """sl_send_reply("403") before any transaction: the dialog module never created the
    dialog, so Kamailio wrote no acc_cdrs row; sipprobe keeps its "rejected" row by default."""
    scenario = LAB_PCAPS / STATELESS_403
    assert kamailio_cdrs(scenario) == []
    assert probe_cdrs(scenario, kamailio_exact=True) == []
    [cdr] = probe_cdrs(scenario)
    assert (cdr.end_reason, cdr.sip_code, cdr.duration) == ("rejected", None, 0.0)


def test_no_bye_call_gets_an_open_row_unless_kamailio_exact():
    scenario = LAB_PCAPS / "lab-no-bye"
    assert probe_cdrs(scenario, kamailio_exact=True) == []
    [cdr] = probe_cdrs(scenario)
    assert cdr.end_reason == "open" and cdr.ended_by == ""
    assert cdr.sip_code == "200" and cdr.to_tag and cdr.answer_time is not None


def test_ringing_then_answer_times():
    [cdr] = probe_cdrs(LAB_PCAPS / "lab-ringing-then-answer", kamailio_exact=True)
    assert cdr.created == cdr.start_time
    assert 0.0 <= cdr.pdd < 0.1 and cdr.ring_time == pytest.approx(cdr.created + cdr.pdd)
    assert 2.9 < cdr.setuptime < 3.2
    assert cdr.answer_time == pytest.approx(cdr.created + cdr.setuptime)
    assert 4.9 < cdr.duration < 5.2  # ringing included, as Kamailio counts
    assert (cdr.end_reason, cdr.ended_by) == ("completed", "caller")


def test_callee_bye_ended_by_callee():
    [cdr] = probe_cdrs(LAB_PCAPS / "lab-callee-bye", kamailio_exact=True)
    assert (cdr.end_reason, cdr.ended_by) == ("completed", "callee")
    assert cdr.from_tag.endswith("SIPpTag001")  # still the caller's tag (lab fact 6)


def test_cancel_is_cancelled():
    [cdr] = probe_cdrs(LAB_PCAPS / "lab-cancel-487", kamailio_exact=True)
    assert (cdr.end_reason, cdr.sip_code, cdr.duration) == ("cancelled", "487", 0.0)
    assert cdr.answer_time is None and cdr.setuptime is None and cdr.pdd is not None


def test_busy_is_rejected():
    [cdr] = probe_cdrs(LAB_PCAPS / "lab-busy-486", kamailio_exact=True)
    assert (cdr.end_reason, cdr.sip_code, cdr.end_time) == ("rejected", "486", cdr.start_time)


def test_auth_call_starts_at_the_authenticated_invite():
    """The challenged INVITE never reaches dlg_manage(): the dialog starts with the second."""
    [cdr] = probe_cdrs(LAB_PCAPS / "lab-auth-407", kamailio_exact=True)
    assert cdr.src_user == "authuser" and cdr.sip_code == "200"
    assert 1.9 < cdr.duration < 2.1


def _frames_until(src, dst, marker: bytes) -> None:
    """Copy a little-endian pcap up to (not including) the first frame containing `marker`."""
    data = src.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [data[:24]], 24
    while pos < len(data):
        caplen = int.from_bytes(data[pos + 8:pos + 12], "little")
        frame = data[pos:pos + 16 + caplen]
        if marker in frame:
            break
        out.append(frame)
        pos += 16 + caplen
    else:
        raise AssertionError(f"{marker!r} not in {src}")
    dst.write_bytes(b"".join(out))


def test_challenge_without_retry_gives_no_cdr(tmp_path):
    """lab-auth-407 cut before the INVITE with credentials: the proxy never created a dialog."""
    cut = tmp_path / "challenged.pcap"
    _frames_until(LAB_PCAPS / "lab-auth-407" / "capture.pcap", cut, b"CSeq: 2 INVITE")
    opts = ProbeOptions(strict=True)
    assert cdr_files([str(cut)], opts, proxies=[PROXY]) == []
    assert cdr_files([str(cut)], opts, proxies=[PROXY], kamailio_exact=True) == []
