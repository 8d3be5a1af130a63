"""The same tables in PostgreSQL, for many probes writing into one database (--db postgresql://).

Every table of store/tables.py, with the same columns in the same order, then `probe`: the name of
the probe that wrote the row (--probe-name, default the host name). Types follow Kamailio's
PostgreSQL DDL (kamailio/utils/kamctl/postgres/acc-create.sql): the text time columns
(fill=TIME_TEXT) are `TIMESTAMP WITHOUT TIME ZONE`, the row number SERIAL; TEXT where Kamailio
has VARCHAR(n) (a Call-ID longer than 255 characters would fail a whole batch), BIGINT for
integers (an SSRC is 32 bits unsigned) and DOUBLE PRECISION for reals.

What identifies a row across probes is the table's identity (tables.Table.identity), without
`probe`: a call seen by two probes, or a capture replayed twice, is one row, written by the first
probe to commit it; the unique index over those columns enforces it (INSERT ... ON CONFLICT).
acc rows are identified by the proxy's transaction and final reply (Call-ID, method, CSeq, tags,
code), which every probe on the proxy's path sees alike; its time, src_ip or the probe that saw
it are not part of it.
"""
from __future__ import annotations

import os
import socket
import time

from store import StoreError, is_url, shown  # noqa: F401  (is_url, shown: public here too)
from store.tables import BY_NAME, LAYOUTS, TIME_TEXT

# the SQLite schema's (store/schema.py) columns, plus `probe`; 5: open_calls and
# sipprobe_runs, per probe (created when missing)
SCHEMA_VERSION = 5
META_TABLE = "sipprobe_meta"
OPEN_CALLS_TABLE = "open_calls"  # the calls a run left going (sip_dissect/carry.py)
# keyed by probe too: two probes into one database each take up their own calls
OPEN_CALLS_DDL = (f'CREATE TABLE IF NOT EXISTS "{OPEN_CALLS_TABLE}" ("probe" TEXT NOT NULL, '
                  '"callid" TEXT NOT NULL, "time_epoch" DOUBLE PRECISION NOT NULL, '
                  '"state" BYTEA NOT NULL, PRIMARY KEY ("probe", "callid"))')
PROBE_COLUMN = "probe"
_LOCK_KEY = 0x51970BE  # pg_advisory_xact_lock: two probes creating the schema at once serialise
_PG_TYPES = {int: "BIGINT", str: "TEXT", float: "DOUBLE PRECISION"}


def default_probe_name() -> str:
    return socket.gethostname() or "sipprobe"


def pg_type(column) -> str:
    if column.primary_key:
        return "SERIAL PRIMARY KEY"
    if column.fill == TIME_TEXT:
        return "TIMESTAMP WITHOUT TIME ZONE"
    return _PG_TYPES[column.type]


def table_statements(table: str) -> list[str]:
    """CREATE TABLE and its indexes for one of tables.BY_NAME, idempotent."""
    layout = BY_NAME[table]
    lines = []
    for column in layout.columns:
        line = f'   "{column.name}" {pg_type(column)}'
        if not column.primary_key and not column.nullable:
            line += " NOT NULL"
        if column.default is not None:
            line += " DEFAULT " + (f"'{column.default}'" if isinstance(column.default, str)
                                   else repr(column.default))
        lines.append(line)
    lines.append(f'   "{PROBE_COLUMN}" TEXT NOT NULL DEFAULT \'\'')
    statements = [f'CREATE TABLE IF NOT EXISTS "{table}" (\n' + ",\n".join(lines) + "\n)"]
    for column in layout.indexed:
        statements.append(f'CREATE INDEX IF NOT EXISTS "{table}_{column}_idx" '
                          f'ON "{table}" ("{column}")')
    statements.append(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_identity_idx" ON "{table}" ('
                      + ", ".join(f'"{c}"' for c in layout.identity) + ")")
    return statements


def table_columns(table: str) -> tuple[str, ...]:
    return BY_NAME[table].column_names + (PROBE_COLUMN,)


def connect(url: str, **kwargs):
    """A psycopg connection, or StoreError saying what to do."""
    try:
        import psycopg
    except ImportError:
        raise StoreError("--db postgresql://... needs psycopg: pip install 'psycopg[binary]'") \
            from None
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {shown(url)}: {str(exc).strip()}") from None


def ensure_schema(url: str, *, local_time: bool) -> None:
    """Create what is missing, in one transaction under an advisory lock (probes starting at
    once); refuse tables sipprobe did not write, or a `time` clock other than this run's."""
    import psycopg

    clock = "local" if local_time else "utc"
    with connect(url) as conn:
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            have = _columns(conn)
            meta = {}
            if META_TABLE in have:
                meta = dict(conn.execute(f'SELECT key, value FROM "{META_TABLE}"').fetchall())
            foreign = sorted(t for t in have if t in BY_NAME)
            if foreign and not meta:
                raise StoreError(f"{shown(url)} has {', '.join(foreign)} tables that sipprobe did "
                                 "not write (a proxy's database?): give sipprobe a database of "
                                 "its own")
            if meta:
                version = int(meta.get("schema_version", "0"))
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{shown(url)} was written by a newer sipprobe (schema "
                                     f"{version}): upgrade sipprobe")
                if meta.get("time_column", "utc") != clock:
                    raise StoreError(f"{shown(url)} stores `time` as {meta['time_column']} "
                                     f"time, not {clock}: keep the setting it was created with")
            for table in BY_NAME:
                if table in have and have[table] != table_columns(table):
                    raise StoreError(f"{shown(url)}: table {table} has columns "
                                     f"({', '.join(have[table])}) that sipprobe did not write")
                for statement in table_statements(table):
                    conn.execute(statement)
            conn.execute(OPEN_CALLS_DDL)
            conn.execute(runs_ddl())
            if meta and int(meta.get("schema_version", "0")) < SCHEMA_VERSION:
                conn.execute(f'UPDATE "{META_TABLE}" SET value = %s WHERE key = %s',
                             [str(SCHEMA_VERSION), "schema_version"])
            if not meta:
                conn.execute(f'CREATE TABLE IF NOT EXISTS "{META_TABLE}" '
                             '("key" TEXT PRIMARY KEY, "value" TEXT NOT NULL)')
                created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                conn.execute(f'INSERT INTO "{META_TABLE}" VALUES (%s, %s), (%s, %s), (%s, %s)',
                             ["schema_version", str(SCHEMA_VERSION), "created", created,
                              "time_column", clock])
        except psycopg.Error as exc:
            raise StoreError(f"{shown(url)}: {str(exc).strip()}") from None


def runs_ddl() -> str:
    """store/runs.py's table, in PostgreSQL types, with the probe name."""
    from store.runs import COLUMNS, RUNS_TABLE

    types = {"INTEGER PRIMARY KEY": "SERIAL PRIMARY KEY", "INTEGER": "BIGINT",
             "TEXT": "TEXT", "REAL": "DOUBLE PRECISION"}
    lines = [f'"{n}" {types[t]}' + (" NOT NULL" if nn else "") for n, t, nn in COLUMNS]
    return (f'CREATE TABLE IF NOT EXISTS "{RUNS_TABLE}" ('
            + ", ".join(lines) + f', "{PROBE_COLUMN}" TEXT NOT NULL DEFAULT \'\')')


def start_run(url: str, kind: str, commit_interval: float, probe: str):
    """store.runs.start on PostgreSQL, for this probe name's runs on this host."""
    import psycopg

    from store import runs

    try:
        with connect(url) as conn:
            return runs.start(conn, kind, commit_interval, param="%s",
                              extra_where=f' AND "{PROBE_COLUMN}" = %s', extra=(probe,))
    except psycopg.Error as exc:
        raise StoreError(f"{shown(url)}: {str(exc).strip()}") from None


def _columns(conn) -> dict[str, tuple[str, ...]]:
    rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema() "
                        "ORDER BY table_name, ordinal_position").fetchall()
    have: dict[str, list] = {}
    for table, column in rows:
        have.setdefault(table, []).append(column)
    return {t: tuple(c) for t, c in have.items()}


def open_pg_store(url: str, *, local_time: bool = False, probe: str | None = None,
                  batch_rows: int = 50_000, batch_seconds: float = 1.0, kind: str = ""):
    """store.writer.AccStore's interface over PostgreSQL: the same batches, chunks and writer
    process protocol, with store/pg_worker.py as the writer."""
    if batch_rows < 1 or batch_seconds < 0:
        raise ValueError("batch_rows must be at least 1 and batch_seconds not negative")
    ensure_schema(url, local_time=local_time)
    store = PgStore()(url, local_time=local_time, batch_rows=batch_rows,
                    batch_seconds=batch_seconds)
    store.probe = probe or default_probe_name()
    store.run_id, store.unclean_runs = start_run(url, kind, batch_seconds, store.probe)
    store._spawn()
    return store


_CLASS = []


def PgStore():  # noqa: N802  (the class, made on first use: importing this module costs nothing)
    if _CLASS:
        return _CLASS[0]
    from store.writer import AccStore

    class PgStore(AccStore):
        """AccStore whose writer process is store/pg_worker.py."""

        probe = ""

        def carried(self) -> list[tuple[str, float, str]]:
            """(callid, last packet time, state) of every group this probe's last runs left
            in open_calls (sip_dissect/carry.py)."""
            import psycopg

            try:
                with connect(self.path) as conn:
                    return conn.execute(
                        f'SELECT callid, time_epoch, state FROM "{OPEN_CALLS_TABLE}" '
                        f'WHERE "{PROBE_COLUMN}" = %s', [self.probe]).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"{shown(self.path)}: {str(exc).strip()}") from None

        def _command(self, child_rx: int, child_tx: int) -> list[str]:
            import sys

            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            # not -S: psycopg lives in site-packages. The URL travels in the environment
            # (_environment), not on the command line, where ps would show its password
            return [sys.executable, "-c",
                    "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from store.pg_worker import main; main(sys.argv[2:])",
                    root, str(child_rx), str(child_tx), shown(self.path),
                    "local" if self.local_time else "utc", str(os.getpid()), self.probe,
                    str(self.run_id)]

        def _environment(self) -> dict:
            return {**os.environ, "SIPPROBE_PG_URL": self.path}

    _CLASS.append(PgStore)
    return PgStore


def pg_sql(sql: str) -> str:
    """An SQLite query of store/query.py in psycopg's parameter style: `?` becomes `%s`, a
    literal `%` doubles, [name] quoting becomes "name"."""
    return sql.replace("%", "%%").replace("?", "%s").replace("[", '"').replace("]", '"')


def time_columns(table: str) -> set[str]:
    return {c.name for c in BY_NAME[table].columns if c.fill == TIME_TEXT}


def select_list(table: str, columns, have, alias: str = "") -> str:
    """SELECT terms giving the SQLite store's values: a timestamp column as its text."""
    p = f"{alias}." if alias else ""
    times = time_columns(table)
    terms = []
    for c in columns:
        if c not in have:
            terms.append(f'NULL AS "{c}"')
        elif c in times:
            terms.append(f"to_char({p}\"{c}\", 'YYYY-MM-DD HH24:MI:SS') AS \"{c}\"")
        else:
            terms.append(f'{p}"{c}"')
    return ", ".join(terms)


def open_table(url: str, table: str):
    """(connection, the table's columns); StoreError if the database has no such table."""
    conn = connect(url, autocommit=False)
    conn.read_only = True  # reports never write: BEGIN READ ONLY
    try:
        have = _columns(conn)
        if table not in have:
            raise StoreError(f"{shown(url)} has no {table} table: run "
                             f"`sipprobe replay CAPTURE --db {shown(url)}` first")
        return conn, have[table]
    except BaseException:
        conn.close()
        raise


def stream_query(conn, url: str, sql: str, params: list):
    """The rows of an SQLite-style query (store/query.py), from a server-side cursor."""
    import psycopg

    try:
        cursor = conn.cursor(name="sipprobe_report")
        cursor.itersize = 1000
        cursor.execute(pg_sql(sql), params)
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"{shown(url)}: {str(exc).strip()}") from None

    def rows():
        try:
            yield from cursor
        except psycopg.Error as exc:
            raise StoreError(f"{shown(url)}: {str(exc).strip()}") from None
        finally:
            conn.close()
    return rows()


def time_column_clock(url: str) -> str:
    try:
        with connect(url) as conn:
            row = conn.execute(f"SELECT value FROM \"{META_TABLE}\" WHERE key = 'time_column'")\
                .fetchone()
    except Exception:
        return "UTC"
    return "local" if row and row[0] == "local" else "UTC"


ALL_TABLES = tuple(t for layout in LAYOUTS for t in layout.names)
