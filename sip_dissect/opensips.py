"""OpenSIPS 3.x acc rows: what `do_accounting("db", "cdr|missed")` (and `|failed` with
--failed-transaction) on every initial INVITE writes into OpenSIPS' `acc` and `missed_calls`.

Settled from OpenSIPS' source (modules/acc, commit 8f4f1e1b, 2026-08-20; docs/opensips.md):
- answered call, CDR mode: no row at the 2xx. acc_logic.c `acc_onreply` stores the INVITE's
  core values (method, From tag, the 2xx's To tag, Call-ID, code, reason) and the moment the
  2xx goes upstream; `acc_dlg_ended` takes the BYE's arrival; acc.c `acc_db_cdrs` writes one
  acc row when the BYE is replied: time = the 2xx, ms_duration = BYE - 2xx in whole ms
  (TIMEVAL_MS_DIFF truncates), duration = ceil(ms_duration / 1000), setuptime =
  floor(2xx) - created, created = time(NULL) at do_accounting (the INVITE, whole seconds);
- the BYE has no row of its own (the BYE transaction carries only the CDR callback);
- failed INVITE (>= 300): acc_logic.c `on_missed` writes a missed_calls row (acc.c
  `acc_db_request`: time = the failure, setuptime = floor(failure) - created, created); with
  `failed` also an acc row (duration and ms_duration 0);
- a call still open at the end, or expired: no row here (OpenSIPS writes it at its own
  dialog timeout, which sipprobe's --dialog-timeout does not reproduce).
Which transactions count is Kamailio's rule (accounting.Accountant.is_accounted: the proxy's
upstream view of what it relayed); the extras are the Kamailio flavour's, as acc_extra.
"""
from __future__ import annotations

import math

from store.tables import COMPLETED

from .accounting import Accountant, AccOptions, ProxySet
from .events import Subscriber
from .records import OpensipsAccRecord, OpensipsMissedRecord, new_record

_MISSED, _ACC = "missed_calls", "acc"


def _us(epoch: float) -> int:
    """Epoch seconds as whole microseconds: OpenSIPS' struct timeval."""
    return round(epoch * 1_000_000)


def cdr_figures(answer: float, bye: float, created: float) -> tuple[int, int, int]:
    """(duration, ms_duration, setuptime) as acc.c's acc_db_cdrs computes them."""
    ms = max(_us(bye) - _us(answer), 0) // 1000  # TIMEVAL_MS_DIFF: unsigned, truncated
    return -(-ms // 1000), ms, setuptime(answer, created)


def setuptime(reply: float, created: float) -> int:
    """acc's setuptime: the final reply's second minus the INVITE's (whole seconds)."""
    return math.floor(reply) - math.floor(created)


class OpensipsAccWriter(Subscriber):
    """OpenSIPS' acc and missed_calls records into `sink` (the store's add_row, or a list)."""

    def __init__(self, proxies: ProxySet, sink, failed: bool = False):
        # Kamailio's accountant gives the INVITE's row (its columns are OpenSIPS' core ones
        # plus the extras); `failed` is its failed_transaction
        self.accountant = Accountant(AccOptions(failed_transaction=failed), proxies)
        self.sink = sink
        self.answered: dict[tuple[str, str], tuple] = {}  # call -> (2xx row, INVITE time)

    def transaction_final(self, txn, call) -> None:
        if txn.method != "INVITE":
            return  # BYE: only the CDR's end (call_ended)
        for rec in self.accountant.on_final(txn):
            if rec[0] == _MISSED:
                self.sink(self._failure(OpensipsMissedRecord, rec, txn.created, ()))
            elif rec.sip_code >= "3":  # `failed`: the failure in acc too, no duration
                self.sink(self._failure(OpensipsAccRecord, rec, txn.created, (0, 0)))
            elif call is not None:  # answered: the row waits for the BYE
                self.answered[(call.callid, call.caller_tag)] = (rec, txn.created)

    def call_ended(self, call) -> None:
        kept = self.answered.pop((call.callid, call.caller_tag), None)
        if kept is None or call.end_reason != COMPLETED:
            return
        rec, created = kept
        duration, ms, setup = cdr_figures(rec.time, call.end_time, created)
        self.sink(new_record(OpensipsAccRecord, (
            *rec[1:8], duration, ms, setup, created, *rec[8:])))

    @staticmethod
    def _failure(cls, rec, created: float, durations: tuple):
        return new_record(cls, (*rec[1:8], *durations, setuptime(rec.time, created), created,
                                *rec[8:]))
