"""The proxy's accounting tables in a database server, for `sipprobe diff --proxy-db URL`:
PostgreSQL with Kamailio's own DDL (kamailio/utils/kamctl/postgres/acc-create.sql: the times
TIMESTAMP WITHOUT TIME ZONE, which psycopg gives as a naive datetime; store/proxydb.epoch_of
reads them as UTC).

Read-only twice over: the connection's transactions are READ ONLY (the server refuses any write
in them), and only SELECTs are sent. Columns are the tables' own, from information_schema, in
the current schema (search_path), so a proxy's extra columns come along and missing ones are
not compared.
"""
from __future__ import annotations

from store import StoreError
from store.proxydb import TABLES, decoded


def _shown(url: str) -> str:
    from store.postgres import shown
    return shown(url)


def connect_read_only(url: str):
    """A psycopg connection whose every transaction is READ ONLY; StoreError if unusable."""
    try:
        import psycopg
    except ImportError:
        raise StoreError("--proxy-db postgresql://... needs psycopg: "
                         "pip install 'psycopg[binary]'") from None
    try:
        conn = psycopg.connect(url, autocommit=False)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to proxy database {_shown(url)}: "
                         f"{str(exc).strip()}") from None
    conn.read_only = True  # BEGIN READ ONLY before the first statement
    return conn


def read_server(url: str, tables=TABLES) -> dict[str, tuple[tuple[str, ...], list[dict]]]:
    """store.proxydb.read_tables for a PostgreSQL URL."""
    import psycopg

    conn = connect_read_only(url)
    try:
        found: dict[str, list[str]] = {}
        for table, column in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ANY(%s) "
                "ORDER BY table_name, ordinal_position", [list(tables)]):
            found.setdefault(table, []).append(column)
        out = {}
        for table in tables:
            if table in found:
                columns = tuple(found[table])
                select = ", ".join(f'"{c}"' for c in columns)
                out[table] = (columns, decoded(table, columns, conn.execute(
                    f'SELECT {select} FROM "{table}"')))
        if not out:
            raise StoreError(f"{_shown(url)} has none of Kamailio's accounting tables "
                             f"({', '.join(tables)}) in its schema {_schema(conn)}")
        return out
    except psycopg.Error as exc:
        raise StoreError(f"proxy database {_shown(url)}: {str(exc).strip()}") from None
    finally:
        conn.close()


def _schema(conn) -> str:
    try:
        return str(conn.execute("SELECT current_schema()").fetchone()[0])
    except Exception:
        return "(unknown)"
