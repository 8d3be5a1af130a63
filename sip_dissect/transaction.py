"""The transaction layer as a passive observer sees it (RFC 3261 section 17).

Requests and responses are matched by the top Via's branch and sent-by plus the method
(section 17.2.3; ACK counts as INVITE, CANCEL is a transaction of its own), with the RFC 2543
fallback for branches without the magic cookie. A request forwarded by a proxy carries the
proxy's Via on top of the original one, so its second Via names the upstream transaction it
was relayed from: that link is how one call seen on both legs of a mirror is accounted once.
All timers run on packet time.

Compiled by Cython at install (probe/native.py COMPILED): the class-level annotations are
the fields of the extension types, declared nowhere else (native/pxdgen.py derives the .pxd);
interpreted, the same file runs with `import cython` resolving to Cython's shadow module.
"""
from __future__ import annotations

from collections import deque

import cython

from probe import records
from probe.counters import Counters
from probe.records import Datagram

from . import scan
from .scan import SipHead
from .uri import request_uris as _request_uris
from .via import MAGIC_COOKIE

T1 = 0.5
TIMER_B = 64 * T1  # an INVITE with no reply at all is over by then (RFC 3261 section 17.1.1.2)
TIMER_F = 64 * T1  # a non-INVITE transaction is over by then (RFC 3261 section 17.1.2.2)
FR_INV_TIMER = 120.0  # Kamailio tm's fr_inv_timer: no final reply this long after a 1xx
# A timer fires this much after the proxy's would: a 408 the proxy sends when its own timer
# fires (Kamailio: fr_timer 30 s, fr_inv_timer 120 s) is in the capture and must win the race.
# fr_inv_timer is counted here from the INVITE, not from its first 1xx: the slack covers that.
TIMER_SLACK: cython.double = 2.0
# keep a completed transaction this long to recognise retransmissions (a C double once
# compiled: sweep() compares against it for every finished transaction)
LINGER: cython.double = 64 * T1
SWEEP_EVERY = 0.25

# SipHead (scan.py's positions) and Datagram fields by position, as C constants once compiled:
# they are read for every message. Both are NamedTuples: indexed as such, Cython reaches each
# item through the subclass's generic slot (a Python method call); `cython.cast(tuple, x)`
# gives it the tuple it is, indexed with PyTuple_GET_ITEM (no-op when interpreted).
_CALL_ID: cython.Py_ssize_t = scan.CALL_ID
_CSEQ: cython.Py_ssize_t = scan.CSEQ
_CSEQ_METHOD: cython.Py_ssize_t = scan.CSEQ_METHOD
_FROM_TAG: cython.Py_ssize_t = scan.FROM_TAG
_URI: cython.Py_ssize_t = scan.URI
_FROM_VALUE: cython.Py_ssize_t = scan.FROM_VALUE
_TO_VALUE: cython.Py_ssize_t = scan.TO_VALUE
_TO_TAG: cython.Py_ssize_t = scan.TO_TAG
_METHOD: cython.Py_ssize_t = scan.METHOD
_STATUS: cython.Py_ssize_t = scan.STATUS
_REASON: cython.Py_ssize_t = scan.REASON
_VIA_SENT_BY: cython.Py_ssize_t = scan.VIA_SENT_BY
_VIA_BRANCH: cython.Py_ssize_t = scan.VIA_BRANCH
_VIA2_SENT_BY: cython.Py_ssize_t = scan.VIA2_SENT_BY
_VIA2_BRANCH: cython.Py_ssize_t = scan.VIA2_BRANCH
_TS: cython.Py_ssize_t = records.D_TS
_FRAME: cython.Py_ssize_t = records.D_FRAME
_SRC: cython.Py_ssize_t = records.D_SRC
_DST: cython.Py_ssize_t = records.D_DST
_SPORT: cython.Py_ssize_t = records.D_SPORT
_DPORT: cython.Py_ssize_t = records.D_DPORT
_TRANSPORT: cython.Py_ssize_t = records.D_TRANSPORT

# Passive names for the states both ends of the wire go through (section 17, figures 5-8)
CALLING, TRYING, PROCEEDING, COMPLETED, CONFIRMED, TERMINATED = (
    "CALLING", "TRYING", "PROCEEDING", "COMPLETED", "CONFIRMED", "TERMINATED")


class Transaction:
    """One request and the responses to it, on one hop."""

    key: tuple
    method: str
    # the request's addresses, for the acc rows and CDRs (the SipHead itself is not kept:
    # 200 bytes an open transaction)
    uri: object
    from_value: object
    to_value: object
    src: tuple  # (ip, port)
    dst: tuple
    transport: str
    created: object  # packet time (a float)
    frame: object
    state: str
    callid: object
    from_tag: object
    to_tag: object
    cseq: object
    final_status: object  # int | None
    final_reason: object
    final_ts: object  # float | None
    final_to_tag: object
    extra_2xx_tags: tuple  # forked 2xx after the first (13.2.2.4)
    upstream: Transaction | None  # the transaction a proxy relayed this from
    downstream: tuple  # what a proxy relayed this to (forks)
    cancel: Transaction | None  # INVITE: the CANCEL aimed at it
    invite: Transaction | None  # CANCEL: the INVITE it cancels
    retransmissions: cython.int
    call: object  # the dialog-layer Call this initial INVITE or BYE belongs to
    uris: object  # an INVITE's request_uris(), kept once asked: its acc row, then its CDR
    __slots__ = ("key", "method", "uri", "from_value", "to_value", "src", "dst", "transport",
                 "created", "frame", "state", "callid", "from_tag", "to_tag", "cseq",
                 "final_status", "final_reason", "final_ts", "final_to_tag", "extra_2xx_tags",
                 "upstream", "downstream", "cancel", "invite", "retransmissions", "call",
                 "uris")

    def __init__(self, key, msg: SipHead, d: Datagram, method: str):
        self.key = key
        self.method = method
        m: tuple = cython.cast(tuple, msg)
        self.uri = m[_URI]
        self.from_value = m[_FROM_VALUE]
        self.to_value = m[_TO_VALUE]
        dt: tuple = cython.cast(tuple, d)
        self.src = endpoint(dt[_SRC], dt[_SPORT])
        self.dst = endpoint(dt[_DST], dt[_DPORT])
        self.transport = dt[_TRANSPORT]
        self.created = dt[_TS]
        self.frame = dt[_FRAME]
        self.state = CALLING if method == "INVITE" else TRYING
        self.callid = m[_CALL_ID]
        self.from_tag = m[_FROM_TAG]
        self.to_tag = m[_TO_TAG]
        self.cseq = m[_CSEQ]
        self.final_status = None
        self.final_reason = ""
        self.final_ts = None
        self.final_to_tag = ""
        # tuples, usually the shared empty one: most transactions never fork or relay
        self.extra_2xx_tags = ()
        self.upstream = None
        self.downstream = ()
        self.cancel = None
        self.invite = None
        self.retransmissions = 0
        self.call = None
        self.uris = None

    def request_uris(self) -> tuple:
        """($fU, $fd, $tU, $rU, $rd): the users and hosts of the request's From, To and
        request URI (uri.request_uris), as acc rows and CDRs write them. An INVITE's are kept:
        its acc row asks first, its call's CDR again a call's length later (parsing them twice
        cost 0.46 k instructions per SIP message of sig-only.pcap)."""
        uris = self.uris
        if uris is None:
            uris = _request_uris(self.from_value, self.to_value, self.uri)
            if self.method == "INVITE":
                self.uris = uris
        return uris

    def is_initial_invite(self) -> bool:
        """An INVITE outside any dialog: no To tag (section 12.1)."""
        return self.method == "INVITE" and not self.to_tag

    def winning_branch(self) -> "Transaction | None":
        """The relayed branch whose final reply this transaction passed upstream."""
        if not self.downstream:
            return None
        t: Transaction
        done = [t for t in self.downstream if t.final_status is not None]
        for t in done:
            if t.final_status == self.final_status and t.final_to_tag == self.final_to_tag:
                return t
        if done:
            return done[-1]
        return self.downstream[-1]


@cython.cfunc
@cython.inline
def _key(msg: tuple, method, branch: str, sent_by: str) -> tuple:
    """The key of the transaction a Via (its branch and sent-by) names for `msg`: the top Via
    for the message's own transaction, the second for the one a proxy relayed it from."""
    if sent_by is not None and ":" not in sent_by:
        # RFC 3261 section 18.2.1: no port means 5060, so "10.0.0.1" and "10.0.0.1:5060" name
        # one sender (a UA that drops the port in its CANCEL still cancels its INVITE). IPv6
        # sent-by is bracketed and always holds a colon; its port rarely goes missing.
        sent_by = sent_by + ":5060"
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    # RFC 2543 peers: match on Call-ID, CSeq number, From tag and the top Via (section 17.2.3).
    # The Via by sent-by and branch, not its whole text: a proxy adds ;received=/;rport= to it
    # in the copy it relays and in the responses it returns. Method last, as above, so that
    # key[:-1] + ("INVITE",) finds the INVITE a CANCEL aims at.
    return ("rfc2543", msg[_CALL_ID], msg[_CSEQ], msg[_FROM_TAG], sent_by, branch, method)


def _sent_by_port(msg: SipHead) -> int:
    """The port of the top Via's sent-by; its transport's default when absent (section 18.2.2)."""
    hp = msg.via_sent_by
    tail = hp[hp.rfind("]") + 1:] if hp.startswith("[") else (hp if hp.count(":") == 1 else "")
    port = tail.partition(":")[2]
    if port.isascii() and port.isdigit() and len(port) <= 5:
        return int(port)
    return 5061 if msg.via_transport in ("TLS", "WSS") else 5060


# The (ip, port) tuples transactions and SDP events share: most requests come from and go to
# a few addresses (the proxy's, a trunk's), and a tuple each is 56 bytes an open transaction
# twice over, and a call's SDP messages twice each (the call's transactions hold the same
# ones). A direct-mapped cache, one slot per hash: a hit is a list item and a comparison; a
# miss (every transaction of a flood from spoofed sources, or UAs each on its own address)
# costs a tuple and a slot overwritten, where a dict paid an insert and a clear when full.
ENDPOINT_SLOTS: cython.Py_ssize_t = 4096  # a power of two
_ENDPOINTS = [None] * ENDPOINT_SLOTS


@cython.ccall  # a C call from signalling.py too once compiled
def endpoint(ip, port) -> tuple:
    """(ip, port), shared with the other holders of the same address while it stays cached."""
    slots: list = _ENDPOINTS  # typed: items read in C
    i: cython.Py_ssize_t = (hash(ip) ^ hash(port)) & (ENDPOINT_SLOTS - 1)
    known = slots[i]
    if known is not None and cython.cast(tuple, known)[1] == port \
            and cython.cast(tuple, known)[0] == ip:
        return known
    known = slots[i] = (ip, port)
    return known


@cython.cfunc
@cython.inline
def _unlink(txn: Transaction) -> cython.void:
    """Cut the links that point back at a forgotten transaction's neighbours (its call, the
    transaction it was relayed from, the INVITE a CANCEL aimed at). No message reaches it any
    more, and without these cycles reference counting frees each call when it ends instead of
    leaving it to the cyclic collector, whose walks cost a replay seconds. The forward links
    (call.invite, invite.downstream) stay: CDRs read them when the call ends."""
    txn.call = txn.upstream = txn.invite = None


class TransactionLayer:
    """Matches messages into transactions and times out those left without a final reply."""

    c: object  # the Counters
    invite_timeout: cython.double  # after a 1xx (fr_inv_timer)
    no_reply_timeout: cython.double  # no reply at all (Timer B)
    max_transactions: cython.Py_ssize_t
    by_key: dict  # key -> Transaction
    forwarders: set  # (ip, port) seen relaying a request
    on_invite_timeout: object  # called with an INVITE that timed out or was evicted unanswered
    _open_invites: object  # deques of transactions, each in deadline order (see __init__)
    _proceeding: object  # INVITEs still open after no_reply_timeout that got a 1xx
    _open_others: object
    _finished: object
    next_sweep: cython.double
    __slots__ = ("c", "invite_timeout", "no_reply_timeout", "max_transactions", "by_key",
                 "forwarders", "on_invite_timeout", "_open_invites", "_proceeding",
                 "_open_others", "_finished", "next_sweep")

    def __init__(self, counters: Counters, *, invite_timeout: float = FR_INV_TIMER,
                 no_reply_timeout: float = TIMER_B, max_transactions: int = 200_000,
                 on_invite_timeout=None):
        self.c = counters
        self.invite_timeout = invite_timeout
        self.no_reply_timeout = no_reply_timeout
        self.max_transactions = max_transactions
        self.by_key = {}
        self.forwarders = set()
        self.on_invite_timeout = on_invite_timeout
        # transactions in arrival order, one queue per timeout so each stays sorted by its
        # deadline (computed from the transaction: _deadline); the queues also hold every
        # transaction in arrival order, which eviction uses. The transaction itself, not a
        # (deadline, key) tuple: 80 bytes less per entry, and no key reused by a later
        # transaction stands for an earlier one. A transaction forgotten before its entry
        # reaches the head lives until then (at most its timer).
        self._open_invites = deque()
        self._proceeding = deque()
        self._open_others = deque()
        self._finished = deque()
        self.next_sweep = 0.0

    def request(self, msg: SipHead, d: Datagram) -> Transaction | None:
        """The new transaction a request opens; None for a retransmission or an ACK."""
        txn: Transaction
        invite: Transaction
        up: Transaction
        m: tuple = cython.cast(tuple, msg)
        dt: tuple = cython.cast(tuple, d)
        ts = dt[_TS]
        if ts >= self.next_sweep:
            self.sweep(ts)
        branch = m[_VIA_BRANCH]
        if branch is None or m[_CSEQ] is None or not m[_CALL_ID]:
            self.c["sip.missing_mandatory_header"] += 1
            return None
        method = m[_METHOD]
        key = _key(m, "INVITE" if method == "ACK" else method, branch, m[_VIA_SENT_BY])
        by_key = self.by_key
        txn = by_key.get(key)
        if method == "ACK":
            if txn is not None and txn.final_status is not None and txn.final_status >= 300:
                txn.state = CONFIRMED  # ACK of a failure belongs to the INVITE (17.1.1.3)
                self.c["sip.ack_non2xx"] += 1
            else:
                self.c["sip.ack_2xx"] += 1  # its own transaction; nothing to account
            return None
        if txn is not None:
            txn.retransmissions += 1
            self.c["sip.request_retransmission"] += 1
            return None
        txn = Transaction(key, msg, d, method)
        if len(by_key) >= self.max_transactions:
            self._evict_oldest()
        by_key[key] = txn
        if method == "INVITE":
            self._open_invites.append(txn)
        else:
            self._open_others.append(txn)
        if method == "CANCEL":
            invite = by_key.get(key[:-1] + ("INVITE",))
            if invite is not None:
                invite.cancel, txn.invite = txn, invite
        branch2 = m[_VIA2_BRANCH]
        if branch2 is not None:
            up = by_key.get(_key(m, method, branch2, m[_VIA2_SENT_BY]))
            if up is not None and up is not txn and up.upstream is None:
                txn.upstream = up
                up.downstream += (txn,)
                self.forwarders.add((dt[_SRC], dt[_SPORT]))
                # over TCP/TLS a relay leaves from an ephemeral port: learn also the port the
                # proxy's own Via names (where it listens and answers from), or replies it
                # generates itself (a 404 after a failed lookup) would be accounted
                self.forwarders.add((dt[_SRC], _sent_by_port(msg)))
        return txn

    def response(self, msg: SipHead, d: Datagram) -> tuple[Transaction, str] | None:
        """(transaction, what it was): "provisional", "final", "retransmission" or "extra_2xx"."""
        txn: Transaction
        m: tuple = cython.cast(tuple, msg)
        dt: tuple = cython.cast(tuple, d)
        ts = dt[_TS]
        if ts >= self.next_sweep:
            self.sweep(ts)
        branch = m[_VIA_BRANCH]
        if branch is None or m[_CSEQ] is None:
            self.c["sip.missing_mandatory_header"] += 1
            return None
        txn = self.by_key.get(_key(m, m[_CSEQ_METHOD], branch, m[_VIA_SENT_BY]))
        if txn is None:
            self.c["state.orphan_response"] += 1  # its request came before the capture began
            return None
        status, to_tag = m[_STATUS], m[_TO_TAG]
        if status < 200:
            if txn.final_status is not None:
                self.c["state.late_provisional"] += 1
                return txn, "retransmission"
            txn.state = PROCEEDING
            return txn, "provisional"
        if txn.final_status is None:
            txn.final_status, txn.final_reason = status, m[_REASON] or ""
            txn.final_ts, txn.final_to_tag = ts, to_tag
            txn.state = TERMINATED if txn.method == "INVITE" and status < 300 else COMPLETED
            self._finished.append(txn)
            return txn, "final"
        if txn.method == "INVITE" and 200 <= status < 300 and txn.final_status < 300 \
                and to_tag != txn.final_to_tag and to_tag not in txn.extra_2xx_tags:
            txn.extra_2xx_tags += (to_tag,)
            return txn, "extra_2xx"
        self.c["sip.response_retransmission"] += 1
        return txn, "retransmission"

    def sweep(self, now: cython.double) -> None:
        """Forget finished transactions after LINGER; time out those with no final reply.
        Run at most every SWEEP_EVERY seconds of packet time: the timers are seconds long."""
        txn: Transaction
        self.next_sweep = now + SWEEP_EVERY
        by_key = self.by_key
        finished = self._finished
        final_ts: cython.double  # C doubles: no float boxed per comparison
        deadline: cython.double
        drop = finished.popleft  # bound once: a deque's methods are looked up by name
        while finished:
            txn = finished[0]
            final_ts = txn.final_ts  # set: only finished transactions are queued here
            if not final_ts + LINGER < now:
                break
            drop()
            if now - final_ts > LINGER:
                # one hash of the key, not two (get, then del): the key is cold by now
                known = by_key.pop(txn.key, None)
                if known is txn:
                    _unlink(txn)
                elif known is not None:
                    by_key[txn.key] = known  # a later transaction under the same key stays
        queue_index: cython.int
        for queue_index in range(3):
            queue = (self._open_invites, self._proceeding, self._open_others)[queue_index]
            while queue:
                txn = queue[0]
                deadline = self._deadline(queue_index, txn)
                if not deadline < now:
                    break
                queue.popleft()
                if by_key.get(txn.key) is not txn or txn.final_ts is not None:
                    continue  # forgotten, or finished (then in _finished)
                if queue_index == 0 and txn.state == PROCEEDING:
                    # a 1xx came: it waits for fr_inv_timer (requeued in arrival order, so
                    # _proceeding stays sorted; only INVITEs this slow ever get there)
                    self._proceeding.append(txn)
                else:
                    del by_key[txn.key]
                    self.c["state.transaction_timeout"] += 1
                    self._forget_open(txn, deadline - TIMER_SLACK, False)

    def _deadline(self, queue_index: cython.int, txn: Transaction) -> cython.double:
        """When the transaction at the head of a queue times out: Timer B (no reply), then
        fr_inv_timer (a 1xx came), for INVITEs, each TIMER_SLACK after the proxy's; Timer F
        for the others."""
        if queue_index == 0:
            return txn.created + self.no_reply_timeout + TIMER_SLACK
        if queue_index == 1:
            return txn.created + self.invite_timeout + TIMER_SLACK
        return txn.created + TIMER_F

    def _forget_open(self, txn: Transaction, when: cython.double, evicted: cython.bint) -> None:
        """A transaction left without a final reply (timed out at `when`, or evicted): an
        INVITE's handler hears of it (its call ends as the proxy would end it), then it is
        unlinked."""
        if txn.method == "INVITE" and self.on_invite_timeout is not None:
            self.on_invite_timeout(txn, when, evicted)
        _unlink(txn)

    def _evict_oldest(self) -> None:
        """At the cap: forget one transaction, in O(1). Finished ones go first (they only wait
        to recognise retransmissions), then the oldest open one. The deadline queues hold every
        transaction in arrival order; heads whose transaction is gone are dropped on the way
        (next(iter(by_key)) walked the deleted slots at the front of the dict: 30 times slower
        in a flood of INVITEs)."""
        txn: Transaction
        oldest: Transaction = None
        by_key = self.by_key
        finished = self._finished
        while finished:
            txn = finished.popleft()
            if by_key.get(txn.key) is txn and txn.final_ts is not None:
                del by_key[txn.key]
                self.c["state.transaction_evicted"] += 1
                _unlink(txn)
                return
        pick = None
        for queue in (self._open_invites, self._proceeding, self._open_others):
            while queue:
                txn = queue[0]
                if by_key.get(txn.key) is not txn or txn.final_ts is not None:
                    queue.popleft()  # gone, or finished (then in _finished)
                    continue
                if oldest is None or txn.created < oldest.created:
                    oldest, pick = txn, queue
                break
        self.c["state.transaction_evicted"] += 1
        if oldest is None:  # not reached: every transaction is in a queue
            _unlink(by_key.pop(next(iter(by_key))))
            return
        pick.popleft()
        del by_key[oldest.key]
        self._forget_open(oldest, oldest.created, True)

    def close(self) -> None:
        """End of input: transactions still waiting for a final reply are counted."""
        txn: Transaction
        open_at_end = 0
        for txn in self.by_key.values():
            open_at_end += txn.final_ts is None
            _unlink(txn)
        self.c["state.transaction_open_at_end"] += open_at_end
        self.by_key.clear()
