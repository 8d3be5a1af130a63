"""SIP messages in, accounting records out: parse, transactions, dialogs, acc policy."""
from __future__ import annotations

from typing import Callable

from probe.counters import Counters
from probe.records import Datagram

from .accounting import AccOptions, Accountant, ProxySet
from .dialog import Call, DialogLayer
from .records import AccRecord
from .scan import SipHead, scan
from .transaction import Layer, Transaction


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
        self.transactions = Layer(counters, invite_timeout=invite_timeout)  # C twin when built
        self.proxies.learned = self.transactions.forwarders
        self.dialogs = DialogLayer(counters, dialog_timeout=dialog_timeout, on_end=on_call_end)
        self.accountant = Accountant(acc_options, self.proxies)
        self.early_media = acc_options.early_media
        self.messages = 0

    def add(self, d: Datagram) -> None:
        msg = scan(d.payload)
        if msg.__class__ is str:  # malformed: the reason is a counter name
            if d.payload.strip(b" \t\r\n\x00"):
                self.c[msg] += 1
            else:
                self.c["sip.keepalive"] += 1
            return
        self.messages += 1
        if d.ts >= self.dialogs.next_sweep:
            self.dialogs.sweep(d.ts)
        if msg.anomalies:
            for a in msg.anomalies:
                self.c[a] += 1
        if msg.content_length is not None and d.transport == "udp":
            # Over UDP the datagram bounds the message (RFC 3261 section 18.3), so a wrong
            # Content-Length is only counted; the message is still used, as proxies do.
            if msg.content_length < 0:
                self.c["sip.bad_content_length"] += 1
            elif msg.content_length != len(msg.body):
                self.c["sip.content_length_mismatch"] += 1
        if msg.method is not None:
            self._request(msg, d)
        else:
            self._response(msg, d)

    def _is_upstream(self, txn: Transaction) -> bool:
        """The proxy received it from a client (not a relayed copy, not proxy-originated)."""
        return txn.upstream is None and txn.src not in self.proxies

    def _request(self, msg: SipHead, d: Datagram) -> None:
        txn = self.transactions.request(msg, d)
        if txn is None:
            return
        if txn.is_initial_invite:
            if self._is_upstream(txn):
                txn.call = self.dialogs.initial_invite(txn)
        elif txn.method == "BYE" and txn.upstream is None:
            call = self.dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
            if call is not None:
                txn.call = call
                self.dialogs.bye(call, txn, sent_by_proxy=txn.src in self.proxies)
        elif txn.to_tag and txn.upstream is None:
            # any other in-dialog request (re-INVITE, UPDATE, INFO) shows the dialog alive:
            # without this a call refreshed by session timers expired after dialog_timeout
            # (Kamailio's dialog timer is reset by in-dialog requests, timeout_noreset=0)
            call = self.dialogs.find(txn.callid, txn.from_tag, txn.to_tag)
            if call is not None:
                call.last_activity = d.ts

    def _response(self, msg: SipHead, d: Datagram) -> None:
        found = self.transactions.response(msg, d)
        if found is None:
            return
        txn, kind = found
        call = txn.call
        if kind == "provisional":
            if call is not None and txn.method == "INVITE":
                to_tag = msg.to_tag
                self.dialogs.provisional(call, txn, msg.status, to_tag, d.ts)
                if self.early_media:
                    for rec in self.accountant.on_early_media(txn, msg.status, msg.reason or "",
                                                              d.ts, to_tag):
                        self.sink(rec)
        elif kind == "final":
            callee_tag = call.confirmed_tag if call is not None else ""
            for rec in self.accountant.on_final(txn, callee_tag):
                self.sink(rec)
            if call is not None and txn.method == "INVITE":
                self.dialogs.final(call, txn)
        elif kind == "extra_2xx":
            self.c["sip.forked_2xx"] += 1

    def close(self) -> None:
        self.transactions.close()
        self.dialogs.close()
