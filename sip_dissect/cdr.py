"""Dialog CDRs: one row per call, as Kamailio 5.6's acc module writes `acc_cdrs`.

Kamailio's behaviour with `cdr_enable=1`, `cdr_on_failed=1`, `cdr_start_on_confirmed=0` and
the dlg_var extras of lab/kamailio.cfg (lab/README.md, facts 2-9):
- start_time = arrival of the initial INVITE the dialog was created from (after an auth
  challenge: the INVITE with credentials, since the challenged one never reaches dlg_manage);
- answered and ended by BYE: end_time = arrival of the BYE, duration = end - start, ringing
  included, in seconds with milliseconds;
- failed: end_time = start_time, duration 0, sip_code/sip_reason of the final reply and the
  To tag it carried;
- a failure the proxy generated itself (a 404 after a failed lookup, the 408 when tm's
  fr_timer or fr_inv_timer fires, lab scenarios no-answer-408 and ringing-no-answer):
  sip_code and sip_reason NULL (None), the onreply_route that sets them never ran; to_tag is
  the one a callee's 1xx set, NULL if none;
- only 401/407 challenges and no INVITE after them: no dialog, no row;
- a stateless rejection (sl_send_reply, To tag with sl's '.' separator; lab scenario
  missed-early-blocked-403): no transaction, so no dialog and no row; sipprobe writes a
  "rejected" row unless `kamailio_exact`;
- a dialog still open at the end (no BYE): Kamailio writes nothing. sipprobe writes a row
  with end_reason "open" (or "expired" after dialog_timeout) unless `kamailio_exact`;
- an INVITE that nothing answered (not even a 100) and no proxy relayed (a scanner's): no
  dialog in any proxy, no row, unless `unanswered` asks for one (end_reason "unanswered").
The extras (created, ring_time, answer_time, setuptime, pdd, ended_by, end_reason,
ring_duration, talk_time) are sipprobe's own; setuptime follows OpenSIPS (answer - created), pdd
is first ringing - created, talk_time is answer to end (Asterisk's billsec), ring_duration the
INVITE to the answer, the failure reply or the caller's CANCEL, so that for an answered call
duration = ring_duration + talk_time (to the millisecond).
"""
from __future__ import annotations

import cython

from store.tables import CANCELLED, UNANSWERED, UNENDED

from .accounting import STATELESS_TAG
from .dialog import CHALLENGES, Call
# CdrRecord is declared with the acc_cdrs table (store/tables.py) and built in records.py;
# imported here, it is still sip_dissect.cdr.CdrRecord
from .records import CODE_TEXT, CdrRecord, new_record


@cython.ccall
def round_ms(x: cython.double) -> object:
    """round(x, 3) for x >= 0, the same float, without the decimal conversion round() makes
    (1.7 % of a replay). x*1000 is within half an ulp of the exact product, so away from a
    half its nearest integer is the exact product's, and dividing that by 1000 rounds as
    parsing the decimal digits would; near a half (or out of range), round() decides."""
    y: cython.double = x * 1000.0
    if not 0.0 <= y < 1e12:
        return round(x, 3)
    whole: cython.double = cython.cast(cython.longlong, y)  # floor: y >= 0
    frac: cython.double = y - whole
    if -1e-6 < frac - 0.5 < 1e-6:
        return round(x, 3)
    if frac > 0.5:
        whole += 1.0
    return whole / 1000.0


def _proxy_generated(invite, code, proxies) -> bool:
    """The failure `code` came from the proxy itself, not relayed from a callee: its own 404
    after a failed lookup (sent to a proxy, never relayed onwards), its 408 when its timer
    fired (a code none of the relayed branches answered, or no reply in the capture at all:
    dialog.py ended the call on the transaction's timeout)."""
    if invite.final_status != code:
        return True
    if invite.downstream:
        return not any(t.final_status == code for t in invite.downstream)
    return proxies is not None and invite.dst in proxies


def cdr_from_call(call: Call, proxies=None, *, kamailio_exact: bool = False,
                  start_on_confirmed: bool = False, unanswered: bool = False) -> CdrRecord | None:
    """The CDR of a finished call (the call_ended event), or None when Kamailio would write
    none. `proxies`: the proxy addresses (a ProxySet or a set of (ip, port)), to recognise
    replies the proxy generated itself."""
    invite = call.invite
    code = call.final_code
    if code is None and invite.final_status in CHALLENGES:
        return None  # challenged, never re-sent with credentials: no dialog in the proxy
    if call.end_reason == UNANSWERED and not unanswered:
        return None  # a scanner's INVITE: counted (state.invite_unanswered), no row
    if kamailio_exact and call.end_reason in UNENDED:
        return None  # Kamailio writes no CDR for a dialog that has not ended
    if kamailio_exact and not invite.downstream and code is not None and code >= 300 \
            and STATELESS_TAG.fullmatch(invite.final_to_tag or "") is not None:
        return None  # rejected statelessly: no transaction, so the dialog was never created
    start = invite.created
    # the request-URI as dialled (before the proxy rewrote it)
    src_user, src_domain, dst_ouser, dst_user, dst_domain = invite.request_uris()
    failed = code is not None and code >= 300
    if failed:
        end = start
        to_tag = invite.final_to_tag or (call.callee_tags[-1] if call.callee_tags else "")
    else:
        end = call.end_time if call.end_time is not None else call.last_activity
        to_tag = call.confirmed_tag or (call.callee_tags[-1] if call.callee_tags else "")
    if code is None:
        sip_code = sip_reason = None
    else:
        codes: dict = CODE_TEXT  # typed: dict.get in C
        sip_code, sip_reason = codes.get(code) or f"{code:03d}", call.final_reason
    if failed and _proxy_generated(invite, code, proxies):
        sip_code = sip_reason = None
        to_tag = call.callee_tags[-1] if call.callee_tags else None
    elif not to_tag:
        to_tag = None  # Kamailio's dlg_var was never set: NULL
    ring, answer = call.ring_time, call.answer_time
    created = start
    ended_by, wait, talk = call.ended_by, None, 0.0
    if answer is not None and not failed:
        wait = answer - created
        talk = end - answer if end > answer else 0.0
    elif failed:
        cancel = invite.cancel
        # the caller gave up at its CANCEL, whatever reply the INVITE got after it
        stop = cancel.created if cancel is not None else invite.final_ts
        wait = stop - created if stop is not None else None
        ended_by = _failure_ended_by(call, invite, proxies)
    if start_on_confirmed and answer is not None and not failed:
        start = answer  # acc's cdr_start_on_confirmed: billing from the answer, not the INVITE
    span = end - start
    # in CdrRecord's field order (see new_record)
    return new_record(CdrRecord, (
        start, end, round_ms(0.0 if 0.0 > span else span),  # max(span, 0.0), cheaper
        call.callid, call.caller_tag, to_tag,
        src_user, src_domain, invite.src[0], dst_ouser, dst_user, dst_domain,
        sip_code, sip_reason,
        created, ring, answer,
        None if answer is None else answer - created,  # setuptime
        None if ring is None else ring - created,  # pdd
        ended_by, call.end_reason, wait, talk))  # the store rounds them to the ms


def _failure_ended_by(call: Call, invite, proxies) -> str:
    """Who ended a call that never connected: the caller's CANCEL, the proxy's own reply, a
    408 with no CANCEL (RFC 3261 Timer C or B ran out somewhere), or the callee's reply."""
    if invite.cancel is not None or call.end_reason == CANCELLED:
        return "caller"
    if call.final_code == 408:
        return "timeout"  # the proxy's own timer (fr_inv_timer) included
    if _proxy_generated(invite, call.final_code, proxies):
        return "proxy"
    return "callee"


class CdrWriter:
    """Each ended call's CDR into `sink`; `options` as cdr_from_call's. A subscriber of
    sip_dissect.events without Subscriber as its base (as accounting.AccWriter)."""

    sink: object
    proxies: object  # a ProxySet, a set of (ip, port), or None
    options: dict
    __slots__ = ("sink", "proxies", "options")

    def __init__(self, sink, proxies=None, **options):
        self.sink = sink
        self.proxies = proxies
        self.options = options

    def call_ended(self, call: Call) -> None:
        rec = cdr_from_call(call, self.proxies, **self.options)
        if rec is not None:
            self.sink(rec)
