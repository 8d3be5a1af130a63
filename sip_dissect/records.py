"""Accounting records handed from sip_dissect/ to store/: one per row the proxy would write.

AccRecord (acc, missed_calls) and CdrRecord (acc_cdrs), and with --flavour opensips
OpensipsAccRecord and OpensipsMissedRecord, are NamedTuples built from the tables'
declaration (store/tables.py: ACC, CDR), which gives their fields, in order, with their types
and meanings (`help(AccRecord)`). Field names are Kamailio's column names.
"""
from __future__ import annotations

from typing import NamedTuple

from store.tables import ACC, CDR, OPENSIPS_ACC, OPENSIPS_MISSED

# sip_code text by status: f"{code:03d}" costs more than the rest of a row's fields together
CODE_TEXT = {code: f"{code:03d}" for code in range(100, 700)}
# a NamedTuple record from a tuple in field order: Record(field=...) costs 1 to 1.5 us a row
new_record = tuple.__new__


def record_class(table) -> type:
    """The NamedTuple of a tables.Table's record: its fields, their docs, its docstring, and
    KAMAILIO_COLUMNS (the fields Kamailio's columns are filled from)."""
    cls = NamedTuple(table.record, table.record_fields)
    cls.__module__ = __name__
    cls.__doc__ = table.doc
    for field in table.fields:
        getattr(cls, field.name).__doc__ = field.doc or None
    cls.KAMAILIO_COLUMNS = table.kamailio_fields
    return cls


AccRecord = record_class(ACC)
CdrRecord = record_class(CDR)
# --flavour opensips (sip_dissect/opensips.py)
OpensipsAccRecord = record_class(OPENSIPS_ACC)
OpensipsMissedRecord = record_class(OPENSIPS_MISSED)
