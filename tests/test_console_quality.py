"""Voice quality in the console, through the installed `sipprobe` command on the media lab
captures (pcaps/lab-media-*, rtpengine 10.5 relaying; replayed with --rtpengine-mos legacy):
summary's MOS figures, MOS per side in `report calls`, --min-mos / --max-mos, `report chart mos`.
Expected values come from the call_quality rows (sipprobe's per-side figures, read with plain
SQL), the G.109 bands written out here, and the scenarios themselves (rtpengine.json names each
call; the 20 % loss call must be the worst), never from the code under test."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from test_console import ROOT, run

MEDIA = sorted((ROOT / "pcaps").glob("lab-media-*"))
# ITU-T G.109 Table 1 (R 50/60/70/80/90 as MOS through G.107 Annex B)
BANDS = [(1.0, 2.58), (2.58, 3.1), (3.1, 3.6), (3.6, 4.03), (4.03, 4.34), (4.34, 4.5)]


@pytest.fixture(scope="module")
def media_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("quality") / "media.db")
    # one run per capture: the three calls ran at the same time in separate namespaces with
    # the same addresses and ports, so one merged replay could not tell their media apart
    for d in MEDIA:
        run("replay", str(d / "capture.pcap"), "--db", db, "--rtpengine-mos", "legacy")
    return db


def sides(db) -> dict:
    """{callid: {side: (mos_min, mos_avg)}} from call_quality."""
    out: dict = {}
    with sqlite3.connect(db) as conn:
        for callid, side, mn, avg in conn.execute(
                "SELECT callid, side, mos_min, mos_avg FROM call_quality"):
            if mn is not None:
                out.setdefault(callid, {})[side] = (mn, avg)
    return out


def worst(by_side: dict) -> float:
    return min(mn for mn, _ in by_side.values())


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_the_twenty_percent_loss_call_is_the_worst(media_db):
    calls = sides(media_db)
    name = {json.loads((d / "rtpengine.json").read_text())["calls"][0]["callid"]: d.name
            for d in MEDIA}
    assert set(calls) == set(name)
    by_name = {name[c]: worst(s) for c, s in calls.items()}
    assert by_name["lab-media-loss-20"] < 3.6 < by_name["lab-media-clean"]
    assert by_name["lab-media-loss-20"] < by_name["lab-media-loss-5"] < by_name["lab-media-clean"]


def test_summary_mos_figures(media_db):
    calls = sides(media_db)
    got = json.loads(run("report", "summary", "--db", media_db, "--format", "json").stdout)
    call_mos = [min(avg for _, avg in s.values()) for s in calls.values()]
    assert got["mos_calls"] == len(calls) == 3
    assert got["mos_avg"] == pytest.approx(sum(call_mos) / len(call_mos), abs=0.005)
    under = sum(worst(s) < 3.6 for s in calls.values())
    assert got["mos_under_3_6"] == pytest.approx(100.0 * under / len(calls), abs=0.01)
    want = [sum(lo <= worst(s) < hi or (hi == 4.5 and worst(s) >= 4.34 and lo == 4.34)
                for s in calls.values()) for lo, hi in BANDS]
    assert [(b["from"], b["to"], b["calls"]) for b in got["mos_distribution"]] == \
        [(lo, hi, n) for (lo, hi), n in zip(BANDS, want)]
    table = run("report", "summary", "--db", media_db).stdout
    assert f"average {got['mos_avg']:.2f} over 3 calls" in table
    assert f"{100.0 * under / 3:.1f} % under 3.6" in table


def test_calls_show_mos_per_side_and_filter_on_the_worst(media_db):
    calls = sides(media_db)
    rows = csv_rows(run("report", "calls", "--db", media_db, "--format", "csv").stdout)
    assert len(rows) == 3
    for r in rows:
        s = calls[r["callid"]]
        assert float(r["mos_avg_a"]) == pytest.approx(s["A"][1], abs=0.0005)
        assert float(r["mos_avg_b"]) == pytest.approx(s["B"][1], abs=0.0005)
    table = run("report", "calls", "--db", media_db, env={"COLUMNS": "200"}).stdout
    assert "mos_avg_a" in table.splitlines()[0]
    for args, keep in ((["--max-mos", "3.6"], lambda m: m <= 3.6),
                       (["--min-mos", "3.6"], lambda m: m >= 3.6),
                       (["--min-mos", "3", "--max-mos", "4"], lambda m: 3 <= m <= 4)):
        want = sorted(c for c, s in calls.items() if keep(worst(s)))
        for command in ("calls", "cdrs"):
            got = csv_rows(run("report", command, "--db", media_db, "--format", "csv",
                               *args).stdout)
            assert sorted(r["callid"] for r in got) == want, (command, args)
        got = csv_rows(run("report", "quality", "--db", media_db, "--format", "csv",
                           *args).stdout)
        assert sorted((r["callid"], r["side"]) for r in got) == sorted(
            (c, side) for c, s in calls.items() for side, (mn, _) in s.items() if keep(mn))
    bad = run("report", "calls", "--db", media_db, "--min-mos", "7", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--min-mos 7" in bad.stderr


def test_mos_chart_bars_are_the_calls_worst_mos(media_db, tmp_path):
    from console import charts
    from store.query import Filters

    calls = sides(media_db)
    data = charts.mos_histogram(media_db, Filters())
    ax = charts.figure(data).axes[0]
    heights = [p.get_height() for p in ax.containers[0]]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    edges = [1.0 + 0.25 * i for i in range(14)]
    assert labels == [f"{e:.2f}" for e in edges]
    want = [sum(e <= worst(s) < e + 0.25 or (e == 4.25 and worst(s) >= 4.25)
                for s in calls.values()) for e in edges]
    assert heights == want and sum(want) == 3
    png = tmp_path / "mos.png"
    run("report", "chart", "mos", "--db", media_db, "--png", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    term = run("report", "chart", "mos", "--db", media_db, env={"COLUMNS": "100"}).stdout
    assert "Calls by lowest MOS" in term and "4.25" in term


def test_mos_chart_without_quality_says_so(tmp_path):
    db = str(tmp_path / "basic.db")
    run("replay", str(Path(ROOT / "pcaps" / "lab-basic-call" / "capture.pcap")), "--db", db)
    out = run("report", "chart", "mos", "--db", db).stdout
    assert out.strip().endswith("no calls")
    summary = json.loads(run("report", "summary", "--db", db, "-f", "json").stdout)
    assert (summary["mos_avg"], summary["mos_calls"], summary["mos_under_3_6"]) == (None, 0, None)
