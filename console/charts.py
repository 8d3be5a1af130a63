"""Charts of `sipprobe report chart`: the data from SQL, drawn by plotext in the terminal or by
matplotlib into a PNG (imported only on that path: it costs ~0.5 s to import)."""
from __future__ import annotations

import sys
from typing import NamedTuple

from store.query import Filters, open_report
from store.schema import CDR_TABLE
from store.summary import ANSWERED, group_key

SETUP_BINS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds, left edges
MOS_STEP = 0.25  # MOS histogram bins from 1.0 to 4.5 (G.107 Annex B's range)


class ChartData(NamedTuple):
    title: str
    labels: list  # the x categories
    series: dict  # name -> values, one per label (stacked bars)
    xlabel: str
    ylabel: str


def _query(db_path: str, filters: Filters, select, extra_where: str = ""):
    """The rows of `select(dialect)`'s SQL with {table} and {where} filled: one query for the
    SQLite file and the PostgreSQL database alike (store/dialect.py)."""
    with open_report(db_path, CDR_TABLE) as db:
        where, params = filters.where(CDR_TABLE, dialect=db.dialect)
        if extra_where:
            where += (" AND " if where else " WHERE ") + extra_where
        return db.rows(select(db.dialect).format(table=CDR_TABLE, where=where), params)


def calls_per_hour(db_path: str, filters: Filters = Filters()) -> ChartData:
    """Calls started per hour (UTC), answered and failed, hours with calls only."""
    rows = _query(db_path, filters, lambda d: f"SELECT {group_key(d, 'hour')}, "
                                              f"{d.count_if(ANSWERED)}, "
                                              f"count(*) - {d.count_if(ANSWERED)} "
                                              "FROM {table}{where} GROUP BY 1 ORDER BY 1")
    return ChartData("Calls per hour (UTC)", [r[0] for r in rows],
                     {"answered": [r[1] for r in rows], "failed": [r[2] for r in rows]},
                     "hour (UTC)", "calls")


def setup_histogram(db_path: str, filters: Filters = Filters()) -> ChartData:
    """Answered calls by setup time (INVITE to 2xx), in SETUP_BINS."""
    case = " ".join(f"WHEN setuptime < {hi} THEN {i}" for i, hi in enumerate(SETUP_BINS[1:]))
    rows = dict(_query(db_path, filters,
                       lambda d: f"SELECT CASE {case} ELSE {len(SETUP_BINS) - 1} END, "
                                 "count(*) FROM {table}{where} GROUP BY 1",
                       f"setuptime IS NOT NULL AND {ANSWERED}"))
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(SETUP_BINS, SETUP_BINS[1:])] + \
        [f">={SETUP_BINS[-1]:g}"]
    return ChartData("Setup time of answered calls", labels,
                     {"answered calls": [rows.get(i, 0) for i in range(len(labels))]},
                     "setup time (s)", "calls")


def mos_histogram(db_path: str, filters: Filters = Filters()) -> ChartData:
    """Calls by their worst side's lowest MOS (acc_cdrs.mos_min), MOS_STEP bins from 1.0 to
    4.5, the last closed; calls without RTCP reports are left out."""
    n = round((4.5 - 1.0) / MOS_STEP)

    def select(d):
        bin_ = d.least(d.greatest(d.truncate(f"(mos_min - 1.0) / {MOS_STEP}"), "0"), str(n - 1))
        return f"SELECT {bin_}, count(*) FROM {{table}}{{where}} GROUP BY 1"
    rows = dict(_query(db_path, filters, select, "mos_min IS NOT NULL"))
    labels = [f"{1.0 + i * MOS_STEP:.2f}" for i in range(n)] if rows else []
    return ChartData("Calls by lowest MOS (G.107, worst side)", labels,
                     {"calls": [rows.get(i, 0) for i in range(len(labels))]},
                     "MOS (bin's lower edge)", "calls")


def draw_terminal(data: ChartData) -> None:
    import plotext as plt

    plt.clf()
    if not data.labels:
        print(f"{data.title}: no calls")
        return
    if len(data.series) > 1:
        plt.stacked_bar(data.labels, list(data.series.values()), labels=list(data.series))
    else:
        (values,) = data.series.values()
        plt.bar(data.labels, values)
    plt.title(data.title)
    plt.xlabel(data.xlabel)
    plt.ylabel(data.ylabel)
    plt.theme("clear")
    plt.plotsize(None, 20)
    text = plt.build()
    if not sys.stdout.isatty():  # piped: plain text, no colour codes
        text = plt.uncolorize(text)
    sys.stdout.write(text.rstrip() + "\n")


class NoMatplotlib(Exception):
    """--png without matplotlib installed."""


def figure(data: ChartData):
    """The matplotlib Figure of `data` (stacked bars); tests read its bars back."""
    try:
        import matplotlib
    except ImportError:
        raise NoMatplotlib("--png needs matplotlib: pip install 'sipprobe[png]' "
                           "(or pip install matplotlib)") from None

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6, 0.5 * len(data.labels) + 2), 4), dpi=100)
    ax = fig.subplots()
    bottom = [0] * len(data.labels)
    for name, values in data.series.items():
        ax.bar(range(len(data.labels)), values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(data.labels)), data.labels, rotation=45, ha="right")
    ax.set_title(data.title)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    if len(data.series) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def save_png(data: ChartData, path: str) -> None:
    figure(data).savefig(path, format="png")
