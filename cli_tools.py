"""`sipprobe diff` (shadow accounting against the proxy's own tables) and `sipprobe extract`
(one call's packets to a pcap): option parsing and output only; the work is in store/shadow.py
and console/extract.py. Registered on cli.app when cli.py is imported."""
from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Optional

import typer

from cli import app, quiet_pipe
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
                 "--proxy-db", metavar="FILE",
                 help="The proxy's accounting database: the SQLite file Kamailio's db_sqlite "
                      "writes (acc, missed_calls, acc_cdrs; times as Julian days, datetime "
                      "text or epoch seconds). MySQL and PostgreSQL URLs are not supported "
                      "yet.")],
             db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
             table: Annotated[DiffTable, typer.Option(
                 "--table", help="Compare this table only (default: all three).")]
             = DiffTable.all,
             fmt: Annotated[DiffFormat, typer.Option(
                 "--format", "-f", help="table: the differences, then a verdict line; json: "
                                        "every table's rows and cells.")] = DiffFormat.table):
    """Compare sipprobe's acc, missed_calls and acc_cdrs rows with the proxy's own (shadow
    accounting): rows are paired on callid, tags, method and code (CDRs: callid and From tag),
    then every column both have is compared; times within the proxy's one second. Lists the
    rows found on one side only and the cells that differ, then a verdict. Exit 0 when both
    agree, 1 when they differ, 2 when a database cannot be read.

    Example: sipprobe diff --proxy-db /var/lib/kamailio/acc.db --db sipprobe.db --since 1d
    """
    from store.query import Filters
    from store.shadow import TABLES, diff

    tables = TABLES if table is DiffTable.all else (table.value,)
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
