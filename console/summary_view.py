"""`sipprobe report summary` on a terminal and as CSV (store/summary.py computes the figures)."""
from __future__ import annotations

import csv
import io
import sys
from datetime import datetime, timezone

GROUP_FIGURES = ("calls", "answered", "asr", "ner", "acd", "minutes", "pdd_p50", "pdd_p90",
                 "setup_p50", "mos_avg")


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}{unit}" if unit == " %" else f"{value:.3f}{unit}"
    return f"{value}{unit}"


def _utc(epoch) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def print_summary(r: dict, by: str | None, out=None) -> None:
    out = out or sys.stdout
    w = out.write
    w(f"period (UTC): {_utc(r['first'])} to {_utc(r['last'])} (call starts)\n")
    w(f"calls: {r['calls']}  answered: {r['answered']}  in progress: {r['in_progress']}\n")
    w(f"ASR: {_fmt(r['asr'], ' %')}  NER: {_fmt(r['ner'], ' %')}  "
      f"ACD: {_fmt(r['acd'], ' s')}  minutes: {_fmt(r['minutes'])}\n")
    w(f"post-dial delay p50/p90/p99: {_fmt(r['pdd_p50'])} / {_fmt(r['pdd_p90'])} / "
      f"{_fmt(r['pdd_p99'])} s\n")
    w(f"setup time p50/p90/p99: {_fmt(r['setup_p50'])} / {_fmt(r['setup_p90'])} / "
      f"{_fmt(r['setup_p99'])} s\n")
    w(f"disconnect delay (BYE to 2xx) p50/p90/p99: {_fmt(r['sdd_p50'])} / "
      f"{_fmt(r['sdd_p90'])} / {_fmt(r['sdd_p99'])} s\n")
    if r.get("mos_calls"):
        w(f"MOS (G.107): average {r['mos_avg']:.2f} over {r['mos_calls']} calls with RTCP, "
          f"{r['mos_under_3_6']:.1f} % under 3.6 (worst side's lowest)\n")
        w("MOS bands (ITU-T G.109): " + ", ".join(
            f"{b['from']:.2f}-{b['to']:.2f} {b['calls']}" for b in r["mos_distribution"]) + "\n")
    else:
        w("MOS: - (no call with RTCP reports)\n")
    if r["failures"]:
        w("failures: " + ", ".join(f"{f['code']} {f['reason']} ({f['calls']})"
                                   for f in r["failures"]) + "\n")
    if r["busiest_hours"]:
        w("busiest hours (UTC): " + ", ".join(f"{h['hour']} ({h['calls']})"
                                             for h in r["busiest_hours"]) + "\n")
    if by:
        from console import output

        cols = [output.Column(by, cuttable=by in ("user", "domain"))] + [
            output.Column(f, numeric=True, precision=1 if f in ("asr", "ner") else 3)
            for f in GROUP_FIGURES]
        w("\n")
        output.write(([g[by]] + [g[f] for f in GROUP_FIGURES] for g in r["groups"]), cols,
                     "table", out=out)


def groups_csv(r: dict, by: str | None) -> str:
    """The --by table as CSV; without --by, one row of the overall figures."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    key = [by] if by else []
    writer.writerow(key + list(GROUP_FIGURES))
    for g in (r["groups"] if by else [r]):
        writer.writerow(([g[by]] if by else []) + ["" if g[f] is None else g[f]
                                                   for f in GROUP_FIGURES])
    return buf.getvalue()
