"""The proxy's accounting tables in a database server, for `sipprobe diff --proxy-db URL`:
PostgreSQL or MySQL/MariaDB with Kamailio's own DDL (kamailio/utils/kamctl/postgres/ and
mysql/acc-create.sql: the times TIMESTAMP WITHOUT TIME ZONE or DATETIME, which psycopg and
PyMySQL give as naive datetimes; store/proxydb.epoch_of reads them as UTC).

Read-only twice over: the connection's transactions are READ ONLY (the server refuses any write
in them), and only SELECTs are sent. Columns are the tables' own, from information_schema, in
the current schema (PostgreSQL's search_path, MySQL's database of the URL), so a proxy's extra
columns come along and missing ones are not compared.
"""
from __future__ import annotations

from typing import Callable, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from store import StoreError, shown
from store.proxydb import TABLES, decoded


class Backend(NamedTuple):
    driver: str  # the module, for the message when it is missing
    install: str
    connect: Callable  # url -> a connection whose transactions are READ ONLY
    columns_sql: str  # (table_name, column_name) of the current schema's tables in %s
    tables_param: Callable  # the tables as the driver binds them into columns_sql
    quote: str  # around identifiers


def _postgres(url: str):
    import psycopg

    conn = psycopg.connect(url, autocommit=False)
    conn.read_only = True  # BEGIN READ ONLY before the first statement
    return conn


def mysql_parameters(url: str) -> dict:
    """PyMySQL's connect() arguments of mysql://USER[:PASSWORD]@HOST[:PORT]/DB, with
    ?unix_socket=PATH for a local socket."""
    parts = urlsplit(url)
    if not parts.path.strip("/"):
        raise StoreError(f"{shown(url)}: give the database, mysql://USER@HOST/DB")
    args = {"host": parts.hostname or "localhost", "port": parts.port or 3306,
            "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
            "database": unquote(parts.path.strip("/")), "charset": "utf8mb4",
            "autocommit": False, "connect_timeout": 10,
            # every later transaction of the session is READ ONLY, the first one included
            "init_command": "SET SESSION TRANSACTION READ ONLY"}
    socket = parse_qs(parts.query).get("unix_socket")
    if socket:
        args["unix_socket"] = socket[0]
    return args


def _mysql(url: str):
    import pymysql

    return pymysql.connect(**mysql_parameters(url))


BACKENDS = {
    "postgresql": Backend("psycopg", "pip install 'psycopg[binary]'", _postgres,
                          "SELECT table_name, column_name FROM information_schema.columns "
                          "WHERE table_schema = current_schema() AND table_name = ANY(%s) "
                          "ORDER BY table_name, ordinal_position", list, '"'),
    "mysql": Backend("pymysql", "pip install 'sipprobe[mysql]' (PyMySQL)", _mysql,
                     "SELECT table_name, column_name FROM information_schema.columns "
                     "WHERE table_schema = DATABASE() AND table_name IN %s "
                     "ORDER BY table_name, ordinal_position", tuple, "`"),
}


def backend_name(url: str) -> str | None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql",
            "mariadb": "mysql"}.get(scheme)


def connect_read_only(url: str):
    """A connection to the proxy's database whose every transaction is READ ONLY; StoreError
    if the driver is missing or the server refuses."""
    backend = BACKENDS[backend_name(url)]
    try:
        driver = __import__(backend.driver)
    except ImportError:
        raise StoreError(f"--proxy-db {url.split('://')[0]}://... needs {backend.driver}: "
                         f"{backend.install}") from None
    try:
        return backend.connect(url)
    except driver.Error as exc:
        raise StoreError(f"cannot connect to proxy database {shown(url)}: "
                         f"{str(exc).strip()}") from None


def _rows(conn, sql: str, params=None) -> list:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def read_server(url: str, tables=TABLES) -> dict[str, tuple[tuple[str, ...], list[dict]]]:
    """store.proxydb.read_tables for a PostgreSQL or MySQL URL."""
    backend = BACKENDS[backend_name(url)]
    conn = connect_read_only(url)
    driver = __import__(backend.driver)
    try:
        found: dict[str, list[str]] = {}
        for table, column in _rows(conn, backend.columns_sql, [backend.tables_param(tables)]):
            found.setdefault(table, []).append(column)
        out = {}
        q = backend.quote
        for table in tables:
            if table in found:
                columns = tuple(found[table])
                select = ", ".join(f"{q}{c}{q}" for c in columns)
                out[table] = (columns, decoded(table, columns, _rows(
                    conn, f"SELECT {select} FROM {q}{table}{q}")))
        if not out:
            raise StoreError(f"{shown(url)} has none of Kamailio's or OpenSIPS' "
                             f"accounting tables ({', '.join(tables)}) in its current schema")
        return out
    except driver.Error as exc:
        raise StoreError(f"proxy database {shown(url)}: {str(exc).strip()}") from None
    finally:
        conn.close()
