"""`sipprobe diff` (shadow accounting against the proxy's own tables) and `sipprobe extract`
(one call's packets to a pcap): option parsing and output only; the work is in store/shadow.py
and console/extract.py. Registered on cli.app when cli.py is imported."""
from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, List, Optional

import typer

from cli import _fail, app, quiet_pipe
from cli_reports import DbOpt, SinceOpt, UntilOpt, store_errors


class DiffTable(str, Enum):
    acc = "acc"
    missed_calls = "missed_calls"
    acc_cdrs = "acc_cdrs"
    all = "all"


class DiffFormat(str, Enum):
    table = "table"
    json = "json"


EXIT_DIFFER = 1


@app.command("diff")
def diff_cmd(proxy_db: Annotated[str, typer.Option(
                 "--proxy-db", metavar="FILE|URL",
                 help="The proxy's accounting database (Kamailio's acc, missed_calls, "
                      "acc_cdrs or OpenSIPS' acc, missed_calls): the SQLite file its "
                      "db_sqlite writes (times as Julian days, datetime "
                      "text or epoch seconds), or its PostgreSQL or MySQL/MariaDB database "
                      "(postgresql://USER@HOST/DB, mysql://USER[:PASSWORD]@HOST/DB, MySQL "
                      "needs pip install 'sipprobe[mysql]'), read in read-only transactions "
                      "(SELECT is enough). Times without a zone are read as UTC.")],
             db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
             table: Annotated[DiffTable, typer.Option(
                 "--table", help="Compare this table only (default: every table of the "
                                 "flavour; OpenSIPS has no acc_cdrs).")]
             = DiffTable.all,
             fmt: Annotated[DiffFormat, typer.Option(
                 "--format", "-f", help="table: the differences, then a verdict line; json: "
                                        "every table's rows and cells.")] = DiffFormat.table):
    """Compare sipprobe's acc, missed_calls and acc_cdrs rows with the proxy's own (shadow
    accounting): rows are paired on callid, tags, method and code (CDRs: callid and From tag),
    then every column both have is compared; times within the proxy's one second. Lists the
    rows found on one side only and the cells that differ, then a verdict. A file written
    --flavour opensips is compared with an OpenSIPS proxy's acc and missed_calls (duration and
    setuptime exact, ms_duration within 10 ms); a proxy of the other flavour is an error. Exit
    0 when both agree, 1 when they differ, 2 when a database cannot be read or the flavours
    differ.

    Example: sipprobe diff --proxy-db /var/lib/kamailio/acc.db --db sipprobe.db --since 1d

    Example: sipprobe diff --proxy-db postgresql://reader@sip-db/kamailio --db sipprobe.db
    """
    from store.query import Filters
    from store.shadow import diff

    tables = None if table is DiffTable.all else (table.value,)
    with store_errors():
        result = diff(db, proxy_db, Filters.parse(since=since, until=until), tables)
    with quiet_pipe():
        if fmt is DiffFormat.json:
            typer.echo(json.dumps(result, indent=2))
        else:
            from console.diff import print_diff

            print_diff(result, typer.echo)
    if not result["agree"]:
        raise typer.Exit(EXIT_DIFFER)


@app.command("extract")
def extract_cmd(captures: Annotated[List[str], typer.Argument(
                    metavar="CAPTURE...", help="pcap or pcapng files (gzip too).")],
                output: Annotated[str, typer.Option(
                    "--output", "-o", metavar="FILE", help="The pcap to write.")],
                callid: Annotated[Optional[str], typer.Option(
                    metavar="CALLID", help="The call of this Call-ID.")] = None,
                user: Annotated[Optional[str], typer.Option(
                    metavar="USER", help="Calls whose From, To or request-URI user contains "
                                         "USER.")] = None,
                since: SinceOpt = None):
    """Write every packet of the matching calls to one pcap, for a vendor or Wireshark: the
    SIP messages of their Call-IDs (every leg that kept the Call-ID) and the RTP and RTCP
    to or from the addresses and ports their SDP gave. Conditions combine; give at least one.

    Example: sipprobe extract capture.pcap --callid 3cfe1c77155241bb89eb003ab8e2f87b -o call.pcap
    """
    from console import extract
    from probe.sources import SourceError
    from store import StoreError
    from store.query import parse_time

    if callid is None and user is None and since is None:
        _fail("give --callid, --user or --since: which calls to extract")
    try:
        start = parse_time(since) if since is not None else None
        chosen = extract.select(captures, callid=callid, user=user, since=start)
        if not chosen.callids:
            _fail("no call matches in " + ", ".join(captures))
        written = extract.write(captures, chosen, output)
    except (SourceError, StoreError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"wrote {written} packets of {len(chosen.callids)} calls to {output}", err=True)


class CrosscheckFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("crosscheck")
def crosscheck_cmd(captures: Annotated[List[str], typer.Argument(
                       metavar="CAPTURE...", help="pcap or pcapng files (gzip too).")],
                   sip_port: Annotated[Optional[List[int]], typer.Option(
                       "--sip-port", metavar="PORT",
                       help="SIP port for UDP and TCP besides 5060 and 5061 (repeatable); "
                            "tshark is told to decode SIP there too.")] = None,
                   fmt: Annotated[CrosscheckFormat, typer.Option(
                       "--format", "-f",
                       help="table: the disagreements and a verdict line; csv: the "
                            "disagreements with a header row (verdict on stderr); json: "
                            "verdict, counts per capture and disagreements.")]
                   = CrosscheckFormat.table):
    """Decode the SIP and RTCP of captures twice, with sipprobe's own decoder and with tshark
    (Wireshark), and list every field where they disagree: per SIP message its frame, time,
    addresses, transport, method or status, request-URI, Call-ID, CSeq, From/To tags, top Via
    branch, Content-Length and body size; per RTCP compound every report, report block, CNAME
    and BYE. A message only one side decodes is a disagreement too, with what the other side
    made of that frame. Every frame is read (no filter, no SPAN de-duplication), so frame
    numbers are Wireshark's. Needs tshark. Exit 0 when they agree, 1 when they differ, 2 when
    tshark is missing or fails, 3 when a capture is damaged.

    Example: sipprobe crosscheck capture.pcap --format csv > disagreements.csv
    """
    from console.crosscheck import crosscheck
    from console.tshark import TsharkError

    ports = tuple(sorted({5060, 5061, *(sip_port or ())}))
    try:
        from cli import _errors_taught

        with _errors_taught():
            result = crosscheck(captures, ports)
    except TsharkError as exc:
        _fail(str(exc))
    result["verdict"] = _crosscheck_verdict(result)
    with quiet_pipe():
        if fmt is CrosscheckFormat.json:
            typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            _print_disagreements(result, fmt.value)
    from cli import _exit_if_damaged

    _exit_if_damaged(result)
    if not result["agree"]:
        raise typer.Exit(EXIT_DIFFER)


def _crosscheck_verdict(result: dict) -> str:
    sip = sum(c["sip"] for c in result["compared"].values())
    rtcp = sum(c["rtcp"] for c in result["compared"].values())
    files = len(result["compared"])
    seen = f"{sip} SIP messages and {rtcp} RTCP compounds in {files} capture" \
           + ("s" if files != 1 else "")
    rows = result["disagreements"]
    if not rows:
        return f"agree: sipprobe and tshark decode {seen} alike"
    one_side = sum(1 for r in rows if r["field"] == "message")
    frames = len({(r["capture"], r["frame"]) for r in rows})
    return (f"differ: {len(rows) - one_side} fields and {one_side} messages seen by one side "
            f"only, in {frames} frames; both decoded {seen}")


CROSSCHECK_COLUMNS = ("capture", "frame", "item", "field", "sipprobe", "tshark", "note")


def _print_disagreements(result: dict, fmt: str) -> None:
    from console import output

    columns = [output.Column(name, numeric=name == "frame",
                             cuttable=name in ("sipprobe", "tshark", "note", "capture"))
               for name in CROSSCHECK_COLUMNS]
    rows = ([r[name] for name in CROSSCHECK_COLUMNS] for r in result["disagreements"])
    if fmt == "csv":
        output.write(rows, columns, "csv")
        typer.echo(result["verdict"], err=True)
        return
    if result["disagreements"]:
        output.write(rows, columns, "table")
    typer.echo(result["verdict"])
