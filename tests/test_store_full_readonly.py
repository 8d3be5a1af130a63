"""A database that cannot be written: a read-only file or mount, a full disk. One clear line on
stderr, exit status 2, no traceback, and nothing already committed is lost.

The read-only file is tried as an unprivileged user (root may write a chmod 444 file): the
replay runs as `nobody` through setpriv. The read-only mount and the full disk are mounts
this test makes (a read-only bind mount, a 16 MiB tmpfs); without the right to mount, those
tests are skipped."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or "sipprobe"
CALL = ROOT / "pcaps/lab-basic-call/capture.pcap"
OTHER = ROOT / "pcaps/lab-cancel-487/capture.pcap"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def sipprobe(*args, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, SIPPROBE, *args], capture_output=True, text=True,
                          timeout=120)


def one_clear_line(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sipprobe: "), out.stderr
    for w in words:
        assert w in lines[0], lines[0]


def rows(db: Path, sql: str = "SELECT * FROM acc ORDER BY id") -> list:
    con = sqlite3.connect(db)  # read-write: its close removes the -shm file, as a writer's
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def shared_dir():
    """A directory `nobody` can reach and write (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sipprobe-ro-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def mount(*args) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to switch to nobody (setpriv)")
def test_replay_into_a_read_only_file(shared_dir):
    """chmod 444, replayed into by `nobody` (in a directory it may write): one line that says
    the file is read-only and how to fix it; the file keeps its rows."""
    db = shared_dir / "acc.db"
    assert sipprobe("replay", str(CALL), "--db", str(db)).returncode == 0
    before = rows(db)
    assert len(before) == 2
    db.chmod(0o444)
    out = sipprobe("replay", str(OTHER), "--db", str(db), prefix=NOBODY)
    one_clear_line(out, "read-only", str(db))
    assert rows(db) == before
    # nobody may still read it
    report = sipprobe("report", "acc", "--db", str(db), "-f", "csv", prefix=NOBODY)
    assert report.returncode == 0 and report.stdout.count("\n") == 3, report.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_replay_into_a_read_only_mount(tmp_path):
    """The file on a read-only bind mount (root cannot write it either): one clear line, exit
    2; reports still read it (as immutable: no -shm can be created there)."""
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "acc.db"
    assert sipprobe("replay", str(CALL), "--db", str(db)).returncode == 0
    before = rows(db)
    ro = tmp_path / "ro"
    ro.mkdir()
    assert sorted(p.name for p in folder.iterdir()) == ["acc.db"]  # no -wal, no -shm
    mount("--bind", str(folder), str(ro))
    try:
        mount("-o", "remount,ro,bind", str(ro))
        out = sipprobe("replay", str(OTHER), "--db", str(ro / "acc.db"))
        one_clear_line(out, "read-only")
        report = sipprobe("report", "acc", "--db", str(ro / "acc.db"), "-f", "csv")
        assert report.returncode == 0 and report.stdout.count("\n") == 3, report.stderr
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert rows(db) == before


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory) -> Path:
    """bench/gen_captures.py's signalling-only capture (350,000 SIP messages, 50,000 calls,
    about 50 MB of rows: more than the disk below holds)."""
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, str(ROOT / "bench/gen_captures.py"), "--only", "sig",
                    "--out", str(out)], check=True, capture_output=True)
    return out / "sig-only.pcap"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_full_disk_keeps_what_was_committed(big_capture, tmp_path):
    """A 16 MiB tmpfs: a small replay commits, then a big one fills the disk. One line says the
    disk is full; every row committed before, the earlier run's and the batches of the big run
    that fit, is still there and readable (integrity_check ok); once space is freed the same
    replay completes the file to exactly the rows of one clean run."""
    clean = tmp_path / "clean.db"
    assert sipprobe("replay", str(CALL), str(big_capture), "--db", str(clean)).returncode == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk))
    try:
        db = disk / "acc.db"
        assert sipprobe("replay", str(CALL), "--db", str(db)).returncode == 0
        first = rows(db)
        out = sipprobe("replay", str(big_capture), "--db", str(db))
        one_clear_line(out, "disk is full", "free some disk space")
        kept = rows(db)
        assert rows(db, "PRAGMA integrity_check") == [("ok",)]
        assert kept[:2] == first
        assert len(kept) > len(first)  # the big run's first batches were committed
        whole = {r[1:] for r in rows(clean)}  # rows without their id
        assert {r[1:] for r in kept} <= whole
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        again = sipprobe("replay", str(big_capture), "--db", str(db))
        assert again.returncode == 0, again.stderr
        assert {r[1:] for r in rows(db)} == whole
        assert len(rows(db)) == len(whole)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
