"""`sipprobe report calls --callid ID`: one call's timeline from what the store keeps.

acc_cdrs gives the call's moments (INVITE, first ringing, answer or failure, end) and acc /
missed_calls the final reply of each accounted transaction (the INVITE's, every BYE's). Every
SIP message of the call, with its direction, would need the messages stored (a table of
them), which sipprobe does not write.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone

from store.query import Filters, stream
from store.tables import BY_NAME


def _t(epoch) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def timeline(db_path: str, callid: str) -> list[tuple[float, str]]:
    """(epoch, what happened) of the call, in time order; [] when the store has no such call."""
    events = []
    names = BY_NAME["acc_cdrs"].report_columns
    for row in stream("acc_cdrs", db_path, Filters(callid=callid)):
        c = dict(zip(names, row))
        who = f"{c['src_user']}@{c['src_domain']} ({c['src_ip']}) -> {c['dst_user']}@" \
              f"{c['dst_domain']}"
        events.append((c["created"], f"INVITE {who}"))
        if c["ring_time"] is not None:
            events.append((c["ring_time"], f"ringing (post-dial delay {c['pdd']:.3f} s)"))
        if c["answer_time"] is not None and (c["sip_code"] or "").startswith("2"):
            events.append((c["answer_time"], f"answered {c['sip_code']} {c['sip_reason']} "
                                             f"(setup {c['setuptime']:.3f} s)"))
        if c["end_reason"] in ("completed", "expired", "open") and \
                (c["sip_code"] or "2").startswith("2"):
            talk = "" if c["talk_time"] is None else f", talked {c['talk_time']:.3f} s"
            what = {"completed": f"ended by {c['ended_by']} (BYE)",
                    "expired": "expired (no BYE within the dialog timeout)",
                    "open": "still open when the capture ended"}[c["end_reason"]]
            events.append((c["end_epoch"], what + talk))
        else:
            wait = "" if c["ring_duration"] is None else f" after {c['ring_duration']:.3f} s"
            code = c["sip_code"] or "no relayed reply"
            events.append((c["created"] + (c["ring_duration"] or 0.0),
                           f"{c['end_reason']} {code} {c['sip_reason'] or ''}".rstrip()
                           + f", ended by {c['ended_by'] or '-'}{wait}"))
    acc_names = BY_NAME["acc"].report_columns
    for table in ("acc", "missed_calls"):
        for row in stream(table, db_path, Filters(callid=callid)):
            r = dict(zip(acc_names, row))
            events.append((r["time_epoch"], f"{table} row: {r['method']} CSeq {r['cseq']} -> "
                                            f"{r['sip_code']} {r['sip_reason']}"))
    return sorted(events, key=lambda e: e[0])


def print_timeline(db_path: str, callid: str, out=None) -> None:
    out = out or sys.stdout
    events = timeline(db_path, callid)
    if not events:
        from store import is_url
        if is_url(db_path):
            from store.postgres import shown
            db_path = shown(db_path)  # no password on the screen
        out.write(f"no call {callid} in {db_path}\n")
        return
    out.write(f"call {callid} (times UTC)\n")
    for ts, what in events:
        out.write(f"{_t(ts)}  {what}\n")
