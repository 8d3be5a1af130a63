"""Process, namespace and capture plumbing shared by the lab runners
(run_lab.py: SIPp calls; run_media_lab.py: baresip calls through rtpengine).

Every child is started in its own process group and stopped by that group's id,
every wait has a timeout. Python 3.11 standard library only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PROXY = ("127.0.0.1", 5060)
NETNS_ENV = "SIPPROBE_LAB_IN_NETNS"


class LabError(Exception):
    """A scenario could not run or produced something unexpected."""


def log(msg: str, tag: str = "lab") -> None:
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tmp_parent() -> str | None:
    # WAL and tmpfs keep db_sqlite's synchronous inserts cheap (LAB-NOTES)
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class Proc:
    """A child we started, always stopped by its own pid/process group."""

    def __init__(self, name: str, argv: list[str], cwd: Path, stdout: Path,
                 stderr_pipe: bool = False):
        self.name, self.argv = name, argv
        self._out = open(stdout, "wb")
        self.p = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=subprocess.PIPE if stderr_pipe else subprocess.STDOUT,
            start_new_session=True)   # own group: kamailio's workers go with it

    def wait(self, timeout: float) -> int | None:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=5)
        self._out.close()
        return self.p.returncode


def wait_udp_port(port: int, timeout: float) -> None:
    """Wait until something is bound to 127.0.0.1:port (UDP), via /proc."""
    needle = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in Path("/proc/net/udp").read_text():
            return
        time.sleep(0.05)
    raise LabError(f"nothing listening on udp 127.0.0.1:{port} after {timeout:.0f} s")


def wait_tcp_port(port: int, timeout: float) -> None:
    """Wait until something listens on 127.0.0.1:port (TCP), via /proc."""
    needle = f"0100007F:{port:04X} 00000000:0000 0A"   # 0A = LISTEN
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in Path("/proc/net/tcp").read_text():
            return
        time.sleep(0.05)
    raise LabError(f"nothing listening on tcp 127.0.0.1:{port} after {timeout:.0f} s")


def wait_kamailio(proc: Proc, timeout: float = 10.0, proxy: tuple[str, int] = PROXY) -> None:
    """OPTIONS keepalive until a worker answers (before the capture starts)."""
    deadline = time.monotonic() + timeout
    n = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        lport = s.getsockname()[1]
        while time.monotonic() < deadline:
            if proc.p.poll() is not None:
                raise LabError(f"kamailio exited with status {proc.p.returncode} at startup")
            n += 1
            msg = (f"OPTIONS sip:{proxy[0]}:{proxy[1]} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-labready-{n}\r\n"
                   f"From: <sip:lab@127.0.0.1>;tag=labready\r\n"
                   f"To: <sip:{proxy[0]}>\r\nCall-ID: labready-{os.getpid()}\r\n"
                   f"CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            try:
                s.sendto(msg.encode(), proxy)
                if s.recv(4096).startswith(b"SIP/2.0 200"):
                    return
            except OSError:
                time.sleep(0.1)
    raise LabError(f"kamailio did not answer OPTIONS within {timeout:.0f} s")


def start_tcpdump(pcap: Path, cwd: Path, bpf: str = "udp or tcp"
                  ) -> tuple[Proc, list[str], threading.Thread]:
    argv = ["tcpdump", "-i", "lo", "-s", "0", "-U", "-n", "-w", str(pcap), bpf]
    proc = Proc("tcpdump", argv, cwd, cwd / "tcpdump.out", stderr_pipe=True)
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        for raw in proc.p.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if "listening on" in line:
                ready.set()
        ready.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    if not ready.wait(10) or proc.p.poll() is not None:
        proc.stop()
        raise LabError("tcpdump did not start: " + " | ".join(lines))
    return proc, lines, thread


def ports_free(ports: list[int]) -> list[str]:
    busy = []
    for port in ports:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(f"{'udp' if kind == socket.SOCK_DGRAM else 'tcp'}/{port}")
    return busy


def netns_prefix() -> list[str] | None:
    """The `unshare` argv that runs a command in a fresh network namespace
    (--map-root-user when not root), or None if this machine cannot."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return None
    ns = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--net", "--map-root-user"]
    probe = subprocess.run(ns + ["true"], capture_output=True)
    return ns if probe.returncode == 0 else None


def reexec_in_netns(script: str, argv: list[str]) -> int | None:
    """Run `script` again inside a new network namespace; None if impossible."""
    ns = netns_prefix()
    if ns is None:
        return None
    env = dict(os.environ, **{NETNS_ENV: "1"})
    # the namespace (and everything in it) disappears when this child exits
    return subprocess.run(ns + [sys.executable, str(Path(script).resolve()), *argv],
                          env=env).returncode


def bring_lo_up() -> str | None:
    """Inside a fresh namespace lo is down; None on success, else ip's complaint."""
    r = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    return None if r.returncode == 0 else r.stderr.strip()
