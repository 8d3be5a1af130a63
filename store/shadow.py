"""Shadow accounting: sipprobe's acc, missed_calls and acc_cdrs rows against the proxy's own
(store/proxydb.py), row by row and column by column, for `sipprobe diff`.

Rows are paired on their identity (acc, missed_calls: callid, from_tag, to_tag, method,
sip_code, and cseq where the proxy stores it; acc_cdrs: callid, from_tag), several rows of one
identity in time order. Then every column both sides have is compared: text with NULL and ''
equal (Kamailio's cdr_extra writes NULL for an unset value), times within the proxy's one-second
resolution (it stores its clock truncated to the second), durations within one second.
"""
from __future__ import annotations

from store.proxydb import read_tables
from store.query import Filters, stream
from store.tables import BY_NAME, UNENDED

TABLES = ("acc", "missed_calls", "acc_cdrs")
IDENTITY = {"acc": ("callid", "from_tag", "to_tag", "method", "sip_code"),
            "missed_calls": ("callid", "from_tag", "to_tag", "method", "sip_code"),
            "acc_cdrs": ("callid", "from_tag")}
# sipprobe's epoch column behind each Kamailio time column
EPOCH_OF = {"time": "time_epoch", "start_time": "start_epoch", "end_time": "end_epoch"}
CLOCK = {"acc": "time", "missed_calls": "time", "acc_cdrs": "start_time"}
TIME_TOLERANCE = 1.0  # seconds: the proxy's resolution
NUMERIC = ("duration",)


def same(column: str, probe, proxy) -> bool:
    if column in EPOCH_OF or column in NUMERIC:
        if probe is None or proxy is None:
            return probe is None and proxy is None
        return abs(float(probe) - float(proxy)) <= TIME_TOLERANCE
    return ("" if probe is None else str(probe)) == ("" if proxy is None else str(proxy))


def _probe_rows(db: str, table: str, filters: Filters) -> tuple[list[dict], int]:
    """sipprobe's rows with Kamailio's time columns as epoch seconds, and how many CDRs of
    calls with no end seen were left out (Kamailio writes no CDR for those)."""
    names = BY_NAME[table].report_columns
    rows, unended = [], 0
    for values in stream(table, db, filters, columns=names):
        row = dict(zip(names, values))
        if table == "acc_cdrs" and row.get("end_reason") in UNENDED:
            unended += 1
            continue
        for kam, epoch in EPOCH_OF.items():
            if kam in row:
                row[kam] = row[epoch]
        rows.append(row)
    return rows, unended


def _in_period(t, since, until) -> bool:
    return t is None or ((since is None or t >= since) and (until is None or t < until))


def compare_table(table: str, probe: list[dict], proxy_columns, proxy: list[dict],
                  since=None, until=None) -> dict:
    layout = BY_NAME[table]
    identity = IDENTITY[table] + (("cseq",) if "cseq" in proxy_columns else ())
    columns = [c for c in layout.kamailio_names if c in proxy_columns and c != "id"]
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
                     for c in columns if not same(c, a.get(c), b.get(c))]
            if cells:
                differ.append({"row": {c: a.get(c) for c in identity}, "columns": cells})
            else:
                equal += 1
        for extra, out in ((mine[len(theirs):], only_probe), (theirs[len(mine):], only_proxy)):
            out += [{c: r.get(c) for c in columns} for r in extra
                    if _in_period(r.get(clock), since, until)]
    return {"identity": list(identity), "columns": columns, "equal": equal,
            "only_sipprobe": only_probe, "only_proxy": only_proxy, "differ": differ}


def diff(db: str, proxy_db: str, filters: Filters = Filters(), tables=TABLES) -> dict:
    """The comparison of each table both databases have: rows equal, rows on one side only,
    rows that differ (the columns and both values); `agree` when nothing differs."""
    proxy = read_tables(proxy_db, tables)
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
        part = compare_table(table, mine, columns, rows, filters.since, filters.until)
        part["unended_left_out"] = unended
        result["tables"][table] = part
    result["agree"] = all(not (p["only_sipprobe"] or p["only_proxy"] or p["differ"])
                          for p in result["tables"].values())
    return result
