"""`sipprobe sniff` as an operator meets it: what it listens on, its status line, a clean stop
on SIGTERM that writes the open call, and one distinct line for each reason capture cannot
start. Live traffic only on loopback or inside a network namespace the test creates; every
run bounded by --duration or a timeout."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable))
# unique per run: other tests (and other people's) may send SIP over lo at the same time
CALLID = f"sniff-open-{os.getpid()}-{time.time_ns()}@127.0.0.1"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="live capture and netns need root")


def sniff(*args, wrap=(), timeout=30):
    return subprocess.run([*wrap, SIPPROBE, "sniff", *args], capture_output=True, text=True,
                          timeout=timeout)


def _msg(start, cseq, branch, port_a, to_tag=";tag=b7"):
    return (f"{start}\r\nVia: SIP/2.0/UDP 127.0.0.1:{port_a};branch=z9hG4bK-{branch}\r\n"
            f"From: <sip:carol@lab.test>;tag=c7\r\nTo: <sip:dave@lab.test>{to_tag}\r\n"
            f"Call-ID: {CALLID}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
            ).encode()


def _answer_call(port_a: int, port_b: int) -> None:
    """INVITE, 200, ACK and no BYE: the call is up when the probe stops."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", port_a))
        b.bind(("127.0.0.1", port_b))
        to_b, to_a = ("127.0.0.1", port_b), ("127.0.0.1", port_a)
        a.sendto(_msg(f"INVITE sip:dave@127.0.0.1:{port_b} SIP/2.0", "1 INVITE", "inv",
                      port_a, ""), to_b)
        b.sendto(_msg("SIP/2.0 200 OK", "1 INVITE", "inv", port_a), to_a)
        a.sendto(_msg(f"ACK sip:dave@127.0.0.1:{port_b} SIP/2.0", "1 ACK", "ack", port_a), to_b)


@root_only
def test_sigterm_writes_the_open_call_and_the_status_lines(tmp_path):
    db = str(tmp_path / "live.db")
    proc = subprocess.Popen([SIPPROBE, "sniff", "-i", "lo", "--db", db, "--status-every", "0.5",
                             "--format", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        _answer_call(35280, 35290)
        time.sleep(1.5)  # at least two status lines after the call
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("sipprobe: listening on lo (Ethernet), filter: built-in, SIP on "
                               "ports 5060, 5061") and db in lines[0]
    status = [ln for ln in lines if "packets/s" in ln]
    assert len(status) >= 3, err  # not a terminal here: plain lines, one per period
    assert "\r" not in err and "\x1b[" not in err
    assert any(int(ln.split("calls open ")[1].split()[0]) >= 1 for ln in status), status
    assert "kernel drops 0" in status[-1] and "worst MOS (1 min) -" in status[-1]
    assert json.loads(out)["calls"] >= 1
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT callid, sip_code, end_reason, src_user, dst_user "
                            "FROM acc_cdrs WHERE callid = ?", (CALLID,)).fetchall()
    assert rows == [(CALLID, "200", "open", "carol", "dave")]


@root_only
def test_a_missing_interface(tmp_path):
    r = sniff("-i", "sipprobe-nx0", "--db", str(tmp_path / "x.db"), "--duration", "1")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.rstrip("\n")]  # one line
    assert r.stderr.startswith("sipprobe: no interface named 'sipprobe-nx0' (interfaces here: ")
    assert " lo" in r.stderr and not (tmp_path / "x.db").exists()


@root_only
def test_a_down_interface_in_a_namespace(tmp_path):
    """A fresh network namespace (unshare --net) has only lo, and it is down; a veth pair
    added there stays down too."""
    script = (f"ip link add sp-veth0 type veth peer name sp-veth1 && "
              f"{SIPPROBE} sniff -i sp-veth0 --db {tmp_path}/x.db --duration 1")
    r = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stderr == ("sipprobe: interface sp-veth0 is down: bring it up (ip link set "
                        "sp-veth0 up) and check the mirror port's cable\n")
    r = subprocess.run(["unshare", "--net", SIPPROBE, "sniff", "-i", "lo", "--db",
                        f"{tmp_path}/y.db", "--duration", "1"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("sipprobe: interface lo is down")


@root_only
def test_without_capture_permission(tmp_path):
    tmp_path.chmod(0o777)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    r = sniff("-i", "lo", "--db", str(tmp_path / "x.db"), "--duration", "1", wrap=nobody)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("sipprobe: no permission to capture on lo: run as root, or give "
                               "the Python interpreter CAP_NET_RAW")
    assert r.stderr.count("\n") == 1 and not (tmp_path / "x.db").exists()


@root_only
def test_cap_net_raw_alone_is_enough():
    """docs/operations.md's setcap recipe: a private copy of the interpreter with only
    CAP_NET_RAW, run as nobody, captures on lo (promiscuous mode included)."""
    if not shutil.which("setcap"):
        pytest.skip("setcap (libcap2-bin) not installed")
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp(prefix="sipprobe-cap-", dir="/tmp"))  # nobody reaches it
    tmp_path.chmod(0o777)
    py = tmp_path / "python3"
    shutil.copy2(os.path.realpath(sys.executable), py)
    subprocess.run(["setcap", "cap_net_raw=eip", str(py)], check=True)
    import site

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, *site.getsitepackages()])}
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(py),
                        "-m", "cli", "sniff", "-i", "lo", "--db", str(tmp_path / "c.db"),
                        "--duration", "1.5"], capture_output=True, text=True, timeout=30,
                       env=env, cwd=tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("sipprobe: listening on lo (Ethernet)")
