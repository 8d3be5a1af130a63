"""Report rows out as they come from the cursor: a terminal table, CSV, JSON or NDJSON.

The table never breaks a value across lines: its widths come from the first SAMPLE rows (read
at once, so the first line shows in milliseconds on any size of report); when the terminal is
narrower, text columns (Call-IDs, reasons, users, domains, tags) are cut with a marker `…`,
while numbers, times and addresses stay whole. `wide` cuts nothing. A later value wider than
its column is cut the same way if it is text, printed whole (shifting its row) otherwise.

Floats print with the column's fixed precision (store/tables.py Column.precision): seconds to
the millisecond, epoch stamps to the microsecond. Times are UTC unless the database says local.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from itertools import islice

SAMPLE = 200  # rows read before the first line: enough to size the columns
GAP = "  "
# text that may be cut in a narrow terminal; everything else is a number, a time or an address
CUTTABLE = ("callid", "sip_reason", "src_user", "dst_user", "dst_ouser", "src_domain",
            "dst_domain", "from_tag", "to_tag", "who", "reason")
MIN_CUT = 8  # a cut column keeps at least this many characters


class Column:
    """How a report column prints: its name, header, decimals and alignment."""

    __slots__ = ("name", "header", "precision", "numeric", "cuttable")

    def __init__(self, name: str, *, header: str | None = None, precision: int | None = None,
                 numeric: bool = False, cuttable: bool | None = None):
        self.name, self.header = name, header or name
        self.precision, self.numeric = precision, numeric
        self.cuttable = name in CUTTABLE if cuttable is None else cuttable


def table_columns(layout, names, clock: str = "UTC") -> list[Column]:
    """Columns of a store.tables.Table layout; text time columns say their clock."""
    out = []
    for name in names:
        c = layout.column(name)
        header = f"{name} ({clock})" if c.fill == "time_text" else name
        out.append(Column(name, header=header, precision=c.precision,
                          numeric=c.type in (int, float) and c.fill != "time_text"))
    return out


def text(value, precision: int | None) -> str:
    """A value as CSV and the table print it: floats to `precision` decimals, NULL empty."""
    if value is None:
        return ""
    if isinstance(value, float) and precision is not None:
        return f"{value:.{precision}f}"
    return str(value)


def json_value(value, precision: int | None):
    if isinstance(value, float) and precision is not None:
        return round(value, precision)
    return value


def write(rows, columns: list[Column], fmt: str, *, out=None, wide: bool = False,
          width: int | None = None, limit: int | None = None, hint: str = "") -> int:
    """Write `rows` (tuples in `columns` order, any iterable: a cursor streams) as `fmt`
    (table, csv, json, ndjson). `limit`: a table stops there and says how to see the rest
    (`hint`); CSV and JSON take what the query gave. Returns the number of rows written."""
    out = out or sys.stdout
    if fmt == "csv":
        return _csv(rows, columns, out)
    if fmt == "json":
        return _json(rows, columns, out)
    if fmt == "ndjson":
        n = 0
        for row in rows:
            out.write(json.dumps({c.name: json_value(v, c.precision)
                                  for c, v in zip(columns, row)}, ensure_ascii=False) + "\n")
            n += 1
        return n
    if width is None:
        width = terminal_width(out)
    return _table(rows, columns, out, width=None if wide else width, limit=limit, hint=hint)


def terminal_width(out) -> int | None:
    """The terminal's width; None when output is piped (no width to fit) unless COLUMNS says."""
    if "COLUMNS" in os.environ or (hasattr(out, "isatty") and out.isatty()):
        return shutil.get_terminal_size().columns
    return None


def _csv(rows, columns, out) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    n = 0
    for row in rows:
        writer.writerow([text(v, c.precision) for c, v in zip(columns, row)])
        n += 1
    return n


def _json(rows, columns, out) -> int:
    """A JSON list of objects (indented as json.dumps(indent=2) would), written as the rows
    come."""
    n = 0
    out.write("[")
    for row in rows:
        item = {c.name: json_value(v, c.precision) for c, v in zip(columns, row)}
        text = json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        out.write(("," if n else "") + "\n  " + text)
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def _table(rows, columns, out, *, width, limit, hint) -> int:
    rows = iter(rows)
    first = list(islice(rows, SAMPLE if limit is None else min(SAMPLE, limit + 1)))
    if not first:
        out.write("no rows\n")
        return 0
    cells = [[text(v, c.precision) for c, v in zip(columns, row)] for row in first]
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    if width is not None:
        widths = fit(widths, columns, width)
    dash = "─" if _unicode(out) else "-"
    marker = "…" if _unicode(out) else "~"
    out.write(GAP.join(_pad(c.header, w, c.numeric, marker, True)
                       for c, w in zip(columns, widths)).rstrip() + "\n")
    out.write(GAP.join(dash * w for w in widths) + "\n")
    n = 0

    def line(values):
        return GAP.join(_pad(v, w, c.numeric, marker, c.cuttable and width is not None)
                        for c, w, v in zip(columns, widths, values)).rstrip() + "\n"

    for values in cells:
        if limit is not None and n >= limit:
            break
        out.write(line(values))
        n += 1
    more = len(cells) > n
    if not more and len(first) == SAMPLE:
        for row in rows:
            if limit is not None and n >= limit:
                more = True
                break
            out.write(line([text(v, c.precision) for c, v in zip(columns, row)]))
            n += 1
    if more:
        out.write(f"(first {n} rows; {hint or '--limit N for more'})\n")
    return n


def fit(widths: list[int], columns: list[Column], width: int) -> list[int]:
    """Shrink the cuttable columns, widest first, until the row fits `width` (or they are all
    at MIN_CUT: then the row is wider than the terminal, never wrapped inside a value)."""
    widths = list(widths)
    total = sum(widths) + len(GAP) * (len(widths) - 1)
    while total > width:
        shrinkable = [i for i, c in enumerate(columns) if c.cuttable and widths[i] > MIN_CUT]
        if not shrinkable:
            break
        widths[max(shrinkable, key=widths.__getitem__)] -= 1
        total -= 1
    return widths


def _pad(value: str, width: int, numeric: bool, marker: str, cut: bool) -> str:
    if len(value) > width and cut:
        return value[:width - 1] + marker
    return value.rjust(width) if numeric else value.ljust(width)


def _unicode(out) -> bool:
    return (getattr(out, "encoding", None) or "").lower().replace("-", "") in ("utf8",)
