"""`--syslog`: the ACC lines Kamailio's acc module logs (log_flag, log_missed_flag), checked
against the lines the lab's real Kamailio 5.6 logged for each capture (pcaps/lab-*/kamailio.log,
lab/kamailio.cfg: stock log_extra), received on a unix datagram socket the test binds as a
syslog daemon would."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab_oracle import LAB_PCAPS, PROXY, scenario_acc_options
from pipeline import ProbeOptions, replay_files
from store.acc_log import AccLog, SyslogOptions

SCENARIOS = sorted(p.parent for p in LAB_PCAPS.glob("lab-*/capture.pcap"))
SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable))
# glibc syslog(3) framing (RFC 3164) as a daemon reads it from /dev/log
FRAME = re.compile(r"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) sipprobe\[(\d+)\]: (.*)", re.S)


def kamailio_lines(scenario) -> list[str]:
    """The `ACC: ...` part of each line Kamailio logged, in its order (the lines carry
    Kamailio's stderr prefix before it: ` 1(12186) NOTICE: acc [acc.c:287]: ...`)."""
    text = (scenario / "kamailio.log").read_text(errors="replace")
    return [line[line.index("ACC: "):] for line in text.splitlines() if "ACC: " in line]


def attributes(line: str) -> tuple[str, dict]:
    """('transaction answered' or 'call missed', {key: value}); values never hold ';' here."""
    kind, _, rest = line.removeprefix("ACC: ").partition(": ")
    return kind, dict(item.split("=", 1) for item in rest.split(";"))


class SyslogDaemon:
    """A unix datagram socket bound in tmp_path and read as it fills, as a syslog daemon reads
    /dev/log (the kernel queues only net.unix.max_dgram_qlen datagrams: 10 here)."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except socket.timeout:
                continue
            except OSError:
                return

    def received(self) -> list[str]:
        """What came so far, once the queue is drained."""
        time.sleep(0.2)
        return list(self.messages)

    def close(self):
        self._stop.set()
        self._reader.join()
        self.sock.close()


@pytest.fixture
def daemon(tmp_path):
    d = SyslogDaemon(tmp_path / "log.sock")
    yield d
    d.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_lines_equal_kamailios_on_every_lab_capture(scenario, daemon, tmp_path):
    summary = replay_files([str(scenario / "capture.pcap")], str(tmp_path / "acc.db"),
                           ProbeOptions(strict=True), proxies=[PROXY],
                           acc_options=scenario_acc_options(scenario),  # its cfg's variant
                           syslog=SyslogOptions(socket=daemon.path))
    frames = [FRAME.fullmatch(m) for m in daemon.received()]
    assert all(frames), frames
    want = kamailio_lines(scenario)
    got = [f.group(4) for f in frames]
    # key=value pairs equal, timestamps included, in the proxy's order ...
    assert [attributes(g) for g in got] == [attributes(w) for w in want]
    # ... and the very text, attribute order and all
    assert got == want
    assert {int(f.group(1)) for f in frames} <= {3 * 8 + 5}  # LOG_DAEMON | LOG_NOTICE
    assert {int(f.group(3)) for f in frames} <= {os.getpid()}
    assert (summary["syslog_lines"], summary["syslog_failed"]) == (len(want), 0)
    assert summary["syslog_lines"] == summary["acc_rows"] + summary["missed_rows"]


def test_every_lab_capture_has_lines_to_compare():
    """The oracle is not empty: 24 of the 26 captures have ACC lines (the proxy's own
    stateless 404 and 403 are not accounted), 78 in all, both kinds."""
    lines = [line for s in SCENARIOS for line in kamailio_lines(s)]
    assert len(SCENARIOS) == 26 and len(lines) == 78
    assert sum(1 for s in SCENARIOS if kamailio_lines(s)) == 24
    assert {attributes(line)[0] for line in lines} == {"transaction answered", "call missed"}


def test_cli_facility_level_and_file(daemon, tmp_path):
    """Through the CLI: the facility and level set the priority; --syslog-file writes the bare
    lines; the callee's BYE keeps its own tags (detect_direction off, as in the lab)."""
    scenario = LAB_PCAPS / "lab-callee-bye"
    cap = str(scenario / "capture.pcap")
    run = subprocess.run([SIPPROBE, "replay", cap, "--db", str(tmp_path / "a.db"), "--proxy",
                          "127.0.0.1:5060", "--syslog-socket", daemon.path, "--syslog-facility",
                          "LOG_LOCAL3", "--syslog-level", "2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    frames = [FRAME.fullmatch(m) for m in daemon.received()]
    assert [int(f.group(1)) for f in frames] == [19 * 8 + 6] * 2  # local3, Kamailio's 2 = info
    assert "ACC log lines: 2" in run.stdout
    log = tmp_path / "acc.log"
    run = subprocess.run([SIPPROBE, "replay", cap, "--db", str(tmp_path / "b.db"), "--proxy",
                          "127.0.0.1:5060", "--syslog-file", str(log)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert log.read_text().splitlines() == kamailio_lines(scenario)
    bye = attributes(log.read_text().splitlines()[1])[1]
    assert (bye["from_tag"], bye["to_tag"], bye["src_user"]) == \
        ("12017SIPpTag011", "12018SIPpTag001", "byer")


@pytest.mark.parametrize("args, message", [
    (["--syslog-socket", "/nonexistent/log"], "cannot reach syslog at /nonexistent/log"),
    (["--syslog", "--syslog-facility", "local9"], "unknown syslog facility 'local9'"),
    (["--syslog", "--syslog-level", "loud"], "unknown syslog level 'loud'"),
    (["--syslog-socket", "/dev/log", "--syslog-file", "x.log"], "not both"),
])
def test_unusable_syslog_options_are_explained(args, message, tmp_path):
    db = tmp_path / "a.db"
    run = subprocess.run([SIPPROBE, "replay", str(LAB_PCAPS / "lab-basic-call" / "capture.pcap"),
                          "--db", str(db), *args], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not db.exists()  # refused before anything was written


def test_a_daemon_gone_is_counted_and_the_replay_goes_on(daemon, tmp_path):
    """The daemon stops after the log opened: each line is counted as not sent, the rows are
    stored all the same, and the log reconnects when the daemon is back (here at once; by
    default after RETRY_AFTER seconds)."""
    from lab_oracle import replay

    records, _ = replay(LAB_PCAPS / "lab-basic-call")
    log = AccLog(SyslogOptions(socket=daemon.path), retry_after=0.0)
    daemon.close()
    os.unlink(daemon.path)
    log(records[0])
    assert (log.lines, log.failed) == (0, 1)
    back = SyslogDaemon(daemon.path)
    try:
        log(records[1])
        assert (log.lines, log.failed) == (1, 1)
        assert FRAME.fullmatch(back.received()[0]).group(4).startswith(
            "ACC: transaction answered: timestamp=1795431447;method=BYE;")
    finally:
        back.close()
        log.close()


def test_a_full_disk_is_counted_and_the_rows_stored(tmp_path):
    """/dev/full refuses every write (ENOSPC): the lines are counted as not sent, the replay
    ends normally and the database has its rows."""
    db = tmp_path / "a.db"
    run = subprocess.run([SIPPROBE, "replay", str(LAB_PCAPS / "lab-basic-call" / "capture.pcap"),
                          "--db", str(db), "--syslog-file", "/dev/full", "-f", "json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["syslog_lines"], summary["syslog_failed"]) == (0, 2)
    assert summary["acc_inserted"] == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_sniff_logs_the_lines_too(daemon, tmp_path):
    """sniff takes the same option (cli_accounting.py): an answered call on lo is logged."""
    callid = f"acc-log-{os.getpid()}-{time.time_ns()}@127.0.0.1"
    proc = subprocess.Popen([SIPPROBE, "sniff", "-i", "lo", "--db", str(tmp_path / "live.db"),
                             "--duration", "4", "--syslog-socket", daemon.path, "--format",
                             "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with a, b:
            a.bind(("127.0.0.1", 35380))
            b.bind(("127.0.0.1", 35390))

            def msg(start, cseq, to_tag):
                return (f"{start}\r\nVia: SIP/2.0/UDP 127.0.0.1:35380;branch=z9hG4bK-{cseq[0]}x"
                        f"\r\nFrom: <sip:erin@lab.test>;tag=e1\r\nTo: <sip:fred@lab.test>"
                        f"{to_tag}\r\nCall-ID: {callid}\r\nCSeq: {cseq}\r\n"
                        "Content-Length: 0\r\n\r\n").encode()
            a.sendto(msg("INVITE sip:fred@127.0.0.1:35390 SIP/2.0", "1 INVITE", ""),
                     ("127.0.0.1", 35390))
            b.sendto(msg("SIP/2.0 200 OK", "1 INVITE", ";tag=f2"), ("127.0.0.1", 35380))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    ours = [FRAME.fullmatch(m).group(4) for m in daemon.received() if callid in m]
    assert len(ours) == 1
    kind, attrs = attributes(ours[0])
    assert kind == "transaction answered"
    assert (attrs["method"], attrs["from_tag"], attrs["to_tag"], attrs["code"],
            attrs["src_user"], attrs["dst_user"]) == ("INVITE", "e1", "f2", "200", "erin", "fred")
    assert abs(int(attrs["timestamp"]) - time.time()) < 30
