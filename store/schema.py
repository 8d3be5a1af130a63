"""The acc, missed_calls and acc_cdrs tables in SQLite: their DDL, creation, checks and
migrations.

The columns are declared in store/tables.py (Kamailio's in Kamailio's order, then sipprobe's);
everything here is derived from that declaration. Kamailio's own DDL is lab/schema.sql (acc
module 5.6). A column, an AccRecord field and Kamailio's column are the same word, so queries
written for the proxy's database run here.
"""
from __future__ import annotations

import os
import sqlite3
import time

from store import StoreError
from store.runs import RUNS_TABLE, SQLITE_DDL as RUNS_DDL
from store.tables import ACC, BY_NAME, CDR, FLAVOURS, OPENSIPS_VERSIONS, QUALITY_SUMMARY

# a change to the columns bumps it and adds a migration to ensure_schema
# 1: acc, missed_calls. 2: acc_cdrs (created in a version 1 file when a writer opens it).
# 3: no row_key column (a hash of the row's identity); a unique index over the identity's own
# columns instead (migrate_row_keys). 4: acc_cdrs.ring_duration and talk_time, the quality
# summary columns (add_columns); rtcp_reports and call_quality (created when missing).
# 5: open_calls, the signalling state a run leaves for the next (sip_dissect/carry.py;
# created when missing). 6: sipprobe_runs, each run's start, last commit and clean end
# (store/runs.py; created when missing). The meta table's `flavour` (kamailio when absent:
# files written before --flavour) says whose layout the file holds; a file refuses the other
# flavour
SCHEMA_VERSION = 6
FLAVOUR_NAMES = tuple(FLAVOURS)  # kamailio (the default), opensips
VERSION_TABLE = "version"  # OpenSIPS' table versions (an OpenSIPS-flavour file only)
VERSION_DDL = (f'CREATE TABLE "{VERSION_TABLE}" (\n   "table_name" CHAR(32) NOT NULL,\n'
               '   "table_version" INTEGER DEFAULT 0 NOT NULL,\n'
               '   CONSTRAINT version_t_name_idx UNIQUE (table_name)\n);')
# columns a schema version appended to a table: a file written before has the table without
# them; add_columns() appends them and fills what the stored columns allow
SUMMARY_NAMES = tuple(c.name for c in QUALITY_SUMMARY)  # the store fills them from call_quality
ADDED_COLUMNS = {"acc_cdrs": ("ring_duration", "talk_time", *SUMMARY_NAMES)}
# how add_columns() fills them in the rows already stored (SQL over the row's own columns);
# a failed call's reply time was never stored, so its ring_duration stays NULL
ADDED_FILL = {
    "ring_duration": "CASE WHEN answer_time IS NOT NULL AND (sip_code IS NULL OR sip_code < '3') "
                     "THEN round(answer_time - created, 3) END",
    "talk_time": "CASE WHEN answer_time IS NOT NULL AND (sip_code IS NULL OR sip_code < '3') "
                 "THEN round(max(end_epoch - answer_time, 0), 3) ELSE 0.0 END",
}
# of a new file (SQLite's default is 4096): a row's four B-tree inserts split pages less often
# (2 % fewer writer instructions, 6 % fewer bytes written); a file keeps the size it has
PAGE_SIZE = 16384
# how long a connection waits for a lock another one holds before failing with "database is
# locked": a second writer (a replay into the file a sniff writes) waits for the batch being
# committed (at most a second or 50,000 rows), a reader for a checkpoint's or the last
# connection's close. Python's default, when none is given, is 5 s
BUSY_TIMEOUT = 10.0  # seconds; every sqlite3 connection to a sipprobe file uses it
# the tables and their columns: store/tables.py declares them, everything here derives
TABLES = ACC.names  # the tables of AccRecords: acc, missed_calls
CDR_TABLE = CDR.name
ALL_TABLES = tuple(BY_NAME)
META_TABLE = "sipprobe_meta"
OPEN_CALLS_TABLE = "open_calls"  # not a report table: the state of calls going on at a run's end
COLUMN_NAMES = ACC.column_names
CDR_COLUMN_NAMES = CDR.column_names
OLD_KEY = "row_key"  # the column schema 3 dropped (see tables.ACC.identity)


def table_columns(table: str) -> tuple[str, ...]:
    """The column names sipprobe writes in `table`, in order."""
    return BY_NAME[table].column_names


def connect(path: str, *, create: bool):
    """An sqlite_utils.Database on `path`, or StoreError saying what to do instead.
    Without `create`, a missing file is an error rather than a new empty database."""
    import sqlite_utils

    conn = open_connection(path, create=create)
    try:
        return sqlite_utils.Database(conn, execute_plugins=False)
    except sqlite3.Error as exc:
        conn.close()
        raise database_error(path, exc) from None


def open_connection(path: str, *, create: bool) -> sqlite3.Connection:
    """connect() without sqlite_utils: a plain sqlite3 connection, for the replay's start-up,
    where importing sqlite_utils cost more than the schema work itself."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory: give a file name, "
                         f"e.g. --db {os.path.join(path, 'sipprobe.db')}")
    exists = os.path.exists(path)
    if not exists and not create:
        raise StoreError(f"no such database: {path}: "
                         f"run `sipprobe replay CAPTURE --db {path}` first")
    folder = os.path.dirname(os.path.abspath(path))
    if create:
        if not os.path.isdir(folder):
            raise StoreError(f"cannot create {path}: directory {folder} does not exist: "
                             f"create it (mkdir -p {folder}) or give another --db path")
        if exists and not os.access(path, os.W_OK):
            raise StoreError(f"{path} is read-only: make it writable (chmod u+w {path}) "
                             "or give another --db path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write in {folder}, where SQLite keeps the database's -wal "
                             "and -shm files: make it writable or give another --db path")
    try:
        return _open(path)
    except sqlite3.Error as exc:
        at_rest = not os.path.exists(path + "-wal")
        # "unable to open": a read-only mount, where the -shm file cannot be created either
        refused = "readonly" in str(exc) or "unable to open" in str(exc)
        if create or not refused or not at_rest:
            raise database_error(path, exc) from None
    # A WAL database needs its -shm file, which a reader without write access to the directory
    # (or on a read-only mount) cannot create. With no -wal file no writer is active, so reading
    # it as immutable is exact.
    import urllib.parse

    try:
        return _open(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro&immutable=1",
                     uri=True)
    except sqlite3.Error as exc:
        raise database_error(path, exc) from None


def _open(target: str, uri: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT)
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: not SQLite fails
        return conn
    except BaseException:
        conn.close()
        raise


def database_error(path: str, exc: sqlite3.Error) -> StoreError:
    """SQLite's complaint about `path`, turned into what to do about it."""
    text = str(exc)
    if "not a database" in text:
        return StoreError(f"{path} is not a SQLite database: give a new file name "
                          "or a database written by sipprobe")
    if "readonly" in text:
        return StoreError(f"{path} is read-only ({text}): make it and its directory writable "
                          "or give another --db path")
    if "locked" in text or "busy" in text:
        return StoreError(f"{path} is locked by another program ({text}): "
                          "stop it or give another --db path")
    if "disk" in text or "full" in text:
        return StoreError(f"cannot write {path} ({text}): free some disk space")
    return StoreError(f"{path}: {text}")


def ensure_schema(db, path: str, *, local_time: bool, flavour: str = "kamailio") -> None:
    """Create whatever of the schema is missing, in one transaction; refuse a database whose
    tables sipprobe did not write, whose `time` column uses the other clock, or that holds the
    other flavour's tables. `db`: a plain sqlite3 connection in autocommit mode (isolation_level
    None)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour {flavour!r} is not one of {', '.join(FLAVOURS)}")
    if flavour != "kamailio":
        return _ensure_flavour(db, path, local_time, flavour)
    clock = "local" if local_time else "utc"
    # IMMEDIATE: two probes starting on one new file serialise here; the second finds the tables
    db.execute("BEGIN IMMEDIATE")
    try:
        names = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
        meta = read_meta(db) if META_TABLE in names else {}
        _check_flavour(meta, path, flavour)
        foreign = sorted(names & set(ALL_TABLES))
        if not meta and foreign:
            listed = ", ".join(foreign[:-1]) + " and " + foreign[-1] if len(foreign) > 1 \
                else foreign[0]
            raise StoreError(f"{path} has {listed} tables that "
                             "sipprobe did not write (a Kamailio database?): "
                             "give sipprobe a file of its own with --db")
        if meta:
            _check_meta(meta, path, clock)
        for table in ALL_TABLES:
            if table in names:
                have = check_columns(db, path, table)
                if have[-1] == OLD_KEY:
                    migrate_row_keys(db, path, table)
                    have = have[:-1]
                if len(have) < len(table_columns(table)):
                    add_columns(db, table, have)
            else:  # acc_cdrs missing from a version 1 file: this is its migration
                for statement in create_statements(table):
                    db.execute(statement)
        _ensure_run_tables(db, names)
        _write_meta(db, meta, clock, flavour)
    except BaseException:
        db.rollback()
        raise
    db.commit()


def _ensure_run_tables(db, names: set) -> None:
    """The tables of every flavour's file that keep runs going: open_calls (the calls a run
    leaves to the next) and sipprobe_runs (each run's start, last commit and clean end)."""
    if OPEN_CALLS_TABLE not in names:
        db.execute(OPEN_CALLS_DDL)
    if RUNS_TABLE not in names:
        db.execute(RUNS_DDL)


def _write_meta(db, meta: dict, clock: str, flavour: str) -> None:
    """The meta table of a new file (its schema version, creation time, clock and, for a
    flavour other than Kamailio's, the flavour), or the schema version of an older one."""
    if meta and int(meta.get("schema_version", "0")) < SCHEMA_VERSION:
        db.execute(f"UPDATE [{META_TABLE}] SET value = ? WHERE key = 'schema_version'",
                   [str(SCHEMA_VERSION)])
    if not meta:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = [("schema_version", str(SCHEMA_VERSION)), ("created", created),
                ("time_column", clock)]
        db.execute(META_DDL)
        db.executemany(f'INSERT INTO "{META_TABLE}" ("key", "value") VALUES (?, ?)',
                       rows + ([("flavour", flavour)] if flavour != "kamailio" else []))


def _ensure_flavour(db, path: str, local_time: bool, flavour: str) -> None:
    """ensure_schema() for a flavour other than Kamailio's: its layouts (store/tables.py:
    FLAVOURS) created when missing and refused when their columns differ; OpenSIPS' `version`
    rows, so that OpenSIPS' own db_check_table_version accepts the tables."""
    clock = "local" if local_time else "utc"
    db.execute("BEGIN IMMEDIATE")
    try:
        names = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
        meta = read_meta(db) if META_TABLE in names else {}
        layouts = {name: layout for layout in FLAVOURS[flavour] for name in layout.names}
        if not meta and names & set(layouts):
            raise StoreError(f"{path} has tables that sipprobe did not write (an OpenSIPS "
                             "database?): give sipprobe a file of its own with --db")
        if meta:
            _check_flavour(meta, path, flavour)
            _check_meta(meta, path, clock)
        for table, layout in layouts.items():
            if table in names:
                have = tuple(r[1] for r in db.execute(f'PRAGMA table_info("{table}")'))
                if have != layout.column_names:
                    raise StoreError(f"{path}: table {table} has columns ({', '.join(have)}) "
                                     "that sipprobe did not write: give sipprobe a file of its "
                                     "own with --db")
            else:
                for statement in table_statements(layout, table):
                    db.execute(statement)
        _ensure_run_tables(db, names)
        if VERSION_TABLE not in names:
            db.execute(VERSION_DDL)
            db.executemany(f'INSERT INTO "{VERSION_TABLE}" (table_name, table_version) '
                           'VALUES (?, ?)', list(OPENSIPS_VERSIONS.items()))
        _write_meta(db, meta, clock, flavour)
    except BaseException:
        db.rollback()
        raise
    db.commit()


def _check_flavour(meta: dict, path: str, flavour: str) -> None:
    stored = meta.get("flavour", "kamailio") if meta else flavour
    if stored != flavour:
        raise StoreError(f"{path} holds {stored}'s tables, not {flavour}'s: replay into it with "
                         f"--flavour {stored}, or give another --db file")


def file_flavour(db) -> str:
    """The flavour of a sipprobe file (kamailio when it does not say): `db` an sqlite3
    connection or an sqlite_utils.Database."""
    try:
        row = db.execute(f"SELECT value FROM [{META_TABLE}] WHERE key = 'flavour'").fetchone()
    except sqlite3.Error:
        return "kamailio"
    return row[0] if row else "kamailio"


def read_meta(db) -> dict[str, str]:
    return dict(db.execute(f"SELECT key, value FROM [{META_TABLE}]").fetchall())


def check_columns(db, path: str, table: str, layout=None) -> tuple[str, ...]:
    """The table's columns. `db`: an sqlite3 connection or an sqlite_utils.Database. A table of
    a version 1 or 2 file, which a writer has not migrated yet (its row_key last), passes:
    reports read it. `layout`: the file's (store.query.layout_of), Kamailio's by default."""
    have = tuple(r[1] for r in db.execute(f'PRAGMA table_info("{table}")').fetchall())
    known = _known_layouts(table) if layout is None or layout is BY_NAME.get(table) \
        else [layout.column_names]
    if have not in known:
        raise StoreError(f"{path}: table {table} has columns ({', '.join(have)}) that sipprobe "
                         "did not write: give sipprobe a file of its own with --db")
    return have


def _known_layouts(table: str) -> list[tuple[str, ...]]:
    """The column lists sipprobe has written `table` with: today's, and before schema 4's
    ADDED_COLUMNS, with or without schema 2's row_key."""
    now = table_columns(table)
    before = tuple(c for c in now if c not in ADDED_COLUMNS.get(table, ()))
    return [now, now + (OLD_KEY,), before, before + (OLD_KEY,)]


def add_columns(db, table: str, have: tuple[str, ...]) -> None:
    """Schema 3 to 4: append the columns `table` lacks (nullable ones: SQLite's ADD COLUMN),
    then fill them in the stored rows where ADDED_FILL can."""
    layout = BY_NAME[table]
    for name in layout.column_names[len(have):]:
        db.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {layout.column(name).sql_type}')
        if name in ADDED_FILL:
            db.execute(f'UPDATE "{table}" SET "{name}" = {ADDED_FILL[name]}')


def migrate_row_keys(db, path: str, table: str) -> None:
    """Schema 2 to 3: the unique index over the row's identity replaces the row_key column and
    its index (and the callid index, which the new one's first column serves). The rows stay;
    the identity is what the key hashed, so the new index accepts every row the old one did and
    a rerun still adds nothing."""
    if sqlite3.sqlite_version_info < (3, 35, 0):
        raise StoreError(f"{path} was written by an older sipprobe; updating it needs SQLite 3.35 "
                         f"or newer (this Python has {sqlite3.sqlite_version}): give a new --db "
                         "file, or upgrade SQLite")
    db.execute(f'DROP INDEX IF EXISTS "{table}_{OLD_KEY}_idx"')
    db.execute(f'DROP INDEX IF EXISTS "{table}_callid_idx"')
    db.execute(f'ALTER TABLE "{table}" DROP COLUMN "{OLD_KEY}"')
    db.execute(create_statements(table)[-1])  # the identity's unique index


def _check_meta(meta: dict, path: str, clock: str) -> None:
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} was written by a newer sipprobe (schema {version}, this one "
                         f"knows {SCHEMA_VERSION}): upgrade sipprobe or give another --db file")
    stored = meta.get("time_column", "utc")
    if stored != clock:
        raise StoreError(f"{path} stores `time` as {stored} time, not {clock}: keep the setting "
                         "the file was created with, or give another --db file, so that the "
                         "column stays on one clock")


# The DDL text is what sqlite_utils' create() and create_index() wrote for these tables, so that
# files keep the same sqlite_master (tests/test_store.py compares the two).
META_DDL = (f'CREATE TABLE "{META_TABLE}" (\n   "key" TEXT PRIMARY KEY,\n'
            '   "value" TEXT NOT NULL\n);')

# one row per Call-ID with state to carry (sip_dissect/carry.py), and callid '' for the proxies
# learned; time_epoch: the group's last packet time
OPEN_CALLS_DDL = (f'CREATE TABLE "{OPEN_CALLS_TABLE}" (\n   "callid" TEXT PRIMARY KEY,\n'
                  '   "time_epoch" REAL NOT NULL,\n   "state" TEXT NOT NULL\n);')


def create_statements(table: str) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements of one of ALL_TABLES, in creation order."""
    return table_statements(BY_NAME[table], table)


def table_statements(layout, table: str) -> list[str]:
    """The statements of `table`, a table of the tables.Table `layout`."""
    lines = []
    for column in layout.columns:
        line = f'   "{column.name}" {column.sql_type}'
        if column.primary_key:
            line += " PRIMARY KEY"
        elif not column.nullable:
            line += " NOT NULL"
        if column.default is not None:
            line += f" DEFAULT {sql_literal(column.default)}"
        lines.append(line)
    statements = [f'CREATE TABLE "{table}" (\n' + ",\n".join(lines) + "\n);"]
    for column in layout.indexed:
        statements.append(f'CREATE INDEX "{table}_{column}_idx"\n    ON "{table}" ("{column}");')
    statements.append(f'CREATE UNIQUE INDEX "{table}_identity_idx"\n    ON "{table}" ('
                      + ", ".join(f'"{c}"' for c in layout.identity) + ");")
    return statements  # the identity's index last: migrate_row_keys() takes it from here


def sql_literal(value) -> str:
    """A column default as SQL text (as sqlite_utils writes it)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    raise ValueError(f"no SQL literal for the default {value!r}")
