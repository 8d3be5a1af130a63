"""A throw-away PostgreSQL 15 server for the tests (Debian's `postgresql` package).

initdb refuses to run as root: as root the server runs as the `postgres` OS user (runuser), in
a temporary directory it owns, listening on 127.0.0.1 and a free port, trust authentication.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest


def binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now (the servers the tests start take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server: apt-get install postgresql")
        self.dir = tempfile.mkdtemp(prefix="sipprobe-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.prefix = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(self.prefix + [os.path.join(self.bin, args[0]), *args[1:]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir)

    def start(self) -> "Server":
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres")
        self._run("pg_ctl", "-D", self.data, "-o",
                  f"-k {self.dir} -p {self.port} -h 127.0.0.1", "-l",
                  os.path.join(self.dir, "log"), "-w", "start")
        return self

    def database(self, name: str) -> str:
        """A new empty database's URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL server of the test module's own, stopped after its last test (import this
    fixture into the module)."""
    srv = Server().start()
    try:
        yield srv
    finally:
        srv.stop()
