"""Shadow accounting: sipprobe's acc, missed_calls and acc_cdrs rows against the proxy's own
(store/proxydb.py), row by row and column by column, for `sipprobe diff`; or, for a file written
--flavour opensips, its acc and missed_calls against an OpenSIPS proxy's.

Rows are paired on their identity (acc, missed_calls: callid, from_tag, to_tag, method,
sip_code, and cseq where the proxy stores it; acc_cdrs: callid, from_tag), several rows of one
identity in time order. Then every column both sides have is compared: text with NULL and ''
equal (Kamailio's cdr_extra writes NULL for an unset value), times within the proxy's one-second
resolution (it stores its clock truncated to the second), Kamailio's CDR duration within one
second. OpenSIPS' whole-second figures (duration, setuptime) must be equal and ms_duration
within MS_TOLERANCE (docs/opensips.md). Which proxy wrote the database is read from its
columns (OPENSIPS_MARKS); a proxy of the other flavour than the file's is an error.
"""
from __future__ import annotations

from store import StoreError
from store.proxydb import TABLES, read_tables
from store.query import Filters, file_layout, flavour_of, stream
from store.tables import UNENDED

# the tables each flavour's proxy keeps (OpenSIPS' CDR is its acc row)
FLAVOUR_TABLES = {"kamailio": TABLES, "opensips": ("acc", "missed_calls")}
# columns only OpenSIPS' tables have (acc.c acc_db_init_keys; scripts/sqlite/acc-create.sql)
OPENSIPS_MARKS = {"acc": ("duration", "ms_duration", "setuptime", "created"),
                  "missed_calls": ("setuptime", "created")}
IDENTITY = {"acc": ("callid", "from_tag", "to_tag", "method", "sip_code"),
            "missed_calls": ("callid", "from_tag", "to_tag", "method", "sip_code"),
            "acc_cdrs": ("callid", "from_tag")}
# sipprobe's epoch column behind each proxy time column
EPOCH_OF = {"time": "time_epoch", "start_time": "start_epoch", "end_time": "end_epoch",
            "created": "created_epoch"}
CLOCK = {"acc": "time", "missed_calls": "time", "acc_cdrs": "start_time"}
TIME_TOLERANCE = 1.0  # seconds: the proxy's resolution
# OpenSIPS measures ms_duration on its own clock (TIMEVAL_MS_DIFF of the 2xx and the BYE), the
# probe on packet times: 2 ms apart at most on the lab's 30 answered calls (2026-12-06)
MS_TOLERANCE = 10
# the numeric columns compared with a tolerance, per flavour; the rest as text
TOLERANCE = {
    "kamailio": {"time": TIME_TOLERANCE, "start_time": TIME_TOLERANCE,
                 "end_time": TIME_TOLERANCE, "duration": TIME_TOLERANCE},
    "opensips": {"time": TIME_TOLERANCE, "created": TIME_TOLERANCE, "duration": 0,
                 "setuptime": 0, "ms_duration": MS_TOLERANCE},
}


def same(column: str, probe, proxy, tolerance=TOLERANCE["kamailio"]) -> bool:
    if column in tolerance:
        if probe is None or proxy is None:
            return probe is None and proxy is None
        try:
            return abs(float(probe) - float(proxy)) <= tolerance[column]
        except ValueError:  # a proxy's text that is no number differs
            return False
    return ("" if probe is None else str(probe)) == ("" if proxy is None else str(proxy))


def proxy_flavour(proxy: dict) -> str:
    """opensips when the proxy's acc or missed_calls has OpenSIPS' own columns."""
    for table, marks in OPENSIPS_MARKS.items():
        if table in proxy and set(marks) <= set(proxy[table][0]):
            return "opensips"
    return "kamailio"


def _probe_rows(db: str, table: str, filters: Filters) -> tuple[list[dict], int]:
    """sipprobe's rows with the proxy's time columns as epoch seconds, and how many CDRs of
    calls with no end seen were left out (Kamailio writes no CDR for those)."""
    names = file_layout(db, table).report_columns
    rows, unended = [], 0
    for values in stream(table, db, filters, columns=names):
        row = dict(zip(names, values))
        if table == "acc_cdrs" and row.get("end_reason") in UNENDED:
            unended += 1
            continue
        for kam, epoch in EPOCH_OF.items():
            if kam in row and epoch in row:
                row[kam] = row[epoch]
        rows.append(row)
    return rows, unended


def _compared(layout, flavour: str, proxy_columns) -> list[str]:
    """The columns of `layout` compared with the proxy's: Kamailio's own; OpenSIPS' own and
    the acc_extra columns the proxy declares (not sipprobe's epochs and cseq)."""
    if flavour == "kamailio":
        names = layout.kamailio_names
    else:
        names = tuple(c for c in layout.column_names
                      if c != "cseq" and c not in EPOCH_OF.values())
    return [c for c in names if c in proxy_columns and c != "id"]


def _in_period(t, since, until) -> bool:
    return t is None or ((since is None or t >= since) and (until is None or t < until))


def compare_table(table: str, probe: list[dict], proxy_columns, proxy: list[dict],
                  since=None, until=None, *, layout=None, flavour: str = "kamailio") -> dict:
    from store.tables import BY_NAME

    layout = layout or BY_NAME[table]
    identity = IDENTITY[table] + (("cseq",) if "cseq" in proxy_columns else ())
    columns = _compared(layout, flavour, proxy_columns)
    tolerance = TOLERANCE[flavour]
    clock = CLOCK[table]
    groups: dict[tuple, tuple[list, list]] = {}
    for side, rows in ((0, probe), (1, proxy)):
        for row in rows:
            key = tuple("" if row.get(c) is None else str(row.get(c)) for c in identity)
            groups.setdefault(key, ([], []))[side].append(row)
    only_probe, only_proxy, differ, equal = [], [], [], 0
    for key in sorted(groups):
        mine, theirs = (sorted(g, key=lambda r: r.get(clock) or 0.0) for g in groups[key])
        for a, b in zip(mine, theirs):
            if not _in_period(a.get(clock), since, until):
                continue
            cells = [{"column": c, "sipprobe": a.get(c), "proxy": b.get(c)}
                     for c in columns if not same(c, a.get(c), b.get(c), tolerance)]
            if cells:
                differ.append({"row": {c: a.get(c) for c in identity}, "columns": cells})
            else:
                equal += 1
        for extra, out in ((mine[len(theirs):], only_probe), (theirs[len(mine):], only_proxy)):
            out += [{c: r.get(c) for c in columns} for r in extra
                    if _in_period(r.get(clock), since, until)]
    return {"identity": list(identity), "columns": columns, "equal": equal,
            "only_sipprobe": only_probe, "only_proxy": only_proxy, "differ": differ}


def diff(db: str, proxy_db: str, filters: Filters = Filters(), tables=None) -> dict:
    """The comparison of each table both databases have (`tables`, default: every table of
    the flavour): rows equal, rows on one side only, rows that differ (the columns and both
    values); `agree` when nothing differs. StoreError when the proxy's flavour is not the
    file's, or a table is not the flavour's."""
    proxy = read_tables(proxy_db, TABLES)
    flavour = check_flavours(db, proxy_db, proxy)
    own = FLAVOUR_TABLES[flavour]
    tables = own if tables is None else tuple(tables)
    for table in tables:
        if table not in own:
            raise StoreError(f"{db} and {proxy_db} hold {flavour}'s accounting, which has no "
                             f"{table} table: compare {' or '.join(own)}")
    # a row near the period's edge is fetched from both sides a second beyond it, paired,
    # then kept if sipprobe's time (or the proxy's, alone) is in the period
    wide = Filters(since=None if filters.since is None else filters.since - TIME_TOLERANCE,
                   until=None if filters.until is None else filters.until + TIME_TOLERANCE)
    result = {"tables": {}, "skipped": [t for t in tables if t not in proxy]}
    for table in tables:
        if table not in proxy:
            continue
        columns, rows = proxy[table]
        rows = [r for r in rows if _in_period(r.get(CLOCK[table]), wide.since, wide.until)]
        mine, unended = _probe_rows(db, table, wide)
        part = compare_table(table, mine, columns, rows, filters.since, filters.until,
                             layout=file_layout(db, table), flavour=flavour)
        part["unended_left_out"] = unended
        result["tables"][table] = part
    result["agree"] = all(not (p["only_sipprobe"] or p["only_proxy"] or p["differ"])
                          for p in result["tables"].values())
    return result


def check_flavours(db: str, proxy_db: str, proxy: dict) -> str:
    """The flavour both databases hold; StoreError naming both when they differ."""
    theirs, mine = proxy_flavour(proxy), flavour_of(db)
    if theirs == mine:
        return mine
    how = {"opensips": "OpenSIPS' (acc with duration, ms_duration, setuptime, created)",
           "kamailio": "Kamailio's (no setuptime or created columns)"}
    raise StoreError(f"the proxy database {proxy_db} holds {how[theirs]} accounting tables, "
                     f"{db} {mine}-flavour rows: replay the capture with --flavour {theirs} "
                     f"into a new file (sipprobe replay CAPTURE --db NEW.db --flavour {theirs}) "
                     "and compare that")
