"""`sipprobe report calls --callid ID`: one call's timeline.

From the store: acc_cdrs gives the call's moments (INVITE, first ringing, answer or failure,
end), acc / missed_calls the final reply of each accounted transaction (the INVITE's, every
BYE's), rtcp_reports every RTCP report block bound to the call with its figures. The store
keeps no SIP messages (a probe on a mirror port would write each message again), so every SIP
message of the call, with its direction, comes from the captures when they are given
(`--capture`): the frames that carry a message of that Call-ID, as `sipprobe extract` finds
them.
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
    return sorted(events + rtcp_events(db_path, callid), key=lambda e: e[0])


def _figure(value, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def rtcp_events(db_path: str, callid: str) -> list[tuple[float, str]]:
    """(epoch, the report block) of every RTCP report block the store bound to the call."""
    names = BY_NAME["rtcp_reports"].report_columns
    events = []
    for row in stream("rtcp_reports", db_path, Filters(callid=callid)):
        r = dict(zip(names, row))
        events.append((r["time_epoch"], (
            f"RTCP {r['packet_type']} side {r['side']} {r['src_ip']}:{r['src_port']} -> "
            f"{r['dst_ip']}:{r['dst_port']} ssrc {r['reporter_ssrc']:#010x} on "
            f"{r['source_ssrc']:#010x}: loss {_figure(r['loss_pct'], ' %')}, jitter "
            f"{_figure(r['jitter_ms'], ' ms')}, rtt {_figure(r['rtt_ms'], ' ms')}, "
            f"MOS {_figure(r['mos'], '', 2)}")))
    return events


def sip_events(captures: list[str], callid: str) -> list[tuple[float, str]]:
    """(epoch, the message) of every SIP message of the Call-ID in the captures, each leg's
    copy apart: frame number, source -> destination, transport, first line, CSeq."""
    from console.extract import _datagrams, _sip

    events = []
    for frame, datagrams in _datagrams(captures):
        for d in datagrams:
            msg = _sip(d.payload)
            if msg is None or msg.call_id != callid:
                continue
            first = f"{msg.method} {msg.uri}" if msg.is_request else f"{msg.status} {msg.reason}"
            events.append((d.ts, f"frame {d.frame} {_endpoint(d.src, d.sport)} -> "
                                 f"{_endpoint(d.dst, d.dport)} {d.transport.upper()} {first} "
                                 f"(CSeq {msg.header('cseq')})"))
    return events


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def print_timeline(db_path: str, callid: str, out=None, captures=()) -> None:
    """The call's timeline; with `captures`, every SIP message of it read from them."""
    out = out or sys.stdout
    events = timeline(db_path, callid)
    if not events:
        from store import is_url
        if is_url(db_path):
            from store.postgres import shown
            db_path = shown(db_path)  # no password on the screen
        out.write(f"no call {callid} in {db_path}\n")
        return
    if captures:
        events = sorted(events + sip_events(list(captures), callid), key=lambda e: e[0])
    out.write(f"call {callid} (times UTC)\n")
    for ts, what in events:
        out.write(f"{_t(ts)}  {what}\n")
