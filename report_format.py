"""Human-readable tables for CLI results (rich is imported only when a table is printed)."""
from __future__ import annotations


def preload() -> None:
    """Import what the tables need ahead of time, in a thread while the caller waits (replay's
    store closing): the same imports in the main thread then find them done. A failure here is
    left for the main thread's import to raise."""
    try:
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401
    except Exception:  # noqa: BLE001
        pass


def console(**options):
    """A rich Console whose broken pipe (`sipprobe ... | head`) raises BrokenPipeError for
    cli.quiet_pipe to end quietly with exit 0; rich's own handler exits 1."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return _Console(**options)


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


def _tls_hint(con, messages: int, counters: dict) -> None:
    if not messages and counters.get("sip.tls_record"):
        con.print(f"hint: no SIP decoded, but {counters['sip.tls_record']} TCP segments on the "
                  "SIP ports are TLS records: the signalling looks encrypted (SIPS, port 5061); "
                  "capture where it is plain (before the TLS endpoint, or UDP/TCP 5060)",
                  soft_wrap=True)


def print_stats(r: dict) -> None:
    con = console()
    sip = r["sip"]
    con.print(f"files: {', '.join(r['files'])}")
    con.print(f"frames matched by the {r['filter']} filter: {r['frames_matched']}")
    con.print(f"SIP messages: {sip['messages']}  retransmissions: {sip['retransmissions']}  "
              + "  ".join(f"{k}: {v}" for k, v in sip["transport"].items()))
    _tls_hint(con, sip["messages"], r["counters"])
    _section(con, "SIP requests", sip["requests"], ("method", "count"))
    _section(con, "SIP responses", sip["responses"], ("code", "count"))
    rtcp = r["rtcp"]
    _section(con, f"RTCP packets ({rtcp['datagrams']} datagrams)", rtcp["packets"],
             ("packet type", "count"))
    _section(con, "Encapsulations", r["encapsulations"], ("crossed", "datagrams"))
    _section(con, "Counters", r["counters"], ("layer.reason", "count"))
    if "capture" in r:
        _section(con, "Live capture", r["capture"], ("kernel", "count"))


# Rows of a report (a list of dicts), in the one set of formats every report shares.

def rows_csv(rows: list[dict], columns) -> str:
    """CSV with a header row; a header alone when there are no rows."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row.get(c) for c in columns] for row in rows)
    return out.getvalue()


def rows_json(rows: list[dict], columns) -> str:
    """A JSON list of objects with `columns` as keys, in that order; `[]` when empty."""
    import json

    return json.dumps([{c: row.get(c) for c in columns} for row in rows], indent=2,
                      ensure_ascii=False)


def print_rows(rows: list[dict], fmt: str, columns, table_columns=None) -> None:
    """Print rows as `table`, `csv` or `json`. The table shows `table_columns` (default
    `columns`), for instance Kamailio's columns without the extras that CSV and JSON carry."""
    import sys

    if fmt == "csv":
        sys.stdout.write(rows_csv(rows, columns))
    elif fmt == "json":
        sys.stdout.write(rows_json(rows, columns) + "\n")
    elif not rows:
        sys.stdout.write("no rows\n")
    else:
        # piped or redirected output has no width to fit: do not wrap rows at rich's 80
        con = console() if sys.stdout.isatty() else console(width=250)
        con.print(_rows_table(rows, tuple(table_columns or columns)))


def _rows_table(rows: list[dict], names):
    from rich.table import Table

    t = Table(show_edge=False)
    for name in names:
        numeric = isinstance(rows[0].get(name), (int, float))
        # fold: a narrow terminal wraps a long Call-ID instead of cutting it to "..."
        t.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        t.add_row(*["" if row.get(n) is None else str(row.get(n)) for n in names])
    return t


def print_replay(s: dict) -> None:
    """The one-screen summary at the end of `sipprobe replay`."""
    con = console()
    con.print(f"files: {', '.join(s['files'])}")
    con.print(f"database: {s['db']}")
    con.print(f"engine: {s['engine']}")
    con.print(f"proxies: {', '.join(s['proxies']) or 'none detected: every transaction accounted as seen'}")
    con.print(f"SIP messages: {s['sip_messages']}  frames matched: {s['frames_matched']}")
    _tls_hint(con, s["sip_messages"], s["counters"])
    con.print(f"calls: {s['calls']}  answered: {s['answered']}  failed: {s['failed']}  "
              f"challenged (401/407): {s['challenged']}")
    con.print(f"acc rows: {s['acc_rows']} ({s['acc_inserted']} new)  "
              f"missed_calls rows: {s['missed_rows']} ({s['missed_inserted']} new)  "
              f"already stored: {s['duplicates']}")
    con.print(f"acc_cdrs: {s['cdrs_inserted']} new, {s['cdrs_completed']} open calls completed")
    if "syslog_lines" in s:
        failed = f", {s['syslog_failed']} not sent" if s["syslog_failed"] else ""
        con.print(f"ACC log lines: {s['syslog_lines']}{failed}")
    if "rtcp_reports_inserted" in s:
        con.print(f"rtcp_reports: {s['rtcp_reports_inserted']} new  "
                  f"call_quality: {s['call_quality_inserted']} new")
    for run in s.get("unclean_runs", ()):
        con.print(f"earlier run: {run['message']}", markup=False)
    _section(con, "Counters", s["counters"], ("layer.reason", "count"))
