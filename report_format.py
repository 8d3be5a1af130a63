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


def print_stats(r: dict) -> None:
    from rich.console import Console

    con = Console()
    sip = r["sip"]
    con.print(f"files: {', '.join(r['files'])}")
    con.print(f"frames matched by the {r['filter']} filter: {r['frames_matched']}")
    con.print(f"SIP messages: {sip['messages']}  retransmissions: {sip['retransmissions']}  "
              + "  ".join(f"{k}: {v}" for k, v in sip["transport"].items()))
    con.print(_table("SIP requests", sip["requests"].items(), ("method", "count")))
    con.print(_table("SIP responses", sip["responses"].items(), ("code", "count")))
    rtcp = r["rtcp"]
    con.print(_table(f"RTCP ({rtcp['datagrams']} datagrams)", rtcp["packets"].items(),
                     ("packet type", "count")))
    if r["encapsulations"]:
        con.print(_table("Encapsulations", r["encapsulations"].items(), ("crossed", "datagrams")))
    con.print(_table("Counters", r["counters"].items(), ("layer.reason", "count")))
    if "capture" in r:
        con.print(_table("Live capture", r["capture"].items(), ("kernel", "count")))
