"""Whose accounting a run reproduces (--flavour): the policy chosen once per run.

A flavour gives the acc subscriber of the call events, the store method its records go to, the
name of the table a record counts in, whether dialog CDRs (acc_cdrs) are written, and the
layouts of its file (store/tables.py: FLAVOURS). pipeline.py asks it, nothing else does.
"""
from __future__ import annotations

from .accounting import AccOptions, ProxySet, acc_writer
from .opensips import OpensipsAccWriter


class Kamailio:
    """Kamailio 5.6's acc module (stock kamailio.cfg, WITH_ACCDB) and its acc_cdrs."""

    name = "kamailio"
    writes_cdrs = True
    store_method = "add"  # AccStore.add: AccRecords into acc and missed_calls

    @staticmethod
    def acc_subscriber(options: AccOptions, proxies: ProxySet, sink):
        return acc_writer(options, proxies, sink)

    @staticmethod
    def table_of(rec) -> str:
        return rec[0]  # AccRecord.table, by position (the cheaper read)


class Opensips:
    """OpenSIPS 3.x's acc module: do_accounting("db", "cdr|missed"), `|failed` with
    failed_transaction (sip_dissect/opensips.py, docs/opensips.md)."""

    name = "opensips"
    writes_cdrs = False  # the CDR is OpenSIPS' acc row itself
    store_method = "add_row"  # AccStore.add_row: the generic path (tables.GENERIC)
    # the AccOptions it has no counterpart for are refused by the CLI (cli_accounting.py)

    @staticmethod
    def acc_subscriber(options: AccOptions, proxies: ProxySet, sink):
        return OpensipsAccWriter(proxies, sink, failed=options.failed_transaction)

    @staticmethod
    def table_of(rec) -> str:
        return "acc" if rec.__class__.__name__ == "OpensipsAccRecord" else "missed_calls"


KAMAILIO, OPENSIPS = Kamailio(), Opensips()
FLAVOURS = {f.name: f for f in (KAMAILIO, OPENSIPS)}
