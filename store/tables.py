"""The tables sipprobe writes, each declared once: its columns, and the record that fills them.

One `Table` per layout: ACC (the `acc` and `missed_calls` tables, which share theirs) and CDR
(`acc_cdrs`). Everything else about a table is derived from its declaration:

- the record classes sip_dissect/ hands to store/ (sip_dissect/records.py: AccRecord, CdrRecord,
  NamedTuples of `Table.record_fields`, field docs included);
- the DDL (store/schema.py: create_statements(), check_columns());
- the writer's rows and statements (store/rows.py: which record field fills which column, the
  itemgetters, the INSERT parameter order; store/worker.py: INSERT and the CDR upsert);
- the report columns (store/reports.py) and the terminal table's subset (cli.py).

A `Column` is a column of the table, in table order: Kamailio's columns first (`kamailio=`, in
Kamailio's order, so that queries written for the proxy's database run here), then sipprobe's
(`extra=`). Its `name` is Kamailio's column name; `type` its Python type (int, str, float:
INTEGER, TEXT, REAL); `nullable`, `default` and `primary_key` give the DDL; `values` the words it
may hold, where they are a fixed vocabulary (END_REASONS). It is filled from a record field:

- by default the column declares a record field of its own name, type (`| None` when nullable)
  and doc, and copies it as it is (`fill=COPY`);
- `field=Field(...)` declares a field of another type or meaning at this place, which the
  column fills by a derivation: `fill=TIME_TEXT` ('YYYY-MM-DD HH:MM:SS' of the field's epoch
  seconds, floored, as Kamailio's time_t) or `fill=MILLISECONDS` (seconds rounded to 3
  decimals);
- `field="name"` copies (or derives from) a field another column declared (time_epoch is the
  record's `time` as it is, while `time` is its text);
- a primary key is filled by SQLite and has no field.

The record's fields are, in order: the table's `route` field, if any (acc's `table`: which of
the layout's tables a record goes to; field 0, never stored), then the fields the columns
declare, in column order. Code builds records positionally (records.new_record): appending a
column appends a field; inserting one shifts the fields after it, and every builder with them.

A new table (the quality tables rtcp_reports, call_quality) is one more Table here plus its
name in LAYOUTS; a change to an existing table's columns needs a schema migration too
(store/schema.py: SCHEMA_VERSION). This module imports nothing (the writer process and the
replay's start-up load it).
"""
from __future__ import annotations

# how a column is filled from its record field (store/rows.py implements each)
COPY = "copy"  # the field's value as it is
TIME_TEXT = "time_text"  # 'YYYY-MM-DD HH:MM:SS' of floor(epoch seconds), UTC unless local_time
MILLISECONDS = "milliseconds"  # seconds rounded to the millisecond (round(x, 3))
FILLS = (COPY, TIME_TEXT, MILLISECONDS)
DURATION_DECIMALS = 3  # reports print seconds to the millisecond
EPOCH_DECIMALS = 6  # and packet times (epoch seconds) to the microsecond

_SQL_TYPES = {int: "INTEGER", str: "TEXT", float: "REAL"}


class Field:
    """A record field: name, Python type (annotation: `float | None`) and meaning."""

    __slots__ = ("name", "type", "doc")

    def __init__(self, name: str, type, doc: str = ""):  # noqa: A002
        self.name, self.type, self.doc = name, type, doc

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r})"


class Column:
    """A column of a table; see the module's docstring for how it is filled."""

    __slots__ = ("name", "type", "doc", "nullable", "default", "primary_key", "values", "field",
                 "fill", "by_store", "precision", "declared")

    def __init__(self, name: str, type, doc: str, *, nullable: bool = False,  # noqa: A002
                 default=None, primary_key: bool = False, values: tuple = (),
                 field: Field | str | None = None, fill: str = COPY, by_store: bool = False,
                 precision: int | None = None, declared: str | None = None):
        if type not in _SQL_TYPES:
            raise ValueError(f"column {name}: type {type!r} is not one of int, str, float")
        if fill not in FILLS:
            raise ValueError(f"column {name}: fill {fill!r} is not one of {FILLS}")
        if fill != COPY and field is None:
            raise ValueError(f"column {name}: a derived column ({fill}) names its field")
        self.name, self.type, self.doc = name, type, doc
        self.nullable, self.default, self.primary_key = nullable, default, primary_key
        self.values = tuple(values)
        self.fill = fill
        self.by_store = by_store
        self.declared = declared  # the DDL's type as another project's DDL spells it
        # decimals a report prints (CSV, tables): a float is seconds, shown to the millisecond,
        # unless the column says otherwise (epoch stamps: the microsecond)
        self.precision = precision if precision is not None or type is not float \
            else DURATION_DECIMALS
        if primary_key or by_store:
            # SQLite numbers the rows; a by_store column is filled by the writer from another
            # table (acc_cdrs' MOS summary from call_quality), never from the record
            self.field = None
        elif field is None:  # a field of its own: the column's name, type and meaning
            self.field = Field(name, type | None if nullable else type, doc)
        else:
            self.field = field

    @property
    def sql_type(self) -> str:
        return self.declared or _SQL_TYPES[self.type]

    @property
    def source(self) -> str | None:
        """The name of the record field the column is filled from (None: the primary key or a
        by_store column)."""
        return self.field if isinstance(self.field, str) or self.field is None \
            else self.field.name

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {self.sql_type})"


class Table:
    """The declaration of one table layout; see the module's docstring.

    names: the tables of this layout (acc and missed_calls share one). record / doc: the record
    class's name and docstring. route: the leading record field that names the table of a record
    (a layout of several tables). identity: the columns of the unique index that makes a row
    the same row (INSERT OR IGNORE). indexed: the columns with an index of their own, in
    creation order. clock: the packet-time column reports filter and sort on. summary: the
    columns of the terminal report table, in its order (CSV and JSON carry every column)."""

    def __init__(self, names, *, record: str, doc: str, kamailio: tuple, extra: tuple = (),
                 route: Field | None = None, identity: tuple = (), indexed: tuple = (),
                 clock: str | None = None, summary: tuple = (), key: str | None = None):
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.name = self.names[0]
        # what the store calls the layout (pipe messages, counts): its table's name, unless
        # another flavour's layout has that name too (OpenSIPS' acc: "opensips_acc")
        self.key = key or self.name
        self.record, self.doc, self.route = record, doc, route
        self.kamailio, self.extra = tuple(kamailio), tuple(extra)
        self.columns = self.kamailio + self.extra
        self.column_names = tuple(c.name for c in self.columns)
        self.kamailio_names = tuple(c.name for c in self.kamailio)
        self.identity, self.indexed = tuple(identity), tuple(indexed)
        self.clock, self.summary = clock, tuple(summary)
        fields = [route] if route is not None else []
        fields += [c.field for c in self.columns if isinstance(c.field, Field)]
        self.fields = tuple(fields)
        self.field_names = tuple(f.name for f in fields)
        self._check()

    def _check(self) -> None:
        """ValueError if the declaration contradicts itself (cheap: it runs at every start)."""
        where = f"table {self.name}"
        columns, fields = set(self.column_names), set(self.field_names)
        for kind, names, unique in (("column", self.column_names, columns),
                                    ("record field", self.field_names, fields)):
            if len(unique) < len(names):
                doubles = sorted({n for n in names if names.count(n) > 1})
                raise ValueError(f"{where}: {kind} declared twice: {', '.join(doubles)}")
        sources = {c.source for c in self.columns} - {None}
        if not sources <= fields:
            column = [c for c in self.columns if c.source not in fields | {None}][0]
            raise ValueError(f"{where}: column {column.name} is filled from "
                             f"{column.source!r}, which no column or route declares")
        clock = (self.clock,) if self.clock else ()
        for what, names in (("identity", self.identity), ("indexed", self.indexed),
                            ("summary", self.summary), ("clock", clock)):
            if not columns.issuperset(names):
                unknown = [n for n in names if n not in columns]
                raise ValueError(f"{where}: {what} names no column: {', '.join(unknown)}")

    def column(self, name: str) -> Column:
        return self.columns[self.column_names.index(name)]

    @property
    def record_fields(self) -> list[tuple[str, object]]:
        """(name, type) of the record's fields, for typing.NamedTuple(record, ...)."""
        return [(f.name, f.type) for f in self.fields]

    @property
    def kamailio_fields(self) -> tuple[str, ...]:
        """The record fields Kamailio's columns are filled from, in field order."""
        used = {c.source for c in self.kamailio}
        return tuple(f for f in self.field_names if f in used)

    @property
    def report_columns(self) -> tuple[str, ...]:
        """What a report returns (CSV and JSON): every column, in table order."""
        return self.column_names

    def __repr__(self) -> str:
        return f"Table({'/'.join(self.names)}: {', '.join(self.column_names)})"


# --- acc and missed_calls -------------------------------------------------------------------

ACC = Table(
    ("acc", "missed_calls"),
    record="AccRecord",
    doc="""A row of Kamailio's `acc` or `missed_calls` table (stock kamailio.cfg, WITH_ACCDB
    extras).

    Field names are Kamailio's column names; `time` is the packet time (epoch seconds with
    microseconds) of the final reply the proxy relayed upstream. Kamailio writes that time
    truncated to the second; store/ writes both forms.
    """,
    route=Field("table", str, '"acc" or "missed_calls"'),
    kamailio=(
        Column("id", int, "row number, INTEGER PRIMARY KEY as in Kamailio", primary_key=True),
        Column("method", str, "request method: INVITE, BYE, ...", default=""),
        Column("from_tag", str, "From tag of the request", default=""),
        Column("to_tag", str, "To tag of the final reply (INVITE) or of the request (in-dialog)",
               default=""),
        Column("callid", str, "Call-ID", default=""),
        Column("sip_code", str, "final reply code: three digits, as Kamailio stores it (TEXT)",
               default=""),
        Column("sip_reason", str, "reason phrase of the final reply", default=""),
        # TEXT, not Kamailio's TIMESTAMP: db_sqlite stores a Julian-day REAL there, while this
        # is the text its MySQL and Postgres backends show. No default, as in Kamailio.
        Column("time", str, "'YYYY-MM-DD HH:MM:SS' of floor(time_epoch), UTC unless opened "
                            "local_time", fill=TIME_TEXT,
               field=Field("time", float, "epoch seconds of the final reply relayed upstream")),
        Column("src_user", str, "$fU: From URI user", default=""),
        Column("src_domain", str, "$fd: From URI host", default=""),
        Column("src_ip", str, "$si: source IP of the request as the proxy received it",
               default=""),
        Column("dst_ouser", str, "$tU: To URI user", default=""),
        Column("dst_user", str, "$rU: request-URI user after the proxy rewrote it (as forwarded)",
               default=""),
        Column("dst_domain", str,
               "$rd: request-URI host after the proxy rewrote it (as forwarded)", default=""),
    ),
    # appended after Kamailio's columns so that those keep their positions
    extra=(
        Column("time_epoch", float, "packet time of the final reply, epoch seconds with "
                                    "microseconds", field="time", precision=EPOCH_DECIMALS),
        Column("cseq", int, "CSeq number of the request: with callid and tags it identifies "
                            "the row"),
    ),
    # What makes a row the same row (INSERT OR IGNORE: a rerun adds nothing): the transaction
    # and its final reply, not the time. Callid first, so that the unique index is also
    # Kamailio's acc_callid_idx and serves the report filter. Until schema 3 a SHA-1 of them was
    # stored in a row_key column with its own unique index: the hash and the fourth B-tree were
    # a quarter of the writer process's instructions.
    identity=("callid", "method", "cseq", "from_tag", "to_tag", "sip_code"),
    # time_epoch: report filters and their ORDER BY. No index on `time`: nothing sipprobe runs
    # reads it (time_epoch orders the same), and it cost 15% of the writer's CPU; files written
    # before keep theirs (an index is no part of the columns check_columns() compares).
    indexed=("time_epoch",),
    clock="time_epoch",
    # the terminal table: the columns that tell calls apart fit in 100 characters; tags,
    # domains and the extras are in CSV and JSON
    summary=("time", "method", "sip_code", "sip_reason", "src_user", "dst_ouser", "dst_user",
             "src_ip", "callid"),
)

# acc_cdrs' quality summary (schema 4): NULL until a report of the call is stored
QUALITY_SUMMARY = (
    Column("mos_min", float, "the worst side's lowest MOS (G.107) of the call's RTCP reports; "
                             "NULL: no report", nullable=True, by_store=True),
    Column("mos_side", str, "the side (A caller, B callee) of mos_min", nullable=True,
           by_store=True),
    Column("mos_avg_a", float, "side A's (the caller's reports) average MOS", nullable=True,
           by_store=True),
    Column("mos_avg_b", float, "side B's (the callee's reports) average MOS", nullable=True,
           by_store=True),
    Column("mos_rtpengine_min", float, "the lowest MOS rtpengine would give the call (both "
                                       "sides)", nullable=True, by_store=True),
)
# who ended a call (acc_cdrs.ended_by)
ENDED_BY = ("caller", "callee", "proxy", "timeout", "")

# --- acc_cdrs (lab/schema.sql): one row per call, as Kamailio's acc module writes with
# cdr_enable. Its times are epoch seconds with microseconds in the record; Kamailio stores
# start/end truncated to the second and duration with milliseconds.

CDR = Table(
    "acc_cdrs",
    record="CdrRecord",
    doc="""A row of Kamailio's `acc_cdrs` (lab/schema.sql column names) plus sipprobe's extras.

    Times are epoch seconds with microseconds; Kamailio stores start/end truncated to the
    second and duration with milliseconds.""",
    kamailio=(
        Column("id", int, "row number, INTEGER PRIMARY KEY as in Kamailio", primary_key=True),
        Column("start_time", str, "'YYYY-MM-DD HH:MM:SS' of floor(start_epoch), UTC unless "
                                  "local_time", fill=TIME_TEXT,
               field=Field("start_time", float, "arrival of the initial INVITE")),
        Column("end_time", str, "'YYYY-MM-DD HH:MM:SS' of floor(end_epoch), UTC unless "
                                "local_time", fill=TIME_TEXT,
               field=Field("end_time", float, "arrival of the BYE; = start_time for a failed "
                                              "call")),
        Column("duration", float, "end - start in seconds, rounded to the millisecond, ringing "
                                  "included", fill=MILLISECONDS,
               field=Field("duration", float, "end_time - start_time, rounded to the "
                                              "millisecond")),
        Column("callid", str, "Call-ID"),
        Column("from_tag", str, "the caller's From tag"),
        Column("to_tag", str, "the confirmed callee's or the failure's To tag; NULL (None): the "
                              "proxy's own reply", nullable=True),
        Column("src_user", str, "From URI user"),
        Column("src_domain", str, "From URI host"),
        Column("src_ip", str, "source IP of the INVITE as the proxy received it"),
        Column("dst_ouser", str, "To URI user"),
        Column("dst_user", str, "request-URI user as dialled (before the proxy rewrote it)"),
        Column("dst_domain", str, "request-URI host as dialled (before the proxy rewrote it)"),
        Column("sip_code", str, "final reply code, three digits (TEXT, as Kamailio stores it); "
                                "NULL (None): no relayed reply", nullable=True),
        Column("sip_reason", str, "reason phrase of the final reply; NULL (None): no relayed "
                                  "reply", nullable=True),
    ),
    extra=(
        Column("start_epoch", float, "arrival of the initial INVITE, epoch seconds with "
                                     "microseconds", field="start_time", precision=EPOCH_DECIMALS),
        Column("end_epoch", float, "arrival of the BYE (= start_epoch for a failed call)",
               field="end_time", precision=EPOCH_DECIMALS),
        Column("created", float, "dialog creation, = start_epoch", precision=EPOCH_DECIMALS),
        Column("ring_time", float, "first 180/183, NULL if none", nullable=True,
               precision=EPOCH_DECIMALS),
        Column("answer_time", float, "the 2xx, NULL if none", nullable=True,
               precision=EPOCH_DECIMALS),
        Column("setuptime", float, "answer_time - created (OpenSIPS), NULL if unanswered",
               nullable=True),
        Column("pdd", float, "post-dial delay: ring_time - created, NULL if no ringing",
               nullable=True),
        Column("ended_by", str, "who ended the call: caller or callee (BYE, or the caller's "
                                "CANCEL, the callee's failure reply), proxy (a BYE or failure "
                                "reply of its own), timeout (408 with no CANCEL) or '' (open, "
                                "expired)", values=ENDED_BY),
        # the vocabulary of a call's end: END_REASONS below, and the names for each
        Column("end_reason", str, "how the call ended: completed, cancelled, rejected, expired "
                                  "(no BYE within dialog_timeout) or open (no end seen yet); "
                                  "unanswered (no reply at all, no relay: --cdr-unanswered)",
               values=("completed", "cancelled", "rejected", "expired", "open", "unanswered")),
        # schema 4 (store/schema.py: ADDED_COLUMNS); a row of an older file has them NULL
        # until its call is completed again, or computed by the migration where it can be
        Column("ring_duration", float, "seconds from the INVITE to the answer, the failure "
                                       "reply or the caller's CANCEL: what the caller waited "
                                       "(duration = ring_duration + talk_time when answered); "
                                       "NULL: open with no reply", nullable=True,
               fill=MILLISECONDS, field=Field("ring_duration", float | None, "the wait")),
        Column("talk_time", float, "seconds from the answer to the end (billsec, VoIPmonitor's "
                                   "connect_duration), 0 for a call never answered",
               nullable=True, fill=MILLISECONDS,
               field=Field("talk_time", float | None, "answer to end")),
        # schema 4: the voice quality summary, written by the store from call_quality when
        # the call's reports are in (after the CDR: reports come up to MEDIA_GRACE later)
        *QUALITY_SUMMARY,
    ),
    identity=("callid", "from_tag"),  # one row per call, completed in place
    indexed=("start_epoch",),  # no start_time index either, as for acc's `time`
    clock="start_epoch",
    summary=("start_time", "duration", "talk_time", "sip_code", "src_user", "dst_user",
             "ended_by", "end_reason", "callid"),
)

# --- voice quality (rtcp_mos/): one row per RTCP report block, one per call and side

def _real(name: str, doc: str) -> Column:
    return Column(name, float, doc, nullable=True)


RTCP_REPORTS = Table(
    "rtcp_reports",
    record="RtcpReportRecord",
    doc="""One RTCP report block (RFC 3550 section 6.4) as seen on the wire, bound to its call.

    A report relayed by a media relay is seen once per leg: one row per copy. Raw fields are as
    on the wire; the figures after them are sipprobe's (docs/quality.md).""",
    kamailio=(),
    extra=(
        Column("id", int, "row number", primary_key=True),
        Column("time_epoch", float, "capture time of the RTCP datagram, epoch seconds"),
        Column("callid", str, "Call-ID of the call the report belongs to; '' unbound",
               default=""),
        Column("from_tag", str, "the call's caller From tag; '' unbound", default=""),
        Column("side", str, "A: sent by the caller's side, B: by the callee's (as rtpengine "
                            "labels them); '' unbound", default=""),
        Column("bound_by", str, "source (the sender's SDP address), destination (the "
                                "receiver's: NAT), ssrc (learned earlier) or '' (unbound)",
               default=""),
        Column("src_ip", str, "sender of the datagram"),
        Column("src_port", int, "its port"),
        Column("dst_ip", str, "receiver of the datagram"),
        Column("dst_port", int, "its port"),
        Column("frame", int, "frame number in the capture"),
        Column("packet_type", str, "SR or RR"),
        Column("reporter_ssrc", int, "SSRC of the report's sender"),
        Column("source_ssrc", int, "SSRC of the stream the block reports on"),
        Column("fraction_lost", int, "8-bit fraction lost since the previous report (/256)"),
        Column("cumulative_lost", int, "cumulative packets lost (signed 24 bits)"),
        Column("highest_seq", int, "extended highest sequence number received"),
        Column("jitter", int, "interarrival jitter, RTP timestamp units"),
        Column("lsr", int, "middle 32 bits of the NTP time of the last SR received (0: none)"),
        Column("dlsr", int, "delay since that SR, 1/65536 s"),
        _real("loss_pct", "percent lost since the previous report of this reporter about this "
                          "source (the fraction for the first one); NULL: nothing expected"),
        _real("jitter_ms", "jitter in ms at the negotiated clock rate (8000 when unknown)"),
        _real("rtt_ms", "round trip between the probe and the reporter from LSR/DLSR and the "
                        "SR's capture time; NULL: no SR matched"),
        _real("delay_ms", "one-way delay: rtt/2 (the pair's last one) + 2 x jitter + ptime + "
                          "codec look-ahead"),
        Column("codec", str, "SDP encoding name of the stream; NULL unknown", nullable=True),
        Column("codec_fallback", int, "1: no G.113 Ie/Bpl for the codec, G.711 with PLC's "
                                      "used"),
        _real("burst_ratio", "G.107 BurstR: from XR burst/gap metrics, 1 without"),
        _real("r_factor", "G.107 R"),
        _real("mos", "G.107 MOS (Annex B)"),
        _real("mos_rtpengine", "the MOS rtpengine computes for this block; NULL: it gives none "
                               "(no round trip yet)"),
        _real("xr_r_factor", "R the endpoint reported in XR VoIP Metrics"),
        _real("xr_mos_lq", "MOS-LQ the endpoint reported in XR VoIP Metrics"),
        _real("xr_mos_cq", "MOS-CQ the endpoint reported in XR VoIP Metrics"),
    ),
    # the same datagram's block again (a rerun) is the same row; a relayed copy differs in
    # its addresses and time
    identity=("time_epoch", "src_ip", "src_port", "dst_ip", "dst_port", "packet_type",
              "reporter_ssrc", "source_ssrc"),
    indexed=("callid",),
    clock="time_epoch",
    summary=("time_epoch", "side", "packet_type", "reporter_ssrc", "source_ssrc", "loss_pct",
             "jitter_ms", "rtt_ms", "mos", "mos_rtpengine", "callid"),
)

CALL_QUALITY = Table(
    "call_quality",
    record="CallQualityRecord",
    doc="""A call's voice quality per side (A: the caller's reports, B: the callee's), each
    report counted once however many legs it crossed; written when MEDIA_GRACE has passed
    after the call's end, or at the end of input. NULL where no report exists.""",
    kamailio=(),
    extra=(
        Column("id", int, "row number", primary_key=True),
        Column("callid", str, "Call-ID"),
        Column("from_tag", str, "the caller's From tag"),
        Column("side", str, "A (the caller's reports) or B (the callee's)", values=("A", "B")),
        Column("start_epoch", float, "the call's initial INVITE, epoch seconds"),
        Column("reports", int, "report blocks, each once"),
        Column("codec", str, "SDP encoding name; NULL unknown", nullable=True),
        _real("mos_min", "lowest G.107 MOS"),
        _real("mos_min_epoch", "time of the report with the lowest MOS"),
        _real("mos_avg", "average G.107 MOS"),
        _real("mos_max", "highest G.107 MOS"),
        _real("loss_pct_avg", "average interval loss, percent"),
        _real("jitter_ms_avg", "average jitter, ms"),
        _real("rtt_ms_avg", "average round trip, ms (blocks with one)"),
        _real("delay_ms_avg", "average one-way delay estimate, ms"),
        _real("loss_pct_at_min", "interval loss of the lowest-MOS report"),
        _real("jitter_ms_at_min", "jitter of the lowest-MOS report"),
        _real("rtt_ms_at_min", "round trip of the lowest-MOS report"),
        _real("delay_ms_at_min", "one-way delay of the lowest-MOS report"),
        _real("mos_rtpengine_min", "rtpengine's lowest MOS (Kamailio mos_min_pv, per side)"),
        _real("mos_rtpengine_avg", "rtpengine's average MOS (mos_average_pv)"),
        _real("mos_rtpengine_max", "rtpengine's highest MOS (mos_max_pv)"),
        _real("xr_mos_cq_min", "lowest MOS-CQ the endpoint reported in XR"),
    ),
    identity=("callid", "from_tag", "side"),
    indexed=("start_epoch",),
    clock="start_epoch",
    summary=("side", "reports", "codec", "mos_min", "mos_avg", "mos_max", "loss_pct_avg",
             "jitter_ms_avg", "rtt_ms_avg", "mos_rtpengine_avg", "callid"),
)

# --- OpenSIPS 3.x acc (--flavour opensips, docs/opensips.md): acc and missed_calls as
# OpenSIPS' scripts/sqlite/acc-create.sql declares them (acc version 7, missed_calls 5), column
# types spelled as there; the proxy's columns go in `kamailio=` (the slot of the proxy's own).
# sipprobe's src/dst columns follow, as the `db_extra` / `$acc_extra` an operator declares:
#   modparam("acc", "extra_fields", "db: src_user; src_domain; src_ip; dst_ouser; dst_user;
#            dst_domain")  with  $acc_extra(src_user) = $fU; ... in the script.

def _opensips_core(time_doc: str) -> tuple:
    """The columns OpenSIPS' acc and missed_calls begin with (acc.c: acc_db_init_keys)."""
    return (
        Column("id", int, "row number (INTEGER PRIMARY KEY AUTOINCREMENT in OpenSIPS)",
               primary_key=True),
        Column("method", str, "request method: INVITE", default="", declared="CHAR(16)"),
        Column("from_tag", str, "From tag of the INVITE", default="", declared="CHAR(64)"),
        Column("to_tag", str, "To tag of the final reply", default="", declared="CHAR(64)"),
        Column("callid", str, "Call-ID", default="", declared="CHAR(64)"),
        Column("sip_code", str, "final reply code, three digits", default="",
               declared="CHAR(3)"),
        Column("sip_reason", str, "reason phrase of the final reply", default="",
               declared="CHAR(32)"),
        Column("time", str, "'YYYY-MM-DD HH:MM:SS' of floor(time_epoch), UTC unless "
                            "local_time", fill=TIME_TEXT, declared="DATETIME",
               field=Field("time", float, time_doc)),
    )


def _opensips_created() -> tuple:
    return (
        Column("setuptime", int, "floor(time) - floor(created): whole seconds from the INVITE "
                                 "to the answer (acc) or to the failure (missed_calls)",
               default=0, declared="INTEGER"),
        Column("created", str, "'YYYY-MM-DD HH:MM:SS' of floor(created_epoch): the INVITE",
               nullable=True, fill=TIME_TEXT, declared="DATETIME",
               field=Field("created", float, "arrival of the initial INVITE (do_accounting)")),
    )


def _opensips_extra() -> tuple:
    return (
        Column("src_user", str, "$fU: From URI user", default=""),
        Column("src_domain", str, "$fd: From URI host", default=""),
        Column("src_ip", str, "$si: source IP of the INVITE", default=""),
        Column("dst_ouser", str, "$tU: To URI user", default=""),
        Column("dst_user", str, "$rU: request-URI user as forwarded", default=""),
        Column("dst_domain", str, "$rd: request-URI host as forwarded", default=""),
        Column("time_epoch", float, "time as epoch seconds with microseconds", field="time",
               precision=EPOCH_DECIMALS),
        Column("created_epoch", float, "created as epoch seconds with microseconds",
               field="created", precision=EPOCH_DECIMALS),
        Column("cseq", int, "CSeq number of the INVITE: with callid and tags it identifies "
                            "the row"),
    )


OPENSIPS_ACC = Table(
    "acc", key="opensips_acc",
    record="OpensipsAccRecord",
    doc="""A row of OpenSIPS 3.x's `acc` as do_accounting("db", "cdr|missed[|failed]") writes
    it: one row per answered call, written at its BYE (acc.c: acc_db_cdrs), or a failed INVITE
    with the `failed` flag (acc.c: acc_db_request, duration 0).""",
    kamailio=(
        *_opensips_core("epoch seconds of the 2xx relayed upstream (the CDR's start), or of "
                        "the failure reply"),
        Column("duration", int, "ceil(ms_duration / 1000): seconds from the answer to the BYE",
               default=0, declared="INTEGER"),
        Column("ms_duration", int, "milliseconds from the answer to the BYE, truncated",
               default=0, declared="INTEGER"),
        *_opensips_created(),
    ),
    extra=_opensips_extra(),
    identity=("callid", "method", "cseq", "from_tag", "to_tag", "sip_code"),
    indexed=("time_epoch",),
    clock="time_epoch",
    summary=("time", "sip_code", "duration", "setuptime", "src_user", "dst_user", "callid"),
)

OPENSIPS_MISSED = Table(
    "missed_calls", key="opensips_missed_calls",
    record="OpensipsMissedRecord",
    doc="""A row of OpenSIPS 3.x's `missed_calls`: the first failure of an INVITE marked
    with do_accounting's `missed` flag (acc_logic.c: on_missed; acc.c: acc_db_request).""",
    kamailio=(*_opensips_core("epoch seconds of the failure reply relayed upstream"),
              *_opensips_created()),
    extra=_opensips_extra(),
    identity=("callid", "method", "cseq", "from_tag", "to_tag", "sip_code"),
    indexed=("time_epoch",),
    clock="time_epoch",
    summary=("time", "sip_code", "sip_reason", "setuptime", "src_user", "dst_user", "callid"),
)
# the table versions OpenSIPS checks at start-up (db_check_table_version) in its `version` table
OPENSIPS_VERSIONS = {"acc": 7, "missed_calls": 5}

LAYOUTS = (ACC, CDR, RTCP_REPORTS, CALL_QUALITY)
MEDIA_TABLES = (RTCP_REPORTS.name, CALL_QUALITY.name)
BY_NAME = {name: table for table in LAYOUTS for name in table.names}  # "missed_calls": ACC
# the layouts a database of each flavour holds (store/schema.py creates and checks them)
FLAVOURS = {"kamailio": LAYOUTS, "opensips": (OPENSIPS_ACC, OPENSIPS_MISSED, RTCP_REPORTS,
                                               CALL_QUALITY)}
# the layouts the writer stores through its generic path (pipe key -> layout)
GENERIC = {t.key: t for t in (RTCP_REPORTS, CALL_QUALITY, OPENSIPS_ACC, OPENSIPS_MISSED)}

# A call's end_reason, spelled here only
END_REASONS = CDR.column("end_reason").values
COMPLETED, CANCELLED, REJECTED, EXPIRED, OPEN, UNANSWERED = END_REASONS
UNENDED = (OPEN, EXPIRED, UNANSWERED)  # no end seen: Kamailio writes no CDR for these
