"""What differs between the SQLite and the PostgreSQL store's SQL, said once, so that every report
keeps one query for both (store/summary.py, console/charts.py).

The queries are written in SQLite's form with `?` parameters; a Dialect supplies the few terms
that differ and ReportDb runs the text on either connection (PostgreSQL: store/postgres.pg_sql).

| what | SQLite | PostgreSQL |
|---|---|---|
| UTC hour / day of an epoch | strftime(..., 'unixepoch') | to_char(to_timestamp(...) AT TIME ZONE 'UTC') |
| smaller / larger of two | two-argument min() / max() | least() / greatest() |
| a real truncated to an integer | CAST(x AS INTEGER) truncates | CAST rounds: trunc() first |
| text order | bytes (BINARY) | the database's locale: COLLATE "C" gives bytes |
| a pattern in any case | LIKE (ASCII letters) | LIKE is case-sensitive: ILIKE |

Booleans are never summed (PostgreSQL has no sum(boolean)): conditions are counted with
CASE WHEN ... THEN 1 ELSE 0 END, which both accept. NULLs sort first in SQLite and last in
PostgreSQL; queries that order NULLs say NULLS FIRST, which both accept (SQLite >= 3.30).
"""
from __future__ import annotations

from typing import NamedTuple


class Dialect(NamedTuple):
    name: str
    hour_format: str  # the template of an epoch column's UTC hour as 'YYYY-MM-DD HH:00'
    day_format: str   # ... its UTC day as 'YYYY-MM-DD'
    least_function: str
    greatest_function: str
    truncate_format: str  # a real truncated toward zero, as an integer
    text_order: str  # appended to a text expression: byte order, as SQLite's BINARY
    like_nocase: str  # LIKE with letters in any case

    def utc_hour(self, epoch: str) -> str:
        return self.hour_format.format(epoch)

    def utc_day(self, epoch: str) -> str:
        return self.day_format.format(epoch)

    def least(self, a: str, b: str) -> str:
        return f"{self.least_function}({a}, {b})"

    def greatest(self, a: str, b: str) -> str:
        return f"{self.greatest_function}({a}, {b})"

    def truncate(self, real: str) -> str:
        return self.truncate_format.format(real)

    def text(self, expression: str) -> str:
        """`expression` (text) ordered and compared by bytes in both stores."""
        return f"({expression}){self.text_order}"

    def count_if(self, condition: str) -> str:
        return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"


SQLITE = Dialect(
    name="sqlite",
    hour_format="strftime('%Y-%m-%d %H:00', {0}, 'unixepoch')",
    day_format="strftime('%Y-%m-%d', {0}, 'unixepoch')",
    least_function="min", greatest_function="max",
    truncate_format="CAST({0} AS INTEGER)",
    text_order="", like_nocase="LIKE")

POSTGRES = Dialect(
    name="postgresql",
    hour_format="to_char(to_timestamp({0}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:00')",
    day_format="to_char(to_timestamp({0}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    least_function="least", greatest_function="greatest",
    truncate_format="CAST(trunc({0}) AS BIGINT)",
    text_order=' COLLATE "C"', like_nocase="ILIKE")


class ReportDb:
    """One store opened for a report: `rows` and `one` take SQLite-style SQL (`?` parameters)
    and run it on either connection; a database error becomes the StoreError `to_error` makes
    of it. Close it, or use it as a context manager."""

    def __init__(self, conn, dialect: Dialect, columns: tuple[str, ...], error_types: tuple,
                 to_error):
        self.conn = conn
        self.dialect = dialect
        self.columns = columns  # the report table's columns in this database
        self._errors = error_types
        self._to_error = to_error

    def rows(self, sql: str, params=()) -> list[tuple]:
        if self.dialect is POSTGRES:
            from store.postgres import pg_sql
            sql = pg_sql(sql)
        try:
            return [tuple(r) for r in self.conn.execute(sql, list(params)).fetchall()]
        except self._errors as exc:
            raise self._to_error(exc) from None

    def one(self, sql: str, params=()) -> tuple:
        (row,) = self.rows(sql, params)
        return row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ReportDb":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
