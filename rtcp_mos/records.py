"""Voice quality records handed from rtcp_mos/ to store/: RtcpReportRecord (rtcp_reports) and
CallQualityRecord (call_quality), NamedTuples built from the tables' declaration
(store/tables.py: RTCP_REPORTS, CALL_QUALITY) as sip_dissect/records.py builds AccRecord."""
from __future__ import annotations

from sip_dissect.records import record_class
from store.tables import CALL_QUALITY, RTCP_REPORTS

RtcpReportRecord = record_class(RTCP_REPORTS)
CallQualityRecord = record_class(CALL_QUALITY)
