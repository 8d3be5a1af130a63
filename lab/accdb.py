"""Kamailio's accounting database for the lab: created fresh per scenario from
schema.sql (WAL, tmpfs), dumped to JSON with db_sqlite's time columns decoded.
Python 3.11 standard library only."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

from labkit import LabError

SCHEMA_SQL = Path(__file__).resolve().parent / "schema.sql"
TABLES = ("acc", "missed_calls", "acc_cdrs")

JD_UNIX_EPOCH = 2440587.5


def convert_time(raw):
    """db_sqlite writes a DATETIME as the REAL Julian day of (time_t - 0.5 s)
    and reads it back with +0.5 s, so the proxy's own time_t is
    round(86400 * (jd - 2440587.5) + 0.5)."""
    if isinstance(raw, (int, float)):
        literal = (raw - JD_UNIX_EPOCH) * 86400.0
        epoch = int(round(literal + 0.5))
        return {
            "epoch": epoch,
            "utc": dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "epoch_literal": round(literal, 3),
        }
    if isinstance(raw, str):   # a text DATETIME, should a future db_sqlite write one
        try:
            t = dt.datetime.fromisoformat(raw).replace(tzinfo=dt.timezone.utc)
            return {"epoch": int(t.timestamp()), "utc": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "epoch_literal": t.timestamp()}
        except ValueError:
            pass
    return {"epoch": None, "utc": None, "epoch_literal": None}


def dump_tables(db: Path) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for table in TABLES:
            info = con.execute(f"PRAGMA table_info({table})").fetchall()
            columns = [c[1] for c in info]
            time_cols = [c[1] for c in info
                         if any(k in (c[2] or "").upper() for k in ("TIMESTAMP", "DATETIME"))]
            rows = []
            for values in con.execute(f"SELECT * FROM {table} ORDER BY id"):
                row = dict(zip(columns, values))
                for col in time_cols:
                    conv = convert_time(row[col])
                    row[f"{col}_epoch"] = conv["epoch"]
                    row[f"{col}_utc"] = conv["utc"]
                    row[f"{col}_epoch_literal"] = conv["epoch_literal"]
                rows.append(row)
            out[table] = {"columns": columns, "time_columns": time_cols, "rows": rows}
        return out
    finally:
        con.close()


def create_db(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        con.executescript(SCHEMA_SQL.read_text())
        # persistent: Kamailio's connection opens the file in WAL mode too
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise LabError(f"could not put {db} in WAL mode (got {mode})")
        con.commit()
    finally:
        con.close()


def tshark_sip_stat(pcap: Path) -> tuple[str | None, int | None]:
    if not shutil.which("tshark"):
        return None, None
    try:
        r = subprocess.run(["tshark", "-q", "-z", "sip,stat", "-r", str(pcap)],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, None
    text = r.stdout.strip()
    m = re.search(r"Number of SIP messages:\s*(\d+)", text)
    return text, int(m.group(1)) if m else None
