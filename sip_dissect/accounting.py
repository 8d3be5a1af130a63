"""Which transactions become acc and missed_calls rows, as Kamailio's acc module decides.

Default policy: a stock kamailio.cfg with database accounting (WITH_ACCDB), as checked against
a real Kamailio 5.6 in lab/ (see lab/README.md for each fact):
- an initial INVITE answered 2xx gives an `acc` row; one that fails (3xx-6xx, 487 after
  CANCEL included) gives a `missed_calls` row, except 401/407 challenges;
- a BYE gives an `acc` row whatever its final reply (failed_transaction flag on BYE);
- re-INVITEs, CANCEL, ACK and other methods give nothing;
- only transactions the proxy relayed are accounted: a reply the proxy generates itself
  before relaying (a stateless 404, an auth challenge) leaves no row.
With `missed_local_replies` (a script that sets the missed-call flag before routing, lab
variant WITH_MISSED_EARLY) the proxy's own negative final reply to an initial INVITE is a
missed call too, when it was sent statefully: acc registers its tm callbacks when the
transaction is created (acc_logic.c acc_onreq), so a stateless sl reply never reaches it.
Kamailio's To tags tell them apart: MD5 hex, then '-' from tm, '.' from sl (tags.h
init_tags; tm/config.h TM_TAG_SEPARATOR, sl/sl_funcs.h SL_TOTAG_SEPARATOR).
Serial forking (failure_route relays to a new destination after an attempt failed): acc
writes the missed call when the first attempt fails (tm's TMCB_ON_FAILURE, acc_logic.c
on_missed) and resets the flag, so the row is that attempt's reply, whatever follows (lab
serial-reject, serial-answer); with `missed_per_branch` (the script sets the flag again in
failure_route, as the acc docs advise for serial forking) every failed attempt is a row (lab
missed-per-branch-serial-*). Parallel branches of one attempt fail together: one row.
The row is the proxy's view of its upstream (server) transaction: the request as the proxy
received it, the final reply it relayed back (time, code, reason), and the request-URI as it
forwarded it ($rU/$rd after rewriting). Without a proxy in the capture, every transaction is
accounted as seen.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Collection

import cython

from .dialog import CHALLENGES
from .records import CODE_TEXT, AccRecord, new_record
from .transaction import Transaction
from .uri import uri_parts


@dataclass(frozen=True)
class AccOptions:
    """The acc module parameters that change what is written (Kamailio names)."""

    report_cancels: bool = False  # CANCEL transactions get acc rows
    early_media: bool = False  # a 183 relayed upstream gives an acc row
    failed_transaction: bool = False  # failed initial INVITEs also go to acc
    detect_direction: bool = False  # a callee's BYE is written with the caller's direction
    methods: frozenset = field(default_factory=frozenset)  # more methods to account (2xx)
    missed_local_replies: bool = False  # missed-call flag set before routing: own replies count
    missed_per_branch: bool = False  # failure_route sets the missed-call flag again


# the To tag Kamailio's sl module puts on a stateless reply: 32 hex digits of MD5, '.', the
# 8-hex CRC of the request's Via and Call-ID (core/tags.h)
STATELESS_TAG = re.compile(r"[0-9a-f]{32}\.[0-9a-f]{8}")


class ProxySet:
    """The proxy addresses: given (`--proxy IP[:PORT]`) and learned from relayed requests.
    An extension type once compiled: holds() is then a C call on its sets."""

    given_ips: set
    given: set
    _learned: set
    __slots__ = ("given_ips", "given", "_learned")

    def __init__(self, given: Collection[tuple[str, int | None]] = ()):
        self.given_ips = {ip for ip, port in given if port is None}
        self.given = {(ip, port) for ip, port in given if port is not None}
        self._learned = set()

    @property
    def learned(self) -> set[tuple[str, int]]:
        return self._learned

    @learned.setter
    def learned(self, endpoints: set[tuple[str, int]]) -> None:
        """The set the transaction layer adds the proxies it learns to (it shares its own)."""
        self._learned = endpoints

    def holds(self, endpoint: tuple) -> bool:
        """Whether `endpoint` (ip, port) is a proxy's; runs a few times per call. With nothing
        given (the usual case) one membership test of the learned set."""
        if endpoint in self._learned:
            return True
        if not self.given and not self.given_ips:
            return False
        return endpoint in self.given or endpoint[0] in self.given_ips

    def __contains__(self, endpoint: tuple[str, int]) -> bool:
        """Whether `endpoint` is a proxy's (as holds())."""
        return self.holds(endpoint)

    def describe(self) -> list[str]:
        """The proxies as --proxy takes them back: IP:PORT, [IPv6]:PORT, or a bare IP."""
        return sorted([f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                       for ip, port in self.given | self.learned] +
                      [ip for ip in self.given_ips])


def _pick_prio(code: int) -> int:
    """tm's preference among an attempt's failed branches (t_reply.c get_prio): 6xx first,
    then 3xx, 4xx, 5xx, the lower code first within a class."""
    return (0 if code >= 600 else code // 100 * 1000) + code % 100


def failed_attempts(txn) -> list:
    """For each serial attempt before the last (all its branches failed before the next
    attempt was relayed), the branch whose reply acc reports, in order."""
    picked = []
    attempt: list = []
    for branch in sorted(txn.downstream, key=lambda b: b.created):
        if attempt and all(b.final_status is not None and b.final_status >= 300
                           and b.final_ts <= branch.created for b in attempt):
            picked.append(min(attempt, key=lambda b: _pick_prio(b.final_status)))
            attempt = []
        attempt.append(branch)
    return picked


class Accountant:
    """Turns finished transactions into AccRecords.

    An extension type once compiled (native/pxdgen.py): its fields are C struct members and
    its methods C calls, where a plain class paid a lookup by name for each (0.4 k
    instructions per SIP message of sig-only.pcap). Status codes and times are left
    unannotated: None-free C types would change what a None does."""

    options: object  # AccOptions
    proxies: ProxySet
    __slots__ = ("options", "proxies")

    def __init__(self, options: AccOptions, proxies: ProxySet):
        self.options = options
        self.proxies = proxies

    def is_accounted(self, txn: Transaction) -> bool:
        """The proxy's upstream view only: not a relayed copy, not sent by the proxy, and
        relayed onwards whenever the proxy is the one that received it."""
        proxies = self.proxies
        if txn.upstream is not None or proxies.holds(txn.src):
            return False
        if proxies.holds(txn.dst):
            relayed = txn.invite if txn.method == "CANCEL" else txn
            if relayed is not None and relayed.downstream:
                return True
            return self.options.missed_local_replies and self.is_local_missed(txn)
        return True

    def is_local_missed(self, txn: Transaction) -> bool:
        """A negative final reply the proxy sent itself, statefully, to an INVITE."""
        return (txn.method == "INVITE" and (txn.final_status or 0) >= 300
                and STATELESS_TAG.fullmatch(txn.final_to_tag or "") is None)

    def on_final(self, txn: Transaction, callee_tag: str = "") -> list[AccRecord]:
        if not self.is_accounted(txn):
            return []
        o, status, method = self.options, txn.final_status, txn.method
        if method == "INVITE":
            if not txn.is_initial_invite():
                return []  # re-INVITE: stock flags account the initial INVITE only
            rows = self._failed_attempts(txn) if len(txn.downstream) > 1 else []
            if status < 300:
                return rows + [self._row("acc", txn, status, txn.final_reason, txn.final_ts)]
            if status in CHALLENGES:
                return rows
            if not rows or o.missed_per_branch:  # else the flag went with the first attempt
                rows.append(self._row("missed_calls", txn, status, txn.final_reason,
                                      txn.final_ts))
            if o.failed_transaction:
                rows.append(self._row("acc", txn, status, txn.final_reason, txn.final_ts))
            return rows
        if method == "BYE":
            return [self._row("acc", txn, status, txn.final_reason, txn.final_ts,
                              swap=o.detect_direction and callee_tag and txn.from_tag == callee_tag)]
        if method == "CANCEL" and o.report_cancels:
            return [self._row("acc", txn, status, txn.final_reason, txn.final_ts)]
        if method in o.methods and (status < 300 or o.failed_transaction):
            return [self._row("acc", txn, status, txn.final_reason, txn.final_ts)]
        return []

    def _failed_attempts(self, txn: Transaction) -> list[AccRecord]:
        """The missed_calls rows of the serial attempts that failed before the last one."""
        rows = []
        for branch in failed_attempts(txn):
            if branch.final_status in CHALLENGES:
                continue
            rows.append(self._row("missed_calls", txn, branch.final_status, branch.final_reason,
                                  branch.final_ts, swap=False, to_tag=branch.final_to_tag,
                                  branch=branch))
            if not self.options.missed_per_branch:
                break
        return rows

    def on_early_media(self, txn: Transaction, status, reason: str, ts,
                       to_tag: str) -> list[AccRecord]:
        if not (self.options.early_media and status == 183 and txn.is_initial_invite()
                and self.is_accounted(txn)):
            return []
        return [self._row("acc", txn, status, reason, ts, swap=False, to_tag=to_tag)]

    def _row(self, table: str, txn: Transaction, status, reason: str, ts,
             swap: cython.bint = False, to_tag: object = None,  # str | None
             branch: Transaction | None = None) -> AccRecord:
        src_user, src_domain, dst_ouser, dst_user, dst_domain = txn.request_uris()
        if txn.downstream:  # relayed: $rU/$rd as the proxy forwarded the request
            if branch is None:
                branch = txn.winning_branch()
            ruri = uri_parts(branch.uri or "")
            dst_user, dst_domain = ruri.user, ruri.host
        from_tag = txn.from_tag
        to_tag = to_tag if to_tag is not None else (txn.final_to_tag or txn.to_tag)
        if swap:  # detect_direction: tags as the caller's side would write them
            from_tag, to_tag = to_tag, from_tag
        codes: dict = CODE_TEXT  # typed: dict.get in C, not a method looked up by name
        code = codes.get(status) or f"{status:03d}"
        # in AccRecord's field order (see records.new_record)
        return new_record(AccRecord, (
            table, txn.method, from_tag, to_tag, txn.callid, code, reason, ts,
            src_user, src_domain, txn.src[0], dst_ouser, dst_user, dst_domain, txn.cseq))


class AccWriter:
    """The acc and missed_calls rows of the transactions the signalling layer finishes, into
    `sink` (the store, or a list). A subscriber of sip_dissect.events (Publisher takes the
    events a class defines) without Subscriber as its base: an extension type once compiled,
    whose fields are C struct members."""

    accountant: Accountant
    sink: object
    __slots__ = ("accountant", "sink")

    def __init__(self, accountant: Accountant, sink):
        self.accountant = accountant
        self.sink = sink

    def transaction_final(self, txn, call) -> None:
        for rec in self.accountant.on_final(txn, call.confirmed_tag if call is not None else ""):
            self.sink(rec)


class EarlyMediaAccWriter(AccWriter):
    """AccWriter with acc's early_media: a 183 relayed upstream is a row too. Apart, so that
    without the option no 1xx reaches accounting."""

    def provisional(self, txn, call, status: int, reason: str, ts: float, to_tag: str) -> None:
        for rec in self.accountant.on_early_media(txn, status, reason, ts, to_tag):
            self.sink(rec)


def acc_writer(options: AccOptions, proxies: ProxySet, sink) -> AccWriter:
    """The acc subscriber for these options."""
    cls = EarlyMediaAccWriter if options.early_media else AccWriter
    return cls(Accountant(options, proxies), sink)
