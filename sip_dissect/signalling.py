"""SIP messages in, events out: parse, transactions (RFC 3261 s17), dialogs (s12).

Accounting and media subscribe to the events (sip_dissect.events); this module decides
nothing about rows.
"""
from __future__ import annotations

import cython

from probe import records
from probe.counters import Counters
from probe.records import Datagram

from .accounting import ProxySet
from .dialog import Call, DialogLayer
from .events import Publisher, SdpSeen
from .records import new_record
from . import scan
from .scan import scan_native, scan_py
from .transaction import FR_INV_TIMER, TIMER_B, Transaction, TransactionLayer, endpoint

# positions in a SipHead and a Datagram: C indexes once compiled (native/pxdgen.py)
_ANOMALIES: cython.Py_ssize_t = scan.ANOMALIES
_BODY: cython.Py_ssize_t = scan.BODY
_CSEQ: cython.Py_ssize_t = scan.CSEQ
_CONTENT_LENGTH: cython.Py_ssize_t = scan.CONTENT_LENGTH
_METHOD: cython.Py_ssize_t = scan.METHOD
_REASON: cython.Py_ssize_t = scan.REASON
_STATUS: cython.Py_ssize_t = scan.STATUS
_TO_TAG: cython.Py_ssize_t = scan.TO_TAG
_TS: cython.Py_ssize_t = records.D_TS
_TRANSPORT: cython.Py_ssize_t = records.D_TRANSPORT
_PAYLOAD: cython.Py_ssize_t = records.D_PAYLOAD
_FRAME: cython.Py_ssize_t = records.D_FRAME
_SRC: cython.Py_ssize_t = records.D_SRC
_DST: cython.Py_ssize_t = records.D_DST
_SPORT: cython.Py_ssize_t = records.D_SPORT
_DPORT: cython.Py_ssize_t = records.D_DPORT


@cython.cfunc
@cython.inline
def _is_sdp(body: bytes) -> cython.bint:
    """The body is a session description (RFC 4566 section 5: it starts with v=)."""
    return len(body) > 1 and body[0] == 118 and body[1] == 61  # b"v="


class Signalling:
    """Feeds SIP datagrams through the transaction and dialog layers and publishes what
    happens to `events`' subscribers (acc rows, CDRs, media). The handlers are read from
    `events` once, here: subscribe before building it."""

    c: object  # the Counters
    proxies: ProxySet
    transactions: TransactionLayer
    dialogs: DialogLayer
    messages: cython.Py_ssize_t  # SIP messages added (malformed ones are counted apart)
    on_sdp: tuple  # events' handlers, read per message
    on_final: tuple
    on_provisional: tuple
    __slots__ = ("c", "proxies", "transactions", "dialogs", "messages", "on_sdp", "on_final",
                 "on_provisional")

    def __init__(self, counters: Counters, events: Publisher, *,
                 proxies: ProxySet | None = None, dialog_timeout: float = 7200.0,
                 invite_timeout: float = FR_INV_TIMER, no_reply_timeout: float = TIMER_B,
                 max_calls: int = 200_000, max_transactions: int = 200_000):
        self.c = counters
        self.proxies = proxies if proxies is not None else ProxySet()
        self.dialogs = DialogLayer(counters, dialog_timeout=dialog_timeout, events=events,
                                   max_calls=max_calls)
        # an initial INVITE that times out ends its call (dialog.py); getattr: the Python
        # bound method (Cython would wrap the C method pointer of the cpdef in a closure)
        self.transactions = TransactionLayer(
            counters, invite_timeout=invite_timeout, no_reply_timeout=no_reply_timeout,
            max_transactions=max_transactions,
            on_invite_timeout=getattr(self.dialogs, "invite_timed_out"))
        self.proxies.learned = self.transactions.forwarders
        self.messages = 0
        self.on_sdp = events.sdp_seen
        self.on_final = events.transaction_final
        self.on_provisional = events.provisional

    def add(self, d: Datagram) -> None:
        # One flat method: it runs for every SIP message.
        txn: Transaction
        call: Call
        dialogs: DialogLayer
        dt: tuple = cython.cast(tuple, d)  # indexed as a tuple: see transaction.py
        payload: bytes = dt[_PAYLOAD]
        msg = scan_native(payload) or scan_py(payload)  # None: the C scanner handed over
        if type(msg) is str:  # malformed: the reason is a counter name (type(): a C pointer test)
            if payload.strip(b" \t\r\n\x00"):
                self.c[msg] += 1
            else:
                self.c["sip.keepalive"] += 1
            return
        self.messages += 1
        m: tuple = cython.cast(tuple, msg)
        ts = dt[_TS]
        dialogs = self.dialogs
        if ts >= dialogs.next_sweep:
            dialogs.sweep(ts)
        if m[_ANOMALIES]:  # indexes: a tuple item costs less than a NamedTuple field name
            for a in m[_ANOMALIES]:
                self.c[a] += 1
        body: bytes = m[_BODY]
        content_length = m[_CONTENT_LENGTH]
        if content_length is not None and dt[_TRANSPORT] == "udp":
            # Over UDP the datagram bounds the message (RFC 3261 section 18.3), so a wrong
            # Content-Length is only counted; the message is still used, as proxies do.
            if content_length < 0:
                self.c["sip.bad_content_length"] += 1
            elif content_length != len(body):
                self.c["sip.content_length_mismatch"] += 1
        if m[_METHOD] is not None:
            txn = self.transactions.request(msg, d)
            if txn is None:
                if self.on_sdp and m[_METHOD] == "ACK" and _is_sdp(body):
                    self._ack_sdp(msg, d)  # the answer to a 2xx's offer (s13.2.1)
                return
            if txn.is_initial_invite():
                if txn.upstream is None and not self.proxies.holds(txn.src):
                    # the proxy received it from a client: not a relayed copy, not its own
                    txn.call = dialogs.initial_invite(txn)
            elif txn.upstream is None:
                if txn.method == "BYE":
                    call = dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
                    if call is not None:
                        txn.call = call
                        dialogs.bye(call, txn, self.proxies.holds(txn.src))
                elif txn.to_tag:
                    # any other in-dialog request (re-INVITE, UPDATE, INFO) shows the dialog
                    # alive: without this a call refreshed by session timers expired after
                    # dialog_timeout (Kamailio's dialog timer is reset by in-dialog requests,
                    # timeout_noreset=0)
                    call = dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
                    if call is not None:
                        call.last_activity = ts
            if self.on_sdp and _is_sdp(body):
                self._sdp(txn, msg, d, None)
            return
        found = self.transactions.response(msg, d)
        if found is None:
            return
        txn, kind = found
        if self.on_sdp and kind != "retransmission" and _is_sdp(body):
            self._sdp(txn, msg, d, m[_STATUS])
        call = txn.call
        if kind == "provisional":
            if call is not None and txn.method == "INVITE":
                status, to_tag = m[_STATUS], m[_TO_TAG]
                dialogs.provisional(call, txn, status, to_tag, ts)
                for handler in self.on_provisional:
                    handler(txn, call, status, m[_REASON] or "", ts, to_tag)
        elif kind == "final":
            for handler in self.on_final:
                handler(txn, call)
            if call is not None and txn.method == "INVITE":
                dialogs.final(call, txn)
        elif kind == "extra_2xx":
            self.c["sip.forked_2xx"] += 1

    def _sdp(self, txn: Transaction, msg, d: Datagram, status) -> None:
        """Publish a session description of a call: on the initial INVITE's transaction, its
        relayed copies (leg B) or an in-dialog request (re-INVITE, UPDATE, PRACK)."""
        root: Transaction = txn
        call: Call
        while root.upstream is not None:
            root = root.upstream
        call = root.call
        if call is None:
            call = self.dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
            if call is None:
                return
        by_requester = txn.from_tag == call.caller_tag
        dt: tuple = cython.cast(tuple, d)
        m: tuple = cython.cast(tuple, msg)
        seen = new_record(SdpSeen, (dt[_TS], dt[_FRAME], "A" if root is txn else "B",
                                    by_requester if status is None else not by_requester,
                                    txn.method, status, endpoint(dt[_SRC], dt[_SPORT]),
                                    endpoint(dt[_DST], dt[_DPORT]), m[_CSEQ], m[_BODY]))
        for handler in self.on_sdp:
            handler(call, seen)

    def _ack_sdp(self, msg, d: Datagram) -> None:
        call = self.dialogs.find(msg.call_id, msg.from_tag, msg.to_tag)
        if call is not None:
            seen = new_record(SdpSeen, (d.ts, d.frame,
                                        "B" if msg.via2_branch is not None else "A",
                                        msg.from_tag == call.caller_tag, "ACK", None,
                                        endpoint(d.src, d.sport), endpoint(d.dst, d.dport),
                                        msg.cseq, msg.body))
            for handler in self.on_sdp:
                handler(call, seen)

    def close(self) -> None:
        self.transactions.close()
        self.dialogs.close()
