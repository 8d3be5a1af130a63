"""`sipprobe diff` printed: per table, the rows on one side only and the cells that differ,
then the verdict line."""
from __future__ import annotations

from datetime import datetime, timezone

from store.shadow import EPOCH_OF

SHOWN = ("method", "sip_code", "callid", "from_tag", "to_tag", "time", "start_time")


def _value(column: str, value) -> str:
    if value is None:
        return "NULL"
    if column in EPOCH_OF:
        return datetime.fromtimestamp(float(value), timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S.%f")[:-3]
    return repr(value) if isinstance(value, str) else str(value)


def _row(row: dict) -> str:
    return " ".join(f"{c}={_value(c, row[c])}" for c in SHOWN if c in row)


def verdict(result: dict) -> str:
    tables = result["tables"]
    equal = sum(p["equal"] for p in tables.values())
    if result["agree"]:
        return f"agree: {equal} rows equal in {', '.join(tables) or 'no table'}"
    counts = [sum(len(p[k]) for p in tables.values())
              for k in ("only_sipprobe", "only_proxy", "differ")]
    return (f"differ: {counts[0]} rows only in sipprobe, {counts[1]} only at the proxy, "
            f"{counts[2]} rows with different values, {equal} equal")


def print_diff(result: dict, echo) -> None:
    for table, part in result["tables"].items():
        rows = part["equal"] + len(part["differ"])
        echo(f"{table}: {rows} paired ({part['equal']} equal), "
             f"{len(part['only_sipprobe'])} only in sipprobe, "
             f"{len(part['only_proxy'])} only at the proxy")
        for side, label in (("only_sipprobe", "only in sipprobe"),
                            ("only_proxy", "only at the proxy")):
            for row in part[side]:
                echo(f"  {label}: {_row(row)}")
        for d in part["differ"]:
            echo(f"  differs: {_row(d['row'])}")
            for cell in d["columns"]:
                echo(f"    {cell['column']}: sipprobe {_value(cell['column'], cell['sipprobe'])}"
                     f", proxy {_value(cell['column'], cell['proxy'])}")
        if part.get("unended_left_out"):
            echo(f"  ({part['unended_left_out']} CDRs of calls with no end seen left out: "
                 "Kamailio writes none)")
    for table in result.get("skipped", ()):
        echo(f"{table}: not in the proxy's database, not compared")
    echo(verdict(result))
