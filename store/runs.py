"""Each run that writes a store (a replay, a sniff) leaves a row in sipprobe_runs: who it was
(host, pid, the process's start time), when it started, its last commit and its clean end.

A SIGKILLed (or crashed, or powered-off) run cannot say what it lost; the next run can. Its
writer process stamps `last_commit` inside every commit's own transaction, and `ended` only
when the probe closes the store (a writer whose parent vanished commits what it was handed
and leaves `ended` empty). A run starting finds the earlier runs of this host with no `ended`
whose process is gone, and says once (then `noticed_by` holds its id) that nothing after their
last commit was recorded: at most their commit interval of traffic.

Only runs of this host (and, in PostgreSQL, of this probe name) are judged: another host's
process cannot be looked up, and its run may be going on. The SQL is written for SQLite;
store/postgres.py translates it (pg_sql).
"""
from __future__ import annotations

import os
import socket
import time

RUNS_TABLE = "sipprobe_runs"
# the kinds: what the notice says was lost
REPLAY, SNIFF = "replay", "sniff"

COLUMNS = (  # name, SQLite type, NOT NULL
    ("id", "INTEGER PRIMARY KEY", False),
    ("kind", "TEXT", True),  # replay, sniff, or '' (a store opened by other code)
    ("host", "TEXT", True),
    ("pid", "INTEGER", True),
    ("pid_start", "INTEGER", True),  # /proc/PID/stat starttime: a reused pid is another process
    ("commit_interval", "REAL", True),  # the run's batch_seconds
    ("started", "REAL", True),  # epoch seconds, wall clock
    ("last_commit", "REAL", False),
    ("ended", "REAL", False),  # a clean stop: the store closed by the probe
    ("noticed_by", "INTEGER", False),  # the run that reported this one's unclean end
)
# what sqlite_utils' create() would write (the other tables' DDL is its text too)
SQLITE_DDL = (f'CREATE TABLE "{RUNS_TABLE}" (\n'
              + ",\n".join(f'   "{n}" {t}' + (" NOT NULL" if nn else "") for n, t, nn in COLUMNS)
              + "\n);")
STAMP_COMMIT = f"UPDATE {RUNS_TABLE} SET last_commit = ? WHERE id = ?"
STAMP_END = f"UPDATE {RUNS_TABLE} SET ended = ? WHERE id = ?"
_UNCLEAN = (f"SELECT id, kind, pid, pid_start, commit_interval, started, last_commit "
            f"FROM {RUNS_TABLE} WHERE ended IS NULL AND noticed_by IS NULL AND host = ?")


def host_name() -> str:
    return socket.gethostname() or "localhost"


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (proc(5), field 22), None if there
    is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its last ')'
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def running(pid: int, pid_start: int) -> bool:
    """Whether the process that registered a run on this host is still there."""
    started = process_start(pid)
    if started is not None:
        return started == pid_start
    if not os.path.isdir("/proc"):  # no /proc to tell: a process with that pid may be it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return False


def start(db, kind: str, commit_interval: float, *, param: str = "?",
          extra_where: str = "", extra: tuple = ()) -> tuple[int, list[dict]]:
    """Register this process's run and report the earlier unclean ones, in the caller's open
    transaction on `db` (a DB-API connection or cursor with execute()). Returns (this run's id,
    [{started, pid, kind, last_commit, commit_interval, message}] of the runs noticed now).
    `param`, `extra_where`, `extra`: PostgreSQL's parameter style and its probe column."""
    def sql(text: str) -> str:
        return text.replace("?", param)

    host, pid = host_name(), os.getpid()
    unclean = []
    for rid, rkind, rpid, rstart, interval, started, last in db.execute(
            sql(_UNCLEAN + extra_where), (host, *extra)).fetchall():
        if running(rpid, rstart):
            continue  # going on (a sniff into the file this replay writes)
        unclean.append({"id": rid, "kind": rkind, "pid": rpid, "started": started,
                        "last_commit": last, "commit_interval": interval,
                        "message": notice(rkind, rpid, started, last, interval)})
    columns = ("kind", "host", "pid", "pid_start", "commit_interval", "started") \
        + (("probe",) if extra else ())
    values = (kind, host, pid, process_start(pid) or 0, commit_interval, time.time(), *extra)
    insert = f"INSERT INTO {RUNS_TABLE} ({', '.join(columns)}) VALUES (" \
        + ", ".join("?" * len(columns)) + ")"
    if param == "?":  # SQLite (RETURNING only from 3.35)
        run_id = db.execute(insert, values).lastrowid
    else:
        run_id = db.execute(sql(insert + " RETURNING id"), values).fetchone()[0]
    for run in unclean:
        db.execute(sql(f"UPDATE {RUNS_TABLE} SET noticed_by = ? WHERE id = ?"),
                   (run_id, run.pop("id")))
    return run_id, unclean


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 10)} UTC"


def notice(kind: str, pid: int, started: float, last_commit: float | None,
           interval: float) -> str:
    """The one line that tells what an unclean run lost."""
    what = f"the {kind} " if kind else "the run "
    head = f"{what}started {utc(started)} (pid {pid}) ended without a clean stop; "
    bound = f"at most the commit interval, {interval:g} s, of traffic"
    if kind == REPLAY:  # batches of 1 s or 50,000 rows; rows keyed on content
        bound = (f"its last batch, at most {interval:g} s of its work: replaying the same "
                 "captures again adds exactly what is missing")
    if last_commit is None:
        return head + f"it committed nothing before it ended ({bound})"
    return head + f"nothing after its last commit at {utc(last_commit)} was recorded ({bound})"


LISTED = ("id", "kind", "host", "pid", "started", "last_commit", "ended", "end")


def listing(db_path: str) -> list[dict]:
    """Every run recorded in the store (`sipprobe report runs`), oldest first: its times as UTC
    text and how it ended: clean, running (its process is still there), unclean (reported by
    run N) or unclean (not reported yet; another host's run may still be going)."""
    from store import StoreError, is_url

    if is_url(db_path):
        from store import postgres

        with postgres.connect(db_path) as conn:
            try:
                rows = conn.execute(f"SELECT id, kind, host, pid, pid_start, started, "
                                    f"last_commit, ended, noticed_by FROM {RUNS_TABLE} "
                                    "ORDER BY id").fetchall()
            except Exception as exc:
                raise StoreError(f"{postgres.shown(db_path)}: {str(exc).strip()}") from None
    else:
        import sqlite3

        from store.schema import database_error, open_connection

        db = open_connection(db_path, create=False)
        try:
            rows = db.execute(f"SELECT id, kind, host, pid, pid_start, started, last_commit, "
                              f"ended, noticed_by FROM {RUNS_TABLE} ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                raise StoreError(f"{db_path} has no {RUNS_TABLE} table: it was written by an "
                                 "older sipprobe; the next replay or sniff into it adds it") \
                    from None
            raise database_error(db_path, exc) from None
        finally:
            db.close()
    here = host_name()
    out = []
    for rid, kind, host, pid, pid_start, started, last, ended, noticed_by in rows:
        if ended is not None:
            end = "clean"
        elif host == here and running(pid, pid_start):
            end = "running"
        elif noticed_by is not None:
            end = f"unclean (reported by run {noticed_by})"
        else:
            end = "unclean" if host == here else "no clean end (another host: maybe running)"
        out.append({"id": rid, "kind": kind, "host": host, "pid": pid,
                    "started": utc(started), "last_commit": None if last is None else utc(last),
                    "ended": None if ended is None else utc(ended), "end": end})
    return out
