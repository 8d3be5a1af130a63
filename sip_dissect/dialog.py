"""The dialog layer (RFC 3261 section 12) for calls the probe accounts.

A `Call` is the dialog set one initial INVITE creates: early dialogs from provisional replies
with a To tag (several when the request forks), one confirmed by the 2xx, terminated by BYE or
by the INVITE failing. A 401/407 challenge does not end it: the caller re-sends the INVITE
with the same Call-ID and From tag and a higher CSeq, and that is the same call (section 22.2).
Dialogs that never see a BYE expire after `dialog_timeout` seconds of packet time. An initial
INVITE left without a final reply ends when its transaction times out (transaction.py: Timer B
with no reply at all, fr_inv_timer after a 1xx), as the proxy ends it with a 408; one that
nothing answered or relayed (a scanner's, or one to a dead host) ends `unanswered`.

Compiled by Cython at install, as transaction.py (whose header says how).
"""
from __future__ import annotations

from collections import deque

import cython

from probe.counters import Counters
from store.tables import CANCELLED, COMPLETED, EXPIRED, OPEN, REJECTED, UNANSWERED

from .events import Publisher
from .transaction import Transaction

# States (section 12 and RFC 4235's names)
INIT, EARLY, CONFIRMED, TERMINATED = "INIT", "EARLY", "CONFIRMED", "TERMINATED"
CHALLENGES = (401, 407)
TIMEOUT_CODE, TIMEOUT_REASON = 408, "Request Timeout"  # what tm answers when its timer fires


class Call:
    """One call as the proxy's upstream side saw it."""

    callid: object
    caller_tag: object
    created: object  # packet times: floats, None until they happen
    state: str
    callee_tags: tuple  # early dialogs (forks); the shared () until one: 56 bytes an open call
    confirmed_tag: object
    ring_time: object
    answer_time: object
    end_time: object
    final_code: object  # int | None
    final_reason: object
    ended_by: str  # caller, callee or proxy
    end_reason: str  # completed, cancelled, rejected, expired, open
    last_activity: object
    invite: Transaction
    challenges: cython.int
    media: object  # the media layer's description of each leg (rtcp_mos.media)
    __slots__ = ("callid", "caller_tag", "created", "state", "callee_tags", "confirmed_tag",
                 "ring_time", "answer_time", "end_time", "final_code", "final_reason",
                 "ended_by", "end_reason", "last_activity", "invite", "challenges", "media")

    def __init__(self, invite: Transaction):
        self.callid = invite.callid
        self.caller_tag = invite.from_tag
        self.created = created = invite.created
        self.state = INIT
        self.callee_tags = ()
        self.confirmed_tag = ""
        self.ring_time = None
        self.answer_time = None
        self.end_time = None
        self.final_code = None
        self.final_reason = ""
        self.ended_by = ""
        self.end_reason = ""
        self.last_activity = created
        self.invite = invite
        self.challenges = 0
        self.media = None


class DialogLayer:
    """Calls keyed by (Call-ID, caller's From tag); publishes call_started, call_answered and
    call_ended (sip_dissect.events) to the handlers `events` has when the layer is built."""

    c: object  # the Counters
    dialog_timeout: cython.double
    max_calls: cython.Py_ssize_t
    on_started: tuple  # the events' handlers (sip_dissect.events), read when built
    on_answered: tuple
    on_ended: tuple
    calls: dict  # (Call-ID, caller's tag) -> Call
    _order: object  # keys of `calls` in arrival order, built when the cap is first reached
    next_sweep: cython.double  # packet time of the next look for expired calls
    totals: dict
    __slots__ = ("c", "dialog_timeout", "max_calls", "on_started", "on_answered", "on_ended",
                 "calls", "_order", "next_sweep", "totals")

    def __init__(self, counters: Counters, *, dialog_timeout: float = 7200.0,
                 max_calls: int = 200_000, events: Publisher | None = None):
        self.c = counters
        self.dialog_timeout = dialog_timeout
        self.max_calls = max_calls
        events = events if events is not None else Publisher()
        self.on_started = events.call_started
        self.on_answered = events.call_answered
        self.on_ended = events.call_ended
        self.calls = {}
        self._order = deque()
        self.next_sweep = 0.0
        self.totals = {"calls": 0, "answered": 0, "failed": 0, "challenged": 0}

    def initial_invite(self, txn: Transaction) -> Call:
        """An accounted initial INVITE: a new call, or the same call re-sent after a challenge."""
        call: Call
        old: Call
        key = (txn.callid, txn.from_tag)
        call = self.calls.get(key)
        if call is None or call.state == TERMINATED:
            if len(self.calls) >= self.max_calls:
                self._evict_oldest()
            call = self.calls[key] = Call(txn)
            self.totals["calls"] += 1
            for handler in self.on_started:
                handler(call)
        else:  # re-sent after a challenge: the same call, from the new INVITE
            call.invite = txn
            call.last_activity = txn.created
        return call

    def _evict_oldest(self) -> None:
        """At the cap: end the oldest call, in O(1) amortised. The keys in arrival order are
        copied from the dict when the copy runs out (one pass per cap's worth of evictions:
        calls added since are younger than all of them); keys of calls that ended meanwhile
        are skipped. next(iter(calls)) walked the dict's deleted slots on every eviction."""
        call: Call
        calls = self.calls
        for _ in range(2):
            order = self._order
            if not order:
                order = self._order = deque(calls)
            while order:
                call = calls.get(order.popleft())
                if call is not None:
                    self.c["state.dialog_evicted"] += 1
                    self._end_unreplied(call, call.last_activity, EXPIRED)
                    return

    def invite_timed_out(self, txn: Transaction, when: cython.double, evicted: cython.bint) -> None:
        """The initial INVITE's transaction ended without a final reply (transaction.py).
        Answered by nothing and relayed nowhere: `unanswered`. Otherwise the proxy's timer
        fired and it answered 408 upstream (lab/README.md): the call failed then. Evicted
        (the transaction cap): expired at its last activity."""
        call: Call = txn.call
        if call is None or call.state == TERMINATED or call.invite is not txn:
            return
        if evicted or _unreplied(call):
            self._end_unreplied(call, call.last_activity, EXPIRED)
            return
        self.c["state.invite_timeout"] += 1
        call.final_code, call.final_reason = TIMEOUT_CODE, TIMEOUT_REASON
        self.totals["failed"] += 1
        self._end(call, when, REJECTED, "")

    def _end_unreplied(self, call: Call, ts, reason) -> None:
        """End a call with `reason`, or `unanswered` when its INVITE got no reply at all."""
        if _unreplied(call):
            self.c["state.invite_unanswered"] += 1
            reason = UNANSWERED
        self._end(call, ts, reason, "")

    def find(self, callid: str, tag_a: str, tag_b: str) -> Call | None:
        """The call an in-dialog request belongs to, whichever side sent it."""
        return self.calls.get((callid, tag_a)) or self.calls.get((callid, tag_b))

    def provisional(self, call: Call, txn: Transaction, status, to_tag, ts) -> None:
        """Section 12.1: a 1xx with a To tag creates an early dialog."""
        call.last_activity = ts
        if status in (180, 183) and call.ring_time is None:
            call.ring_time = ts
        if to_tag and call.state in (INIT, EARLY):
            if to_tag not in call.callee_tags:
                call.callee_tags += (to_tag,)
            call.state = EARLY

    def final(self, call: Call, txn: Transaction) -> None:
        """The INVITE's final reply: answered, challenged (the call goes on), or failed."""
        status, ts = txn.final_status, txn.final_ts
        call.last_activity = ts
        if status < 300:
            if call.state != CONFIRMED:
                call.state, call.answer_time, call.confirmed_tag = CONFIRMED, ts, txn.final_to_tag
                call.final_code, call.final_reason = status, txn.final_reason
                self.totals["answered"] += 1
                for handler in self.on_answered:
                    handler(call)
        elif status in CHALLENGES and txn.cancel is None:
            call.challenges += 1  # the caller will try again with credentials
            self.totals["challenged"] += 1
        elif call.state != CONFIRMED:
            call.final_code, call.final_reason = status, txn.final_reason
            self.totals["failed"] += 1
            self._end(call, ts, CANCELLED if txn.cancel is not None else REJECTED, "")

    def bye(self, call: Call, txn: Transaction, sent_by_proxy) -> None:
        """Section 15: a BYE ends the dialog, whichever side sends it."""
        if call.state == TERMINATED:
            return
        by = "proxy" if sent_by_proxy else ("caller" if txn.from_tag == call.caller_tag else "callee")
        self._end(call, txn.created, COMPLETED, by)

    def _end(self, call: Call, ts, reason, by) -> None:
        call.state = TERMINATED  # apart: four at once would build a tuple
        call.end_time, call.end_reason, call.ended_by = ts, reason, by
        self.calls.pop((call.callid, call.caller_tag), None)
        for handler in self.on_ended:
            handler(call)

    def sweep(self, now: cython.double) -> None:
        """Expire calls idle for dialog_timeout; the caller runs it on packet time, whatever
        the message, once `now` reaches next_sweep (every minute: the timeout is long)."""
        call: Call
        self.next_sweep = now + 60.0
        for call in [c for c in self.calls.values() if now - c.last_activity > self.dialog_timeout]:
            self.c["state.dialog_expired"] += 1
            self._end(call, call.last_activity, EXPIRED, "")

    def close(self) -> None:
        """End of input: calls still going are reported open (a later run may see their end)."""
        call: Call
        for call in list(self.calls.values()):
            self._end_unreplied(call, None, OPEN)
        self._order.clear()


@cython.cfunc
@cython.inline
def _unreplied(call: Call) -> cython.bint:
    """Nothing answered the call's INVITE (not even a 100) and no proxy relayed it."""
    invite: Transaction = call.invite
    return invite.state == "CALLING" and invite.final_status is None and not invite.downstream
