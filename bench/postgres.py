"""The signalling-only replay into SQLite and into PostgreSQL: SIP messages per second of each.

    .venv/bin/python bench/postgres.py postgresql://postgres@127.0.0.1:5432/postgres \
        [--capture /tmp/sipprobe-bench/sig-only.pcap] [--runs 2]

The URL names a server where a fresh database `sipprobe_bench` may be created (dropped first).
Each run replays the capture into a new SQLite file and a new PostgreSQL database, and prints
the wall time and rate of both (docs/postgresql.md keeps the figures).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fresh_database(url: str, name: str) -> str:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = conninfo_to_dict(url)
    parts["dbname"] = name
    return make_conninfo(**parts)


def run(capture: str, db: str) -> tuple[float, dict]:
    from pipeline import replay_files

    start = time.perf_counter()
    summary = replay_files([capture], db, store_options={"probe": "bench"})
    return time.perf_counter() - start, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--capture", default="/tmp/sipprobe-bench/sig-only.pcap")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    for n in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_s, summary = run(args.capture, os.path.join(tmp, "bench.db"))
        conninfo = fresh_database(args.url, "sipprobe_bench")
        pg_s, pg_summary = run(args.capture, _as_url(conninfo))
        messages = summary["sip_messages"]
        rows = summary["acc_inserted"] + summary["missed_inserted"] + summary["cdrs_inserted"]
        assert pg_summary["acc_inserted"] == summary["acc_inserted"]
        assert pg_summary["cdrs_inserted"] == summary["cdrs_inserted"]
        print(f"run {n + 1}: {messages} SIP messages, {rows} rows; "
              f"SQLite {sqlite_s:.2f} s ({messages / sqlite_s:,.0f} msg/s), "
              f"PostgreSQL {pg_s:.2f} s ({messages / pg_s:,.0f} msg/s): "
              f"{sqlite_s / pg_s:.2f} of SQLite's rate")


def _as_url(conninfo: str) -> str:
    """A key=value conninfo as a postgresql:// URL (open_store selects PostgreSQL by it)."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(conninfo)
    user = f"{p['user']}@" if p.get("user") else ""
    return f"postgresql://{user}{p.get('host', '')}:{p.get('port', 5432)}/{p['dbname']}"


if __name__ == "__main__":
    main()
