"""`sipprobe report ...`: option parsing and output only; the queries are in store/ (query.py,
summary.py), the printing in console/. Registered on cli.report_app when cli.py is imported."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, List, Optional

import typer

from cli import _errors_taught, _fail, quiet_pipe, report_app


class RowFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"


TABLE_LIMIT = 50  # rows a terminal table shows unless --limit says otherwise

DbOpt = Annotated[str, typer.Option("--db", metavar="FILE|URL",
                                    help="SQLite database written by sipprobe, or a PostgreSQL "
                                         "one: postgresql://USER@HOST/DB (read in a read-only "
                                         "transaction).")]
SinceOpt = Annotated[Optional[str], typer.Option(
    metavar="TIME", help="Rows at or after TIME: a date or time (2026-11-23, "
                         "2026-11-23T10:57:25Z; UTC unless it has an offset), epoch seconds, a "
                         "time ago (30m, 2h, 7d, 1w) or today / yesterday (00:00 UTC).")]
UntilOpt = Annotated[Optional[str], typer.Option(metavar="TIME",
                                                 help="Rows before TIME (as --since).")]
CallidOpt = Annotated[Optional[str], typer.Option(metavar="CALLID", help="Rows of this Call-ID.")]
UserOpt = Annotated[Optional[str], typer.Option(
    metavar="USER", help="Rows whose src_user, dst_user or dst_ouser contains USER; a number "
                         "matches with or without its +, 00 or 0 prefix.")]
IpOpt = Annotated[Optional[str], typer.Option(
    "--ip", metavar="ADDRESS", help="Rows whose source IP or request-URI host is ADDRESS.")]
DomainOpt = Annotated[Optional[str], typer.Option(
    metavar="DOMAIN", help="Rows whose From or request-URI domain is DOMAIN.")]
MethodOpt = Annotated[Optional[str], typer.Option(
    metavar="METHOD", help="Rows of this method, any case (INVITE, bye...).")]
CodeOpt = Annotated[Optional[str], typer.Option(
    metavar="CODE", help="Rows with this sip_code (486) or class (4xx).")]
# store.tables.END_REASONS, spelled out: the CLI starts without importing store/ (a test checks
# the two agree)
EndReasonOpt = Annotated[Optional[str], typer.Option(
    "--end-reason", metavar="REASON",
    help="CDRs that ended so: completed, cancelled, rejected, expired, open or unanswered.")]
MinMosOpt = Annotated[Optional[float], typer.Option(
    "--min-mos", metavar="MOS", help="Calls whose worst side's lowest MOS (G.107) is at least "
                                     "MOS; calls without RTCP reports are left out.")]
MaxMosOpt = Annotated[Optional[float], typer.Option(
    "--max-mos", metavar="MOS", help="Calls whose worst side's lowest MOS is at most MOS (3.6: "
                                     "the calls many users would find poor).")]
LimitOpt = Annotated[Optional[int], typer.Option(
    min=1, metavar="N", help=f"At most N rows (table default {TABLE_LIMIT}; CSV and JSON: all).")]
WideOpt = Annotated[bool, typer.Option("--wide", help="Table: never cut a value to fit the "
                                                      "terminal.")]
RowFormatOpt = Annotated[RowFormat, typer.Option(
    "--format", "-f", help="table, CSV with a header row, a JSON list of objects, or NDJSON "
                           "(one object a line). Floats: seconds to the ms, epoch times to the "
                           "us; text times are UTC unless the file was written --local-time.")]


@contextmanager
def store_errors():
    """A StoreError (missing, foreign, locked database; bad filter) as one line, exit 2."""
    from store import StoreError

    try:
        yield
    except StoreError as exc:
        _fail(str(exc))


def print_rows(table: str, db: str, fmt: RowFormat, *, limit=None, wide=False, columns=None,
               **filters) -> None:
    """Rows of `table`, streamed from the cursor. The table shows the layout's summary
    columns; CSV and JSON every column. The layout is the file's flavour's (Kamailio's or
    OpenSIPS' acc and missed_calls: store.query.layout_of)."""
    from console import output
    from store.query import Filters, file_layout, stream, time_column_clock

    with store_errors():
        layout = file_layout(db, table)
        names = columns or (layout.summary if fmt is RowFormat.table else
                            layout.report_columns)
        parsed = Filters.parse(**filters)
        query_limit = limit
        if fmt is RowFormat.table and limit is None:
            query_limit = TABLE_LIMIT + 1  # one more: the table says there are more
        rows = stream(table, db, parsed, columns=names, limit=query_limit)
        clock = time_column_clock(db)
        cols = output.table_columns(layout, names, clock)
        with quiet_pipe():
            output.write(rows, cols, fmt.value, wide=wide,
                         limit=(limit or TABLE_LIMIT) if fmt is RowFormat.table else None,
                         hint="--limit N for more, --format csv for all")


@report_app.command("acc")
def report_acc(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
               callid: CallidOpt = None, user: UserOpt = None, ip: IpOpt = None,
               method: MethodOpt = None, code: CodeOpt = None, limit: LimitOpt = None,
               wide: WideOpt = False, fmt: RowFormatOpt = RowFormat.table):
    """Accounted transactions (acc table): a row per INVITE or BYE and its final reply, as
    Kamailio's acc module writes it, in packet-time order. CSV and JSON add time_epoch and cseq.
    A file written --flavour opensips shows OpenSIPS' acc: a row per answered call (duration,
    ms_duration and setuptime; created is the INVITE), CSV and JSON adding created_epoch too.

    Example: sipprobe report acc --db sipprobe.db --since 2h --method bye --format csv
    """
    print_rows("acc", db, fmt, limit=limit, wide=wide, since=since, until=until, callid=callid,
               user=user, ip=ip, method=method, code=code)


@report_app.command("missed")
def report_missed(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                  callid: CallidOpt = None, user: UserOpt = None, ip: IpOpt = None,
                  method: MethodOpt = None, code: CodeOpt = None, limit: LimitOpt = None,
                  wide: WideOpt = False, fmt: RowFormatOpt = RowFormat.table):
    """Missed calls (missed_calls table): a row per INVITE that ended in a failure reply, as
    Kamailio's acc module writes it, in packet-time order. CSV and JSON add time_epoch and cseq.
    A file written --flavour opensips shows OpenSIPS' missed_calls (setuptime, created).

    Example: sipprobe report missed --db sipprobe.db --code 4xx --since 2026-11-23
    """
    print_rows("missed_calls", db, fmt, limit=limit, wide=wide, since=since, until=until,
               callid=callid, user=user, ip=ip, method=method, code=code)


@report_app.command("cdrs")
def report_cdrs(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                callid: CallidOpt = None, user: UserOpt = None, ip: IpOpt = None,
                code: CodeOpt = None, end_reason: EndReasonOpt = None,
                min_mos: MinMosOpt = None, max_mos: MaxMosOpt = None, limit: LimitOpt = None,
                wide: WideOpt = False, fmt: RowFormatOpt = RowFormat.table):
    """Dialog CDRs (acc_cdrs table): a row per call, as Kamailio's acc module writes it with
    cdr_enable, in start-time order; --since and --until compare the start. duration is
    Kamailio's (INVITE to BYE, ringing included); talk_time is answer to BYE (billsec) and
    ring_duration INVITE to answer, failure or CANCEL, in seconds with milliseconds. A call
    still open when the capture ended has end_reason open until a later run sees its end.

    Example: sipprobe report cdrs --db sipprobe.db --end-reason completed --format csv
    """
    print_rows("acc_cdrs", db, fmt, limit=limit, wide=wide, since=since, until=until,
               callid=callid, user=user, ip=ip, code=code, end_reason=end_reason,
               min_mos=min_mos, max_mos=max_mos)


PAIRS_TABLE_COLUMNS = ("call_start_time", "duration", "src_username", "dst_username",
                       "dst_ousername", "src_ip", "ended_by", "sip_call_id")


@report_app.command("pairs")
def report_pairs(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                 callid: CallidOpt = None, user: UserOpt = None, ip: IpOpt = None,
                 domain: DomainOpt = None, limit: LimitOpt = None, wide: WideOpt = False,
                 fmt: RowFormatOpt = RowFormat.table):
    """CDRs paired from the acc table as Siremis' kamailio_cdrs() pairs them: each INVITE row
    with the first BYE row of its Call-ID whose From/To tags are the INVITE's, or crossed (the
    callee hung up), in the columns of Siremis' cdrs table. call_start_time is the INVITE row's
    time (the answer) and duration the BYE's time minus it in whole seconds, the proxy's
    resolution: billable time, ringing excluded (acc_cdrs' talk_time). --since and --until
    compare call_start_time. CSV and JSON add call_start_epoch and ended_by (caller, callee).

    Example: sipprobe report pairs --db sipprobe.db --since yesterday --format csv
    """
    from console import output
    from store.pairs import COLUMNS, REPORT_COLUMNS, pairs_stream
    from store.query import Filters, time_column_clock

    names = PAIRS_TABLE_COLUMNS if fmt is RowFormat.table else REPORT_COLUMNS
    with store_errors():
        filters = Filters.parse(since=since, until=until, callid=callid, user=user, ip=ip,
                                domain=domain)
        query_limit = TABLE_LIMIT + 1 if fmt is RowFormat.table and limit is None else limit
        rows = pairs_stream(db, filters, columns=names, limit=query_limit)
        clock = time_column_clock(db)
        cols = [output.Column(n, header=f"{n} ({clock})" if n == "call_start_time" else None,
                              precision=6 if n == "call_start_epoch" else None,
                              numeric=n in ("duration", "call_start_epoch"),
                              cuttable=n not in ("call_start_time", "src_ip") and n in COLUMNS)
                for n in names]
        with quiet_pipe():
            output.write(rows, cols, fmt.value, wide=wide,
                         limit=(limit or TABLE_LIMIT) if fmt is RowFormat.table else None,
                         hint="--limit N for more, --format csv for all")


QUALITY_COLUMNS = ("side", "reports", "codec", "mos_min", "mos_avg", "mos_max", "loss_pct_avg",
                   "jitter_ms_avg", "rtt_ms_avg", "mos_rtpengine_avg", "src_user", "dst_user",
                   "callid")  # what a terminal table shows; CSV and JSON have every column


@report_app.command("quality")
def report_quality(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                   callid: CallidOpt = None, user: UserOpt = None, ip: IpOpt = None,
                   min_mos: MinMosOpt = None, max_mos: MaxMosOpt = None,
                   limit: LimitOpt = None, wide: WideOpt = False,
                   fmt: RowFormatOpt = RowFormat.table):
    """Voice quality per call and side (call_quality table), worst first: the lowest, average
    and highest MOS (G.107) of the side's RTCP reports, the loss, jitter, round trip and delay
    behind them, and the MOS rtpengine would give. Side A: the caller's reports, B: the
    callee's. --since and --until compare the call's start; --user and --ip the call's CDR.
    CSV and JSON add the figures of the worst report and the callee's tag.

    Example: sipprobe report quality --db sipprobe.db --max-mos 3.6 --format csv
    """
    from console import output
    from store.query import QUALITY_EXTRA, Filters, quality_stream
    from store.tables import CALL_QUALITY, CDR

    names = QUALITY_COLUMNS if fmt is RowFormat.table else \
        CALL_QUALITY.report_columns + QUALITY_EXTRA
    with store_errors():
        filters = Filters.parse(since=since, until=until, callid=callid, user=user, ip=ip,
                                min_mos=min_mos, max_mos=max_mos)
        query_limit = TABLE_LIMIT + 1 if fmt is RowFormat.table and limit is None else limit
        rows = quality_stream(db, filters, columns=names, limit=query_limit)
        cols = [output.table_columns(CDR if n in QUALITY_EXTRA else CALL_QUALITY, (n,))[0]
                for n in names]
        with quiet_pipe():
            output.write(rows, cols, fmt.value, wide=wide,
                         limit=(limit or TABLE_LIMIT) if fmt is RowFormat.table else None,
                         hint="--limit N for more, --format csv for all")


CALL_COLUMNS = ("start_time", "src_user", "dst_user", "sip_code", "ring_duration", "talk_time",
                "ended_by", "end_reason", "mos_avg_a", "mos_avg_b", "src_ip", "callid")


@report_app.command("calls")
def report_calls(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                 callid: CallidOpt = None, user: UserOpt = None, ip: IpOpt = None,
                 code: CodeOpt = None, end_reason: EndReasonOpt = None,
                 min_mos: MinMosOpt = None, max_mos: MaxMosOpt = None,
                 limit: LimitOpt = None, wide: WideOpt = False,
                 fmt: RowFormatOpt = RowFormat.table,
                 capture: Annotated[Optional[List[str]], typer.Option(
                     "--capture", metavar="FILE",
                     help="With --callid: also every SIP message of the call, read from this "
                          "capture (repeatable).")] = None):
    """One line per call, as sngrep's call list: when, who called whom, how long it rang and
    talked, how it ended and who ended it, and the average MOS (G.107) of each side's RTCP
    reports (mos_avg_a: the caller's, mos_avg_b: the callee's; empty without reports).
    With --callid, that call's timeline: INVITE, ringing, answer or failure, end, the acc rows
    of its transactions and its RTCP reports; with --capture too, every SIP message of it.

    Example: sipprobe report calls --db sipprobe.db --user 97239287044 --since yesterday
    """
    if callid is not None and fmt is RowFormat.table:
        from console.calls import print_timeline

        with store_errors(), _errors_taught(), quiet_pipe():
            print_timeline(db, callid, captures=capture or ())
        return
    print_rows("acc_cdrs", db, fmt, limit=limit, wide=wide, columns=CALL_COLUMNS, since=since,
               until=until, callid=callid, user=user, ip=ip, code=code, end_reason=end_reason,
               min_mos=min_mos, max_mos=max_mos)


class By(str, Enum):
    hour = "hour"
    day = "day"
    user = "user"
    domain = "domain"
    code = "code"


class SummaryFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@report_app.command("summary")
def report_summary(db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                   user: UserOpt = None, domain: DomainOpt = None, ip: IpOpt = None,
                   by: Annotated[Optional[By], typer.Option(
                       help="Also a table of the same figures per hour, day, caller (src_user), "
                            "destination domain or SIP code.")] = None,
                   fmt: Annotated[SummaryFormat, typer.Option(
                       "--format", "-f", help="table; json (keys calls, answered, asr, ner, "
                                              "acd, minutes, pdd_p50...); csv (the --by "
                                              "table)")] = SummaryFormat.table):
    """Calls, answered, ASR and NER (percent), ACD (mean talk time, seconds), minutes, post-dial
    delay and setup time percentiles, failure codes ranked, the busiest hours, the average MOS,
    the MOS bands of ITU-T G.109 and the share of calls under MOS 3.6, over a
    period (docs/summary.md defines each figure and which codes count as network failures).

    Example: sipprobe report summary --db sipprobe.db --since yesterday --by hour
    """
    from store.query import Filters
    from store.summary import summary

    with store_errors():
        result = summary(db, Filters.parse(since=since, until=until, user=user, domain=domain,
                                           ip=ip), by=by.value if by else None)
    with quiet_pipe():
        if fmt is SummaryFormat.json:
            typer.echo(json.dumps(result, indent=2))
        elif fmt is SummaryFormat.csv:
            from console.summary_view import groups_csv

            sys.stdout.write(groups_csv(result, by.value if by else None))
        else:
            from console.summary_view import print_summary

            print_summary(result, by.value if by else None)


class Chart(str, Enum):
    calls = "calls"
    setup = "setup"
    mos = "mos"


@report_app.command("runs")
def report_runs(db: DbOpt = "sipprobe.db", fmt: RowFormatOpt = RowFormat.table) -> None:
    """Every replay and sniff that wrote the database: host, pid, start, last commit, clean
    end, and whether it ended without a clean stop (killed, crashed: nothing after its last
    commit was recorded; the next run said so once).

    Example: sipprobe report runs --db sipprobe.db
    """
    from console import output
    from store import runs

    with store_errors():
        rows = runs.listing(db)
    columns = [output.Column(n, numeric=n in ("id", "pid"), cuttable=False)
               for n in runs.LISTED]
    with quiet_pipe():
        output.write((tuple(r[n] for n in runs.LISTED) for r in rows), columns, fmt.value,
                     wide=True, limit=None, hint="")


@report_app.command("chart")
def report_chart(kind: Annotated[Chart, typer.Argument(
                     help="calls: calls per hour, answered and failed; setup: the "
                          "distribution of setup time (INVITE to answer); mos: calls by "
                          "their worst side's lowest MOS.")] = Chart.calls,
                 db: DbOpt = "sipprobe.db", since: SinceOpt = None, until: UntilOpt = None,
                 user: UserOpt = None, ip: IpOpt = None,
                 png: Annotated[Optional[str], typer.Option(
                     "--png", metavar="FILE", help="Write the chart as a PNG image "
                                                   "(matplotlib) instead of drawing it here.")]
                 = None):
    """Charts in the terminal (plotext) or as an image: calls per hour, answered against
    failed, the setup-time distribution, or the MOS histogram (calls with RTCP reports).

    Example: sipprobe report chart calls --db sipprobe.db --since 7d --png calls.png
    """
    from console import charts
    from store.query import Filters

    with store_errors():
        filters = Filters.parse(since=since, until=until, user=user, ip=ip)
        data = {Chart.calls: charts.calls_per_hour, Chart.setup: charts.setup_histogram,
                Chart.mos: charts.mos_histogram}[kind](db, filters)
    if png:
        try:
            charts.save_png(data, png)
        except charts.NoMatplotlib as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot write {png}: {exc.strerror or exc}")
        typer.echo(f"wrote {png}", err=True)
        return
    with quiet_pipe():
        charts.draw_terminal(data)
