"""Accounting records handed from sip_dissect/ to store/: one per row the proxy would write."""
from __future__ import annotations

from typing import NamedTuple

# sip_code text by status: f"{code:03d}" costs more than the rest of a row's fields together
CODE_TEXT = {code: f"{code:03d}" for code in range(100, 700)}
# a NamedTuple record from a tuple in field order: Record(field=...) costs 1 to 1.5 us a row
new_record = tuple.__new__


class AccRecord(NamedTuple):
    """A row of Kamailio's `acc` or `missed_calls` table (stock kamailio.cfg, WITH_ACCDB extras).

    Field names are Kamailio's column names; `time` is the packet time (epoch seconds with
    microseconds) of the final reply the proxy relayed upstream. Kamailio writes that time
    truncated to the second; store/ writes both forms.
    """

    table: str  # "acc" or "missed_calls"
    method: str  # request method: INVITE, BYE, ...
    from_tag: str  # From tag of the request
    to_tag: str  # To tag of the final reply (INVITE) or of the request (in-dialog)
    callid: str
    sip_code: str  # three digits, as Kamailio stores it (TEXT)
    sip_reason: str  # reason phrase of the final reply
    time: float  # epoch seconds of the final reply relayed upstream
    src_user: str  # $fU: From URI user
    src_domain: str  # $fd: From URI host
    src_ip: str  # $si: source IP of the request as the proxy received it
    dst_ouser: str  # $tU: To URI user
    dst_user: str  # $rU: request-URI user after the proxy rewrote it (as forwarded)
    dst_domain: str  # $rd: request-URI host after the proxy rewrote it (as forwarded)
    cseq: int  # CSeq number of the request: with callid and tags it identifies the row
