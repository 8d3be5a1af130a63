"""The writer process of a PostgreSQL store: store/worker.py's protocol and behaviour (chunks
inserted into the open transaction as they arrive, committed on request, answered with counts;
SIGINT/SIGTERM/SIGHUP ignored; what was handed over is committed when the parent is gone), with
PostgreSQL's statements.

A chunk's rows of a table are COPYed into a temporary table, then moved in one statement:
INSERT ... SELECT ... ON CONFLICT (the identity) DO NOTHING, in identity order (two probes
inserting the same calls take their row locks in one order). An acc_cdrs chunk is first reduced to
one record per call, the one SQLite's insert-then-complete would leave (the first finished one,
else the first), so that its upsert (DO UPDATE ... WHERE the stored row is open) touches each row
once, as PostgreSQL requires. A row with NULL in a NOT NULL column is left out, as SQLite's INSERT
OR IGNORE does. Two probes' transactions that still deadlock are retried: the chunks of the open
transaction are kept until its commit and inserted again. The calls a run leaves going
(sip_dissect/carry.py) go to open_calls under this probe's name, in the transaction of the
run's last rows; each commit of rows stamps the run's last commit (store/runs.py).
"""
from __future__ import annotations

import os
import time

import psycopg
from psycopg import errors as pg_errors

from store.postgres import OPEN_CALLS_TABLE, PROBE_COLUMN, pg_sql, time_columns
from store.rows import ACC_ROWS, CDR_ROWS, MEDIA_ROWS, TimeTexts
from store.runs import STAMP_COMMIT, STAMP_END
from store.tables import ACC, BY_NAME, CALL_QUALITY, CDR, MEDIA_TABLES, OPEN
from store.worker import CDR_QUALITY, by_table, run, serve_requests

BUILDERS = {**{t: ACC_ROWS for t in ACC.names}, CDR.name: CDR_ROWS,
            **{t: MEDIA_ROWS[t] for t in MEDIA_TABLES}}  # Kamailio flavour only
RETRIES = 5  # deadlocks of one transaction before it fails
_CDR_KEY = tuple(CDR_ROWS.params.index(c) for c in CDR.identity)
_CDR_END = CDR_ROWS.params.index("end_reason")


def _staging(table: str) -> str:
    return f"sipprobe_in_{table}"


def _statements(table: str) -> dict[str, str]:
    layout = BY_NAME[table]
    params = BUILDERS[table].params
    times = time_columns(table)
    quoted = ", ".join(f'"{c}"' for c in params)
    select = ", ".join(f'"{c}"::timestamp' if c in times else f'"{c}"' for c in params)
    required = [c for c in params if not layout.column(c).nullable]
    where = " WHERE " + " AND ".join(f'"{c}" IS NOT NULL' for c in required) if required else ""
    order = ", ".join(f'"{c}"' for c in layout.identity)
    conflict = f"ON CONFLICT ({order})"
    insert = (f'INSERT INTO "{table}" ({quoted}, "{PROBE_COLUMN}") SELECT {select}, %s '
              f'FROM "{_staging(table)}"{where} ORDER BY {order} {conflict}')
    if table == CDR.name:
        update = ", ".join(f'"{c}" = excluded."{c}"' for c in params + (PROBE_COLUMN,))
        insert += (f" DO UPDATE SET {update} WHERE \"{table}\".end_reason = '{OPEN}' "
                   f"AND excluded.end_reason <> '{OPEN}' RETURNING (xmax = 0)")
    else:
        insert += " DO NOTHING"
    columns = ", ".join(f'"{c}" TEXT' if c in times else
                        f'"{c}" {_pg_type(layout.column(c))}' for c in params)
    return {"create": f'CREATE TEMP TABLE IF NOT EXISTS "{_staging(table)}" ({columns})',
            "truncate": f'TRUNCATE "{_staging(table)}"',
            "copy": f'COPY "{_staging(table)}" ({quoted}) FROM STDIN',
            "insert": insert}


def _pg_type(column) -> str:
    return {int: "BIGINT", str: "TEXT", float: "DOUBLE PRECISION"}[column.type]


STATEMENTS = {t: _statements(t) for t in BUILDERS}
PG_CDR_QUALITY = pg_sql(CDR_QUALITY)
DROP_CARRIED = (f'DELETE FROM "{OPEN_CALLS_TABLE}" WHERE "{PROBE_COLUMN}" = %s '
                'AND callid = ANY(%s)')
# as SQLite's (store/worker.py): a group is replaced only by a later one
KEEP_CARRIED = (f'INSERT INTO "{OPEN_CALLS_TABLE}" ("{PROBE_COLUMN}", callid, time_epoch, state) '
                "VALUES (%s, %s, %s, %s) ON CONFLICT (probe, callid) DO UPDATE SET "
                "time_epoch = excluded.time_epoch, state = excluded.state "
                f'WHERE excluded.time_epoch >= "{OPEN_CALLS_TABLE}".time_epoch')
PG_STAMP_COMMIT, PG_STAMP_END = pg_sql(STAMP_COMMIT), pg_sql(STAMP_END)


def one_per_call(rows: list[tuple]) -> list[tuple]:
    """The CDR row per call that SQLite's INSERT OR IGNORE then complete-if-open, record after
    record, leaves from a chunk: the call's first finished row, else its first."""
    chosen: dict[tuple, tuple] = {}
    for row in rows:
        key = tuple(row[i] for i in _CDR_KEY)
        have = chosen.get(key)
        if have is None or (have[_CDR_END] == OPEN and row[_CDR_END] != OPEN):
            chosen[key] = row
    return list(chosen.values())


class PgWriter:
    def __init__(self, url: str, shown: str, local_time: bool, probe: str, run_id: int = 0):
        self.shown, self.probe, self.run_id = shown, probe, run_id
        self.times = TimeTexts(local_time)
        self.conn = psycopg.connect(url, autocommit=False)
        # the session's clock: `time` texts are written as they are, never shifted
        self.conn.execute("SET TIME ZONE 'UTC'")
        for statements in STATEMENTS.values():
            self.conn.execute(statements["create"])
        self.conn.commit()
        self.failed: str | None = None
        self.chunks: list[tuple] = []  # of the open transaction: inserted again after a deadlock
        self._reset_counts()

    def _reset_counts(self):
        self.received = 0
        self.inserted = dict.fromkeys(ACC.names + MEDIA_TABLES, 0)
        self.cdr_added = self.cdr_completed = 0
        self.rejected: list[str] = []

    def rows(self, acc, cdrs, media=(), carry=None) -> None:
        """`carry`: None, or (Call-IDs taken up, [(callid, time_epoch, state)]) for open_calls."""
        if self.failed:
            return
        self.chunks.append((acc, cdrs, media, carry))
        for attempt in range(RETRIES + 1):
            try:
                self._rows(acc, cdrs, media, carry)
                return
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES or not self._again():
                    self._fail(exc)
                    return
            except psycopg.Error as exc:
                self._fail(exc)
                return

    def _again(self) -> bool:
        """After a deadlock: roll back and insert the open transaction's chunks again (but the
        last, which the caller retries); False if that fails too."""
        self.conn.rollback()
        self._reset_counts()
        try:
            for chunk in self.chunks[:-1]:
                self._rows(*chunk)
            return True
        except psycopg.Error:
            self.conn.rollback()
            return False

    def _rows(self, acc, cdrs, media, carry=None) -> None:
        if carry is not None:
            taken, groups = carry
            with self.conn.cursor() as cur:
                if taken:
                    cur.execute(DROP_CARRIED, [self.probe, list(taken)])
                if groups:
                    cur.executemany(KEEP_CARRIED, [(self.probe, *g) for g in groups])
        if acc:
            for table, recs in by_table(acc).items():
                rows = self._build(table, recs)
                self.received += len(rows)
                self.inserted[table] += self._insert(table, rows).rowcount
        if cdrs:
            rows = one_per_call(self._build(CDR.name, cdrs))
            for (new,) in self._insert(CDR.name, rows).fetchall():
                if new:
                    self.cdr_added += 1
                else:
                    self.cdr_completed += 1
        if media:
            grouped: dict[str, list] = {}
            for table, rec in media:
                grouped.setdefault(table, []).append(rec)
            for table, recs in grouped.items():
                rows = self._build(table, recs)
                self.inserted[table] += self._insert(table, rows).rowcount
            calls = sorted({(r[0], r[1]) for r in grouped.get(CALL_QUALITY.name, ())})
            if calls:
                with self.conn.cursor() as cur:
                    cur.executemany(PG_CDR_QUALITY, calls)

    def _build(self, table: str, recs: list) -> list[tuple]:
        build = BUILDERS[table].build
        try:
            return build(recs, self.times)
        except Exception:  # a record that cannot become a row: keep the others
            rows = []
            for rec in recs:
                try:
                    rows += build([tuple(rec)], self.times)
                except Exception as exc:
                    self.rejected.append(f"{exc.__class__.__name__}: {exc} ({rec!r:.200})")
            return rows

    def _insert(self, table: str, rows: list[tuple]):
        sql = STATEMENTS[table]
        cur = self.conn.cursor()
        cur.execute(sql["truncate"])
        with cur.copy(sql["copy"]) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(sql["insert"], [self.probe])
        return cur

    def commit(self):
        if self.failed:
            return None
        try:
            if self.chunks and self.run_id:  # rows came: stamped in their transaction
                self.conn.execute(PG_STAMP_COMMIT, [time.time(), self.run_id])
            self.conn.commit()
        except psycopg.Error as exc:
            self._fail(exc)
            return None
        counts = {**self.inserted, CDR.name: self.cdr_added, "cdrs_completed": self.cdr_completed,
                  "duplicates": self.received - sum(self.inserted[t] for t in ACC.names)}
        rejected = self.rejected
        self.chunks = []
        self._reset_counts()
        return counts, rejected

    def _fail(self, exc: Exception) -> None:
        self.failed = f"{self.shown}: {str(exc).strip()}"
        try:
            self.conn.rollback()
        except psycopg.Error:
            pass
        self.chunks = []
        self._reset_counts()

    def end(self) -> None:
        """The probe closed the store: its run ended cleanly (store/runs.py)."""
        if self.run_id:
            try:
                self.conn.execute(PG_STAMP_END, [time.time(), self.run_id])
                self.conn.commit()
            except psycopg.Error:  # the server is gone: its error was reported
                pass

    def close(self):
        self.conn.close()


def serve(rx: int, tx: int, url: str, shown: str, local_time: bool, parent: int,
          probe: str, run_id: int = 0) -> None:
    try:
        writer, opening = PgWriter(url, shown, local_time, probe, run_id), None
    except psycopg.Error as exc:
        writer, opening = None, f"{shown}: {str(exc).strip()}"
    serve_requests(rx, tx, writer, opening, parent)


def main(argv: list[str]) -> None:
    rx, tx, shown, clock, parent, probe, run_id = argv
    url = os.environ.pop("SIPPROBE_PG_URL")
    run(int(tx), shown, lambda: serve(int(rx), int(tx), url, shown, clock == "local",
                                      int(parent), probe, int(run_id)))
