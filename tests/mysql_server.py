"""A throw-away MariaDB server for the tests (Debian's `mariadb-server` package), as
tests/pg_server.py is for PostgreSQL: mariadb-install-db into a temporary directory, then
mariadbd on 127.0.0.1 and a free port, the root account without a password. As root both run
as the `mysql` OS user (runuser). About 4 s to set up on 2 shared cores (the install is most of
it; the server is up 0.35 s after it starts)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from pg_server import free_port

INSTALL_DB = shutil.which("mariadb-install-db")
MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/bin") or shutil.which("mariadbd")


def available() -> bool:
    return bool(INSTALL_DB and MARIADBD)


class Server:
    def __init__(self):
        if not available():
            raise RuntimeError("no MariaDB server: apt-get install mariadb-server")
        self.dir = tempfile.mkdtemp(prefix="sipprobe-mariadb-")
        self.data = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "sock")
        self.port = free_port()
        self.prefix = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mysql")
            self.prefix = ["runuser", "-u", "mysql", "--"]
        self.url = f"mysql://root@127.0.0.1:{self.port}/"
        self.proc = None

    def start(self, timeout: float = 30.0) -> "Server":
        subprocess.run(self.prefix + [INSTALL_DB, "--no-defaults", f"--datadir={self.data}",
                                      "--auth-root-authentication-method=normal",
                                      "--skip-test-db"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd=self.dir)
        self.proc = subprocess.Popen(
            self.prefix + [MARIADBD, "--no-defaults", f"--datadir={self.data}",
                           f"--socket={self.socket}", "--bind-address=127.0.0.1",
                           f"--port={self.port}", f"--pid-file={self.dir}/pid",
                           f"--log-error={self.dir}/err.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mariadbd did not start")
            time.sleep(0.05)
        return self

    def database(self, name: str) -> str:
        """A new empty database's URL."""
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            conn.cursor().execute(f"CREATE DATABASE `{name}`")
        finally:
            conn.close()
        return self.url + name

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()  # runuser passes SIGTERM on: a clean shutdown
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
