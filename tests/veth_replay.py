"""A capture replayed live: a veth pair in a network namespace of its own, tcpreplay writing
the capture into one end, `sipprobe sniff` (promiscuous) reading the other. Used by
tests/test_live_load.py and bench/live_rate.py; needs root, `ip` and tcpreplay."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or "sipprobe"
# names are local to the namespace: no clash with other veths on the host
SEND, SNIFF = "spload0", "spload1"


@contextmanager
def veth_namespace():
    """Yields the command prefix that runs a program inside the namespace."""
    name = f"sipprobe-load-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    ns = ["ip", "netns", "exec", name]
    try:
        # no IPv6: its neighbour discovery on link-up would add frames the filter lets through
        for key in ("all", "default"):
            subprocess.run([*ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"],
                           check=True)
        subprocess.run([*ns, "ip", "link", "add", SEND, "type", "veth", "peer", "name", SNIFF],
                       check=True)
        for dev in ("lo", SEND, SNIFF):  # a veth carries frames only when both ends are up
            subprocess.run([*ns, "ip", "link", "set", dev, "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def replay_live(ns: list[str], capture: Path, db: Path, rate: list[str],
                sniff_args: tuple = (), settle: float = 1.5) -> tuple[dict, dict]:
    """Sniff SNIFF into `db` while tcpreplay sends `capture` into SEND at `rate` (tcpreplay's
    options: ["--topspeed"], ["--pps", "5000"], ["--mbps", "100"]). Returns sniff's JSON
    summary and tcpreplay's figures (packets sent, seconds, packets/s)."""
    err_path = db.with_suffix(".sniff.err")
    with open(err_path, "w") as err:
        proc = subprocess.Popen([*ns, SIPPROBE, "sniff", "-i", SNIFF, "--db", str(db),
                                 "-f", "json", *sniff_args], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        deadline = time.monotonic() + 15
        while b"listening on" not in err_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sniff did not start: {err_path.read_text()}")
            time.sleep(0.05)
        time.sleep(0.3)  # the filter is set and the ring mapped right after that line
        sent = subprocess.run([*ns, "tcpreplay", "-i", SEND, *rate, str(capture)],
                              capture_output=True, text=True, timeout=600)
        if sent.returncode != 0:
            raise RuntimeError(f"tcpreplay failed: {sent.stderr}")
        time.sleep(settle)  # sniff drains its ring and commits (at least every second)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"sniff exited {proc.returncode}: {err_path.read_text()}")
    return json.loads(out), tcpreplay_figures(sent.stdout)


def tcpreplay_figures(text: str) -> dict:
    """From tcpreplay's closing lines: 'Actual: 17500 packets (9135627 bytes) sent in 0.51
    seconds' and 'Rated: ... Bps, ... Mbps, 34313.72 pps'."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if line.strip().startswith("Actual:"):
            out["packets"] = int(words[1])
            out["seconds"] = float(words[words.index("seconds") - 1])
        elif line.strip().startswith("Rated:"):
            out["mbps"] = float(words[words.index("Mbps,") - 1])
            out["pps"] = float(words[words.index("pps") - 1])
    return out
