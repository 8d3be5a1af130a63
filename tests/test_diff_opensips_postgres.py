"""`sipprobe diff --proxy-db postgresql://...` against an OpenSIPS proxy: OpenSIPS' PostgreSQL
DDL (lab/opensips-acc-create-postgres.sql: TIMESTAMP WITHOUT TIME ZONE times, which psycopg
gives as naive datetimes) in a real PostgreSQL 15, holding the rows tests/test_diff_opensips.py
derives from the real Kamailio's lab rows (its docstring says how and why that is the oracle).
The result must equal the one against the SQLite proxy file, and a changed row is found."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_diff_opensips import EXTRA, STOCK, opensips_proxy_db, replayed

from tests.pg_server import Server, binaries, server  # noqa: F401  (the fixture)

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(binaries() is None, reason="no PostgreSQL server installed")

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("lab-serial-answer", "lab-ringing-then-answer", "lab-concurrent", "lab-cancel-487")


def pg_opensips_db(server: Server, lite: Path, name: str) -> str:
    """A new database with OpenSIPS' PostgreSQL tables and the SQLite proxy file's rows."""
    url = server.database(name)
    source = sqlite3.connect(lite)
    try:
        with psycopg.connect(url) as conn:
            conn.execute((ROOT / "lab" / "opensips-acc-create-postgres.sql").read_text())
            for table in ("acc", "missed_calls"):
                for column in EXTRA:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(64) "
                                 "DEFAULT '' NOT NULL")
                cur = source.execute(f"SELECT * FROM {table}")
                cols = [d[0] for d in cur.description if d[0] != "id"]
                rows = [row[1:] for row in cur]
                if rows:
                    with conn.cursor() as pg:
                        pg.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                       f"({', '.join(['%s'] * len(cols))})", rows)
    finally:
        source.close()
    return url


@pytest.mark.parametrize("name", NAMES)
def test_postgres_proxy_gives_the_sqlite_files_result(server, name, tmp_path):
    from store.shadow import diff

    scenario = next(s for s in STOCK if s.name == name)
    lite = opensips_proxy_db(scenario, tmp_path / "acc.db")
    url = pg_opensips_db(server, lite, "os_" + name.replace("-", "_"))
    db = replayed(scenario, tmp_path / "o.db", "--flavour", "opensips")
    got, want = diff(str(db), url), diff(str(db), str(lite))
    assert got["agree"] and got == want
    assert sum(p["equal"] for p in got["tables"].values()) > 0


def test_a_changed_postgres_row_is_found(server, tmp_path):
    from store.shadow import diff

    scenario = next(s for s in STOCK if s.name == "lab-serial-answer")
    lite = opensips_proxy_db(scenario, tmp_path / "acc.db")
    url = pg_opensips_db(server, lite, "os_changed")
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE acc SET created = created - interval '5 seconds'")
    got = diff(str(replayed(scenario, tmp_path / "o.db", "--flavour", "opensips")), url)
    assert not got["agree"]
    [row] = got["tables"]["acc"]["differ"]
    assert [c["column"] for c in row["columns"]] == ["created"]
