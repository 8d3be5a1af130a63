"""The `sipprobe` command: help, output formats, errors that teach, live capture on loopback."""
from __future__ import annotations

import datetime
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from shared_pcaps import shared

runner = CliRunner()
LAB_BASIC = Path(__file__).resolve().parents[1] / "pcaps" / "lab-basic-call" / "capture.pcap"
COMMANDS = ["stats", "filter", "replay", "sniff", "mos"]


SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or shutil.which("sipprobe")


def sipprobe(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([SIPPROBE, *args], capture_output=True, text=True, **kw)


def _every_command() -> list[list[str]]:
    """Every command and subcommand of the CLI as its words (`report pairs`), from click's tree,
    so that a command added later is checked too."""
    import cli_reports  # noqa: F401  (registers the report group's commands)
    import cli_tools  # noqa: F401
    import typer.main
    from cli_config import leaves

    return sorted(list(path) for path, _ in leaves(typer.main.get_command(app)))


def test_the_command_list_is_complete():
    names = {" ".join(c) for c in _every_command()}
    assert set(COMMANDS) | {"crosscheck", "diff", "extract", "report pairs", "report runs",
                            "report summary", "report calls", "report chart"} <= names


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: sipprobe" in result.output or "Example: tcpdump" in result.output


def test_stats_json_is_one_object_with_tshark_style_counts():
    result = runner.invoke(app, ["stats", shared("junkie_sip-cancel-487-alt-port.pcap"),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["sip"]["requests"] == {"INVITE": 1, "CANCEL": 1}
    assert data["sip"]["responses"] == {"100": 1, "180": 1, "200": 1, "487": 1}
    assert data["sip"]["transport"] == {"udp": 6}


def test_stats_table_shows_methods_codes_and_counters():
    result = runner.invoke(app, ["stats", shared("sngrep_aaa-sip-rtp-cancel-auth.pcap")])
    assert result.exit_code == 0, result.output
    for text in ("REGISTER", "CANCEL", "407", "retransmissions: 14", "sip.keepalive", "SR"):
        assert text in result.output


def test_missing_file_is_a_clear_error_with_exit_code_2():
    result = sipprobe("stats", "/nonexistent/capture.pcap")
    assert result.returncode == 2
    assert "sipprobe: /nonexistent/capture.pcap: no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_capture_file(tmp_path):
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n")
    result = sipprobe("stats", str(bogus))
    assert result.returncode == 3  # damaged or no capture: 3, usage errors 2
    assert "not a pcap, pcapng or gzip-compressed capture file" in result.stderr


def test_conflicting_filter_options_explained():
    result = sipprobe("stats", shared("zeek_sip-long-paths-rawip.pcap"), "--bpf", "udp", "--no-bpf")
    assert result.returncode == 2
    assert "--bpf and --no-bpf exclude each other" in result.stderr


def test_bad_bpf_expression_reported():
    result = sipprobe("stats", shared("zeek_sip-long-paths-rawip.pcap"), "--bpf", "udp porty 5")
    assert result.returncode == 2
    assert "sipprobe:" in result.stderr and "Traceback" not in result.stderr


def test_filter_command_prints_an_expression_tcpdump_accepts():
    result = sipprobe("filter", "--sip-port", "5080")
    assert result.returncode == 0
    assert "port 5080" in result.stdout and "port 5060" not in result.stdout
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.fail("tcpdump is needed to check the filter (apt-get install tcpdump)")
    check = subprocess.run([tcpdump, "-d", "-y", "EN10MB", result.stdout.strip()],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_live_capture_on_loopback_counts_messages_and_kernel_stats():
    """Five OPTIONS to an unused loopback port while `stats -i lo` runs for a bounded time."""
    port, source = _free_udp_port(), _free_udp_port()  # another run on this host sends to its own
    proc = subprocess.Popen(
        [SIPPROBE, "stats", "-i", "lo", "--duration", "4",
         "--sip-port", str(port), "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(5):
            msg = (f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{source};branch=z9hG4bK-live-{i}\r\n"
                   f"From: <sip:test@127.0.0.1>;tag=t{i}\r\nTo: <sip:probe@127.0.0.1>\r\n"
                   f"Call-ID: live-{i}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), ("127.0.0.1", port))
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    data = json.loads(out)
    assert data["sip"]["requests"] == {"OPTIONS": 5}
    assert data["capture"]["kernel_received"] >= 5
    assert data["capture"]["kernel_dropped"] == 0
    assert "kernel:" in err


def test_replay_writes_rows_once_and_reports_them(tmp_path):
    """The README's first job: replay a bundled lab capture, then a rerun adds nothing."""
    db = str(tmp_path / "acc.db")
    capture = str(LAB_BASIC)
    first = sipprobe("replay", capture, "--db", db, "--format", "json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["calls"], summary["answered"], summary["acc_inserted"]) == (1, 1, 2)
    assert summary["proxies"] == ["127.0.0.1:5060"]
    again = json.loads(sipprobe("replay", capture, "--db", db, "-f", "json").stdout)
    assert (again["acc_inserted"], again["duplicates"]) == (0, 2)
    rows = json.loads(sipprobe("report", "acc", "--db", db, "--format", "json").stdout)
    assert [(r["method"], r["sip_code"], r["dst_user"]) for r in rows] == [
        ("INVITE", "200", "uas"), ("BYE", "200", "uas")]


def test_replay_table_summary():
    result = runner.invoke(app, ["replay", str(LAB_BASIC), "--db", ":memory:"])
    assert result.exit_code == 0, result.output
    assert "calls: 1  answered: 1" in result.output
    assert "acc rows: 2 (2 new)" in result.output


def test_replay_bad_proxy_explained():
    result = sipprobe("replay", str(LAB_BASIC), "--proxy", "proxy.example.com")
    assert result.returncode == 2
    assert "--proxy wants IP or IP:PORT" in result.stderr


def test_replay_unwritable_database_explained(tmp_path):
    result = sipprobe("replay", str(LAB_BASIC), "--db", str(tmp_path / "missing" / "acc.db"))
    assert result.returncode == 2
    assert "sipprobe:" in result.stderr and "Traceback" not in result.stderr


def _send_call(port_a: int, port_b: int) -> None:
    """A complete call between two user agents on loopback: INVITE, 200, ACK, BYE, 200."""
    def msg(start, cseq, branch, to_tag=";tag=b1"):
        return (f"{start}\r\nVia: SIP/2.0/UDP 127.0.0.1:{port_a};branch=z9hG4bK-{branch}\r\n"
                f"From: <sip:alice@lab.test>;tag=a1\r\nTo: <sip:bob@lab.test>{to_tag}\r\n"
                f"Call-ID: sniff-1@127.0.0.1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n").encode()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", port_a))
        b.bind(("127.0.0.1", port_b))
        to_b, to_a = ("127.0.0.1", port_b), ("127.0.0.1", port_a)
        a.sendto(msg(f"INVITE sip:bob@127.0.0.1:{port_b} SIP/2.0", "1 INVITE", "inv", ""), to_b)
        b.sendto(msg("SIP/2.0 200 OK", "1 INVITE", "inv"), to_a)
        a.sendto(msg(f"ACK sip:bob@127.0.0.1:{port_b} SIP/2.0", "1 ACK", "ack"), to_b)
        time.sleep(0.2)
        a.sendto(msg(f"BYE sip:bob@127.0.0.1:{port_b} SIP/2.0", "2 BYE", "bye"), to_b)
        b.sendto(msg("SIP/2.0 200 OK", "2 BYE", "bye"), to_a)


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_sniff_accounts_a_live_call_on_loopback(tmp_path):
    """...with replay's accounting options: --local-time writes the time column at UTC+5:30."""
    db = str(tmp_path / "live.db")
    proc = subprocess.Popen([SIPPROBE, "sniff", "-i", "lo", "--db", db, "--duration", "4",
                             "--format", "json", "--local-time"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TZ": "Asia/Kolkata"})
    time.sleep(1.5)
    _send_call(_free_udp_port(), _free_udp_port())
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert (summary["calls"], summary["answered"], summary["acc_inserted"]) == (1, 1, 2)
    assert summary["capture"]["kernel_dropped"] == 0 and "kernel:" in err
    rows = json.loads(sipprobe("report", "acc", "--db", db, "-f", "json").stdout)
    assert [(r["method"], r["sip_code"], r["src_user"], r["dst_user"]) for r in rows] == [
        ("INVITE", "200", "alice", "bob"), ("BYE", "200", "alice", "bob")]
    kolkata = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    assert [r["time"] for r in rows] == [
        datetime.datetime.fromtimestamp(int(r["time_epoch"]), kolkata).strftime("%Y-%m-%d %H:%M:%S")
        for r in rows]


def test_replay_and_sniff_take_the_same_accounting_options():
    """A live probe must write what a replay of the same traffic writes."""
    import typer.main
    from cli_accounting import NAMES

    def options(name):
        command = typer.main.get_command(app).commands[name]
        return {p.name for p in command.params} & NAMES
    assert options("replay") == options("sniff") == NAMES


def test_replay_says_which_engine_ran(tmp_path):
    """The summary names the engine, so a slow pure-Python install is visible."""
    import pipeline
    result = runner.invoke(app, ["replay", str(LAB_BASIC), "--db", str(tmp_path / "a.db")])
    assert result.exit_code == 0, result.output
    assert f"engine: {pipeline.engine()}" in result.output
    if os.environ.get("SIPPROBE_PURE") != "1":
        from probe.native import COMPILED, is_compiled
        try:
            import probe._fastdecode, sip_dissect._sipscan  # noqa: F401
        except ImportError:
            return
        if all(is_compiled(importlib.import_module(name)) for name in COMPILED):
            assert "engine: native (C decode and SIP scan; signalling compiled by Cython)" \
                in result.output
    else:
        assert "engine: pure Python (SIPPROBE_PURE=1)" in result.output
