"""Human-readable tables for CLI results (rich is imported only when a table is printed)."""
from __future__ import annotations


def _table(title: str, rows, headers=("", "count")):
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False)
    for i, h in enumerate(headers):
        t.add_column(h, justify="right" if i else "left")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


def _section(con, title: str, mapping: dict, headers) -> None:
    if mapping:
        con.print(_table(title, mapping.items(), headers))
    else:
        con.print(f"{title}: none")


def print_stats(r: dict) -> None:
    from rich.console import Console

    con = Console()
    sip = r["sip"]
    con.print(f"files: {', '.join(r['files'])}")
    con.print(f"frames matched by the {r['filter']} filter: {r['frames_matched']}")
    con.print(f"SIP messages: {sip['messages']}  retransmissions: {sip['retransmissions']}  "
              + "  ".join(f"{k}: {v}" for k, v in sip["transport"].items()))
    _section(con, "SIP requests", sip["requests"], ("method", "count"))
    _section(con, "SIP responses", sip["responses"], ("code", "count"))
    rtcp = r["rtcp"]
    _section(con, f"RTCP packets ({rtcp['datagrams']} datagrams)", rtcp["packets"],
             ("packet type", "count"))
    _section(con, "Encapsulations", r["encapsulations"], ("crossed", "datagrams"))
    _section(con, "Counters", r["counters"], ("layer.reason", "count"))
    if "capture" in r:
        _section(con, "Live capture", r["capture"], ("kernel", "count"))
