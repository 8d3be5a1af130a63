"""SIP messages in, accounting records out: parse, transactions, dialogs, acc policy."""
from __future__ import annotations

from typing import Callable

from probe.counters import Counters
from probe.records import Datagram

from .accounting import AccOptions, Accountant, ProxySet
from .dialog import Call, DialogLayer
from .records import AccRecord
from .scan import (ANOMALIES, BODY, CONTENT_LENGTH, METHOD, REASON, STATUS, TO_TAG, scan_native,
                   scan_py)
from .transaction import TransactionLayer


class Signalling:
    """Feeds SIP datagrams through the layers; `sink` receives each AccRecord, `on_call_end`
    each finished Call."""

    def __init__(self, counters: Counters, sink: Callable[[AccRecord], None], *,
                 acc_options: AccOptions = AccOptions(), proxies: ProxySet | None = None,
                 dialog_timeout: float = 7200.0, invite_timeout: float = 300.0,
                 on_call_end: Callable[[Call], None] | None = None):
        self.c = counters
        self.sink = sink
        self.proxies = proxies if proxies is not None else ProxySet()
        self.transactions = TransactionLayer(counters, invite_timeout=invite_timeout)
        self.proxies.learned = self.transactions.forwarders
        self.dialogs = DialogLayer(counters, dialog_timeout=dialog_timeout, on_end=on_call_end)
        self.accountant = Accountant(acc_options, self.proxies)
        self.early_media = acc_options.early_media
        self.messages = 0  # SIP messages added (malformed ones are counted apart, by reason)

    def add(self, d: Datagram) -> None:
        # One flat method: it runs for every SIP message.
        payload = d.payload
        msg = scan_native(payload) or scan_py(payload)  # None: the C scanner handed over
        if msg.__class__ is str:  # malformed: the reason is a counter name
            if payload.strip(b" \t\r\n\x00"):
                self.c[msg] += 1
            else:
                self.c["sip.keepalive"] += 1
            return
        self.messages += 1
        ts = d.ts
        dialogs = self.dialogs
        if ts >= dialogs.next_sweep:
            dialogs.sweep(ts)
        if msg[ANOMALIES]:  # indexes: a tuple item costs less than a NamedTuple field name
            for a in msg[ANOMALIES]:
                self.c[a] += 1
        content_length = msg[CONTENT_LENGTH]
        if content_length is not None and d.transport == "udp":
            # Over UDP the datagram bounds the message (RFC 3261 section 18.3), so a wrong
            # Content-Length is only counted; the message is still used, as proxies do.
            if content_length < 0:
                self.c["sip.bad_content_length"] += 1
            elif content_length != len(msg[BODY]):
                self.c["sip.content_length_mismatch"] += 1
        if msg[METHOD] is not None:
            txn = self.transactions.request(msg, d)
            if txn is None:
                return
            if txn.is_initial_invite:
                if txn.upstream is None and not self.proxies.holds(txn.src):
                    # the proxy received it from a client: not a relayed copy, not its own
                    txn.call = dialogs.initial_invite(txn)
            elif txn.upstream is None:
                if txn.method == "BYE":
                    call = dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
                    if call is not None:
                        txn.call = call
                        dialogs.bye(call, txn, sent_by_proxy=self.proxies.holds(txn.src))
                elif txn.to_tag:
                    # any other in-dialog request (re-INVITE, UPDATE, INFO) shows the dialog
                    # alive: without this a call refreshed by session timers expired after
                    # dialog_timeout (Kamailio's dialog timer is reset by in-dialog requests,
                    # timeout_noreset=0)
                    call = dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
                    if call is not None:
                        call.last_activity = ts
            return
        found = self.transactions.response(msg, d)
        if found is None:
            return
        txn, kind = found
        call = txn.call
        if kind == "provisional":
            if call is not None and txn.method == "INVITE":
                status, to_tag = msg[STATUS], msg[TO_TAG]
                dialogs.provisional(call, txn, status, to_tag, ts)
                if self.early_media:
                    for rec in self.accountant.on_early_media(txn, status, msg[REASON] or "", ts,
                                                              to_tag):
                        self.sink(rec)
        elif kind == "final":
            for rec in self.accountant.on_final(txn, call.confirmed_tag if call is not None
                                                else ""):
                self.sink(rec)
            if call is not None and txn.method == "INVITE":
                dialogs.final(call, txn)
        elif kind == "extra_2xx":
            self.c["sip.forked_2xx"] += 1

    def close(self) -> None:
        self.transactions.close()
        self.dialogs.close()
