"""`sipprobe report summary`: the figures an operator reports upward, from acc_cdrs, in SQL.

Definitions (docs/summary.md says the same, with sources):
- calls: call attempts (acc_cdrs rows: one per initial INVITE the proxy relayed or answered);
- answered: calls with a 2xx;
- ASR (ITU-T E.411 section 3.1, answer seizure ratio): answered / calls, percent;
- NER (GSMA IR.42, ITU-T E.425, network effectiveness ratio): calls that ended as the users
  decided (answered, or a failure in USER_CODES, or cancelled by the caller) / calls, percent;
  every other failure (5xx, 6xx but 600/603/604, a 408 without CANCEL, 403, 488, no reply...)
  is the network's;
- ACD (E.411 average call duration): mean talk_time of answered calls, seconds (answer to end,
  not Kamailio's duration, which includes ringing);
- minutes: sum of talk_time / 60;
- pdd: first 180/183 - INVITE (RFC 6076 section 4.1 SRD, "successful session setup", when a
  ringing reply came); setup: 2xx - INVITE; sdd (RFC 6076 section 4.2, session disconnect
  delay): the 2xx to the BYE that ended a completed call (its acc row's time) - the BYE (the
  CDR's end). Percentiles by nearest rank.
- mos_avg: the mean over calls with RTCP reports of the call's MOS, the worse side's average
  (acc_cdrs.mos_avg_a, mos_avg_b); mos_distribution and mos_under_3_6 (percent) bin the worst
  side's lowest MOS (acc_cdrs.mos_min) in the user-satisfaction bands of ITU-T G.109 Table 1
  (R 90, 80, 70, 60, 50 as MOS through G.107 Annex B). None where no call has a MOS, or the
  file predates the columns (schema 4).
"""
from __future__ import annotations

import math

from store.dialect import Dialect
from store.query import Filters, open_report
from store.schema import CDR_TABLE

# failures the users decided, not the network (E.425 / IR.42 "user determined"): busy,
# rejected, no answer, unknown or incomplete number, moved away
USER_CODES = ("404", "410", "480", "484", "486", "487", "600", "603", "604")
ANSWERED = "(coalesce(sip_code, '') LIKE '2__')"  # NULL: the proxy's own failure
USER_ENDED = (f"({ANSWERED} OR end_reason = 'cancelled' OR sip_code IN "
              f"({', '.join(repr(c) for c in USER_CODES)}))")
# talk time, also in files written before schema 4 (talk_time NULL until migrated)
TALK = "coalesce(talk_time, CASE WHEN answer_time IS NOT NULL THEN end_epoch - answer_time END)"
GROUPS = ("hour", "day", "user", "domain", "code")


def group_key(dialect: Dialect, by: str) -> str:
    """The SQL of a --by group's key (one of GROUPS), text ordered by bytes in both stores."""
    return dialect.text({"hour": dialect.utc_hour("start_epoch"),
                         "day": dialect.utc_day("start_epoch"),
                         "user": "src_user",
                         "domain": "dst_domain",
                         "code": "coalesce(sip_code, '-')"}[by])


PERCENTILES = (50, 90, 99)
FIGURES = ("calls", "answered", "asr", "ner", "acd", "minutes", "pdd_p50", "pdd_p90", "pdd_p99",
           "setup_p50", "setup_p90", "setup_p99", "sdd_p50", "sdd_p90", "sdd_p99", "mos_avg")
# RFC 6076 SDD of a completed call: its BYE's 2xx (the acc row, written at the reply relayed
# upstream; a callee's BYE has the tags crossed) minus the BYE (the CDR's end). Indexed: acc's
# identity index starts with callid, method.
SDD = (f"(SELECT min(a.time_epoch) FROM acc a WHERE a.callid = {CDR_TABLE}.callid "
       "AND a.method = 'BYE' AND a.sip_code LIKE '2__' "
       f"AND (a.from_tag = {CDR_TABLE}.from_tag OR a.to_tag = {CDR_TABLE}.from_tag) "
       f"AND a.time_epoch >= {CDR_TABLE}.end_epoch) - end_epoch")
METRICS = {"pdd": "pdd", "setup": "setuptime", "sdd": SDD}  # percentile figure: its values
# a call's MOS: the worse side's average (a side without reports does not count)
CALL_SIDES = ("coalesce(mos_avg_a, mos_avg_b)", "coalesce(mos_avg_b, mos_avg_a)")
MOS_POOR = 3.6  # G.109: below R 70 "many users dissatisfied"
# ITU-T G.109 Table 1 bands on the MOS scale (G.107 Annex B of R 50, 60, 70, 80, 90)
MOS_BANDS = ((1.0, 2.58, "not recommended"), (2.58, 3.1, "nearly all users dissatisfied"),
             (3.1, 3.6, "many users dissatisfied"), (3.6, 4.03, "some users dissatisfied"),
             (4.03, 4.34, "satisfied"), (4.34, 4.5, "very satisfied"))


def call_mos(dialect: Dialect) -> str:
    """A call's MOS: the worse side's average (a side without reports does not count)."""
    return dialect.least(*CALL_SIDES)


def quality_figures(db, where: str, params: list) -> dict:
    """mos_avg, mos_calls (calls with a MOS), mos_under_3_6 (percent of those whose worst side's
    lowest MOS is below MOS_POOR) and mos_distribution (calls per G.109 band of mos_min), from
    acc_cdrs' quality summary; None / empty for a file without those columns. `db`: a
    store.dialect.ReportDb."""
    if "mos_min" not in db.columns:
        return {"mos_avg": None, "mos_calls": 0, "mos_under_3_6": None, "mos_distribution": []}
    d = db.dialect
    glue = " AND " if where else " WHERE "
    mean, calls, poor = db.one(
        f"SELECT avg({call_mos(d)}), count(mos_min), {d.count_if('mos_min < ?')} "
        f"FROM {CDR_TABLE}{where}", [MOS_POOR] + params)
    case = " ".join(f"WHEN mos_min < {hi} THEN {i}" for i, (_, hi, _) in
                    enumerate(MOS_BANDS[:-1]))
    counts = dict(db.rows(f"SELECT CASE {case} ELSE {len(MOS_BANDS) - 1} END, count(*) "
                          f"FROM {CDR_TABLE}{where}{glue}mos_min IS NOT NULL GROUP BY 1", params))
    return {"mos_avg": round(mean, 2) if mean is not None else None,
            "mos_calls": calls,
            "mos_under_3_6": round(100.0 * poor / calls, 2) if calls else None,
            "mos_distribution": [{"from": lo, "to": hi, "label": label, "calls": counts.get(i, 0)}
                                 for i, (lo, hi, label) in enumerate(MOS_BANDS)] if calls else []}


def _figures(row, values_by_metric) -> dict:
    calls, answered, user_ended, talk_sum = row
    out = {
        "calls": calls,
        "answered": answered or 0,
        "asr": round(100.0 * (answered or 0) / calls, 2) if calls else None,
        "ner": round(100.0 * (user_ended or 0) / calls, 2) if calls else None,
        "acd": round(talk_sum / answered, 3) if answered and talk_sum is not None else None,
        "minutes": round((talk_sum or 0.0) / 60.0, 3),
    }
    for metric, values in values_by_metric.items():
        for p in PERCENTILES:
            out[f"{metric}_p{p}"] = nearest_rank(values, p)
    return out


def nearest_rank(sorted_values: list, p: float):
    """The p-th percentile of sorted values by nearest rank (the value at ceil(p/100 n)),
    rounded to the millisecond; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


def summary(db_path: str, filters: Filters = Filters(), *, by: str | None = None,
            top: int = 10) -> dict:
    """The figures over the rows `filters` keep: a dict of FIGURES plus `failures` (codes
    ranked), `busiest_hours`, `in_progress` and `first`/`last` start times; with `by` (one of
    GROUPS) also `groups`, a list of the same figures per group. `db_path`: an SQLite file
    or a PostgreSQL URL, the same queries on both (store/dialect.py)."""
    with open_report(db_path, CDR_TABLE) as db:
        where, params = filters.where(CDR_TABLE, dialect=db.dialect)
        return _summary(db, where, params, by, top)


def _aggregate(db, where, params, key: str | None):
    d = db.dialect
    group = f"{key}, " if key else ""
    mos = f"avg({call_mos(d)})" if "mos_min" in db.columns else "NULL"
    sql = (f"SELECT {group}count(*), {d.count_if(ANSWERED)}, {d.count_if(USER_ENDED)}, "
           f"sum(CASE WHEN {ANSWERED} THEN {TALK} END), {mos} FROM {CDR_TABLE}{where}")
    if key:
        sql += " GROUP BY 1 ORDER BY 1 NULLS FIRST"
    return db.rows(sql, params)


def _sorted_values(db, where, params, column: str, key: str | None) -> dict:
    """{group key: sorted values of `column` (an SQL expression)} (key None: one group),
    answered calls for setup time, completed ones for SDD."""
    cond = f"{column} IS NOT NULL" + (f" AND {ANSWERED}" if column == "setuptime" else "")
    if column == SDD:
        cond = f"end_reason = 'completed' AND {cond}"
    glue = " AND " if where else " WHERE "
    out: dict = {}
    for group, value in db.rows(f"SELECT {key or 'NULL'}, {column} FROM {CDR_TABLE}{where}"
                                f"{glue}{cond} ORDER BY 2", params):
        out.setdefault(group, []).append(value)
    return out


def _summary(db, where, params, by, top) -> dict:
    d = db.dialect
    (row,) = _aggregate(db, where, params, None)
    result = _figures(row[:4], {name: _sorted_values(db, where, params, sql, None).get(None, [])
                                for name, sql in METRICS.items()})
    result.update(quality_figures(db, where, params))
    glue = " AND " if where else " WHERE "
    result["failures"] = [
        {"code": c, "reason": r, "calls": n} for c, r, n in db.rows(
            f"SELECT {group_key(d, 'code')}, "
            f"coalesce(max({d.text('sip_reason')}), 'no code stored'), count(*) "
            f"FROM {CDR_TABLE}{where}{glue}NOT {ANSWERED} AND end_reason != 'open' "
            "GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ?", params + [top])]
    result["busiest_hours"] = [
        {"hour": h, "calls": n} for h, n in db.rows(
            f"SELECT {group_key(d, 'hour')}, count(*) FROM {CDR_TABLE}{where} GROUP BY 1 "
            "ORDER BY 2 DESC, 1 LIMIT ?", params + [min(top, 5)])]
    (result["in_progress"],) = db.one(
        f"SELECT count(*) FROM {CDR_TABLE}{where}{glue}end_reason = 'open' AND NOT {ANSWERED}",
        params)
    result["first"], result["last"] = db.one(
        f"SELECT min(start_epoch), max(start_epoch) FROM {CDR_TABLE}{where}", params)
    if by:
        key = group_key(d, by)
        values = {name: _sorted_values(db, where, params, sql, key)
                  for name, sql in METRICS.items()}
        result["groups"] = []
        for k, *figures in _aggregate(db, where, params, key):
            item = {by: k, **_figures(figures[:4], {name: v.get(k, [])
                                                    for name, v in values.items()})}
            item["mos_avg"] = round(figures[4], 2) if figures[4] is not None else None
            result["groups"].append(item)
    return result
