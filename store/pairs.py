"""`report pairs`: acc INVITE and BYE rows paired into CDRs, as Siremis' `kamailio_cdrs()`.

Siremis (asipto/siremis docs/database.md at 3bddce9e, 2026-08-22; the Kamailio book's Siremis
accounting chapter, ../shared/seeds/001) bills from the acc table with a MySQL stored
procedure: for each INVITE row of `acc`, the earliest BYE row of `acc` with the same Call-ID
and the same From/To tags, or the tags crossed (the callee's BYE: its From tag is the callee's
To tag), makes a row of its `cdrs` table:

    src_username, src_domain, dst_username, dst_domain, dst_ousername   the INVITE row's
        src_user, src_domain, dst_user, dst_domain, dst_ouser
    call_start_time   the INVITE row's time: the moment of the 2xx (acc writes at the final
                      reply), so the answer, not the INVITE
    duration          UNIX_TIMESTAMP(BYE time) - UNIX_TIMESTAMP(INVITE time), whole seconds
                      of the proxy's second-resolution times: billable time, ringing excluded
    sip_call_id, sip_from_tag, sip_to_tag, src_ip   the INVITE row's

An INVITE row without such a BYE gives no row (a failed or still open call). Siremis' table is
unique on (Call-ID, From tag, To tag), so an INVITE row whose tags an earlier one has is left
out here as its procedure's INSERT would be refused. Its cost and rated columns (0 until
`kamailio_rating()`), created (the procedure's NOW()) and cdr_id are the table's own and not
given. Two columns follow Siremis' in CSV and JSON: call_start_epoch (the INVITE row's packet
time) and ended_by (caller: the BYE's tags as the INVITE's; callee: crossed).

The query runs on the store's acc table as it is (SQLite or PostgreSQL), one correlated lookup
per INVITE through acc's unique index (Call-ID first), streamed like every report.
"""
from __future__ import annotations

from typing import Iterator

from store import FilterError, is_url
from store.query import Filters, open_table, stream_sqlite

COLUMNS = ("src_username", "src_domain", "dst_username", "dst_domain", "dst_ousername",
           "call_start_time", "duration", "sip_call_id", "sip_from_tag", "sip_to_tag", "src_ip")
EXTRA = ("call_start_epoch", "ended_by")
REPORT_COLUMNS = COLUMNS + EXTRA
# each pairs column from the INVITE row i; the BYE's time is b_epoch, its tags crossed or not
_TERMS = {
    "src_username": "i.src_user", "src_domain": "i.src_domain", "dst_username": "i.dst_user",
    "dst_domain": "i.dst_domain", "dst_ousername": "i.dst_ouser", "call_start_time": "i.time",
    "duration": "{floor_bye} - {floor_inv}", "sip_call_id": "i.callid",
    "sip_from_tag": "i.from_tag", "sip_to_tag": "i.to_tag", "src_ip": "i.src_ip",
    "call_start_epoch": "i.time_epoch",
    "ended_by": "CASE WHEN b.from_tag = i.from_tag AND b.to_tag = i.to_tag THEN 'caller' "
                "ELSE 'callee' END",
}
# the earliest BYE row of the call, its tags as the INVITE's or crossed: looked up once per
# INVITE, then joined by id
_BYE = """(SELECT b.id FROM acc b WHERE b.callid = i.callid AND b.method = 'BYE'
       AND ((b.from_tag = i.from_tag AND b.to_tag = i.to_tag)
         OR (b.from_tag = i.to_tag AND b.to_tag = i.from_tag))
     ORDER BY b.time_epoch, b.id LIMIT 1)"""
_FIRST = """NOT EXISTS (SELECT 1 FROM acc e WHERE e.callid = i.callid AND e.method = 'INVITE'
       AND e.from_tag = i.from_tag AND e.to_tag = i.to_tag
       AND (e.time_epoch < i.time_epoch OR (e.time_epoch = i.time_epoch AND e.id < i.id)))"""


def pairs_sql(filters: Filters, *, columns=REPORT_COLUMNS, postgres: bool = False,
              limit: int | None = None) -> tuple[str, list]:
    """(the SELECT, its parameters): a row per paired call, in call_start order. Filters as
    the acc report's, on the INVITE row (since / until: its time); not method or code."""
    if filters.method is not None or filters.code is not None or filters.end_reason is not None:
        raise FilterError("--method, --code and --end-reason do not apply to pairs: each row "
                          "is an answered INVITE and its BYE")
    unknown = [c for c in columns if c not in _TERMS]
    if unknown:
        raise FilterError(f"no such pairs column: {', '.join(unknown)}")
    # whole seconds as Kamailio's time_t (and MySQL's DATETIME) keep them; epochs are positive
    floor = "floor({})::bigint" if postgres else "CAST({} AS INTEGER)"
    terms = []
    for c in columns:
        term = _TERMS[c].format(floor_bye=floor.format("b.time_epoch"),
                                floor_inv=floor.format("i.time_epoch"))
        if c == "call_start_time" and postgres:  # a timestamp there: its text, as SQLite's
            term = "to_char(i.time, 'YYYY-MM-DD HH24:MI:SS')"
        terms.append(f'{term} AS "{c}"')
    where, params = filters.where("acc", alias="i")
    where = (where + " AND " if where else " WHERE ") + "i.method = 'INVITE' AND " + _FIRST
    inner = f"SELECT i.*, {_BYE} AS bye_id FROM acc i{where}"
    sql = (f"SELECT {', '.join(terms)} FROM ({inner}) i JOIN acc b ON b.id = i.bye_id "
           "ORDER BY i.time_epoch, i.id")
    if limit is not None:
        if limit < 1:
            raise FilterError(f"bad limit {limit}: give a positive number of rows")
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def pairs_stream(db_path: str, filters: Filters = Filters(), *, columns=REPORT_COLUMNS,
                 limit: int | None = None) -> Iterator[tuple]:
    """The pairs of the acc table at `db_path` as tuples of `columns`, streamed."""
    if is_url(db_path):
        from store import postgres

        conn, _ = postgres.open_table(db_path, "acc")
        sql, params = pairs_sql(filters, columns=columns, postgres=True, limit=limit)
        return postgres.stream_query(conn, db_path, sql, params)
    sql, params = pairs_sql(filters, columns=columns, limit=limit)
    db, _ = open_table(db_path, "acc")
    return stream_sqlite(db, db_path, sql, params)
