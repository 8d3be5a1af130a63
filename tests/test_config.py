"""`sipprobe --config FILE` (cli_config.py): options from TOML, checked by real replays of lab
captures against the same options given as flags."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from lab_oracle import LAB_PCAPS, kamailio_rows

import cli
import typer.main
from cli_config import ConfigError, leaves, default_map, option_keys

SIPPROBE = shutil.which("sipprobe", path=os.path.dirname(sys.executable)) or \
    shutil.which("sipprobe")
CALLEE_BYE = str(LAB_PCAPS / "lab-callee-bye" / "capture.pcap")


def sipprobe(*args, env=None):
    return subprocess.run([SIPPROBE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def acc_rows(db) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT method, from_tag, to_tag, callid, sip_code, src_user, "
                           "dst_user, time FROM acc ORDER BY id").fetchall()
    finally:
        con.close()


def replay(tmp_path, name, *args, config=None):
    db = tmp_path / f"{name}.db"
    root = ["--config", str(config)] if config else []
    r = sipprobe(*root, "replay", *args, "--db", str(db))
    assert r.returncode == 0, r.stderr
    return acc_rows(db)


def test_config_gives_the_same_rows_as_the_flags(tmp_path):
    cfg = tmp_path / "sipprobe.toml"
    cfg.write_text('proxy = "127.0.0.1:5060"\n[replay]\ndetect-direction = true\n')
    flags = replay(tmp_path, "flags", "--proxy", "127.0.0.1:5060", "--detect-direction",
                   CALLEE_BYE)
    from_file = replay(tmp_path, "file", CALLEE_BYE, config=cfg)
    plain = replay(tmp_path, "plain", "--proxy", "127.0.0.1:5060", CALLEE_BYE)
    assert from_file == flags
    assert flags != plain  # detect_direction swaps the callee's BYE: the option took effect
    bye = [r for r in from_file if r[0] == "BYE"][0]
    invite = [r for r in from_file if r[0] == "INVITE"][0]
    assert bye[1:3] == invite[1:3]


def test_command_line_wins_over_the_file(tmp_path):
    cfg = tmp_path / "sipprobe.toml"
    cfg.write_text('[replay]\nproxy = ["127.0.0.1:5060"]\ndetect-direction = true\n')
    plain = replay(tmp_path, "plain", "--proxy", "127.0.0.1:5060", CALLEE_BYE)
    db = tmp_path / "cli.db"
    r = sipprobe("--config", str(cfg), "replay", CALLEE_BYE, "--no-detect-direction",
                 "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert acc_rows(db) == plain


def test_environment_variable_and_a_command_table_over_the_top_level(tmp_path):
    """SIPPROBE_CONFIG names the file; [replay]'s db wins over the top-level db, and the lab's
    missed-early capture gets Kamailio's own row from missed-local-replies in the file."""
    scenario = LAB_PCAPS / "lab-missed-early-notfound-proxy-404"
    cfg = tmp_path / "sipprobe.toml"
    cfg.write_text(f'db = "{tmp_path / "top.db"}"\nproxy = ["127.0.0.1:5060"]\n'
                   f'missed-local-replies = true\n[replay]\ndb = "{tmp_path / "replay.db"}"\n'
                   f'[report]\ndb = "{tmp_path / "replay.db"}"\nformat = "csv"\n')
    r = sipprobe("replay", str(scenario / "capture.pcap"), env={"SIPPROBE_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "top.db").exists()
    con = sqlite3.connect(tmp_path / "replay.db")
    got = con.execute("SELECT method, from_tag, to_tag, callid, sip_code, sip_reason "
                      "FROM missed_calls").fetchall()
    con.close()
    [(want, _)] = kamailio_rows(scenario, "missed_calls")
    assert got == [want[:6]]
    # [report] applies to every report subcommand: its db and format
    r = sipprobe("report", "missed", env={"SIPPROBE_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.startswith("id,method,") and f",{want[2]}," in row and ",404," in row


@pytest.mark.parametrize("text, message", [
    ("proxyy = 1\n", "unknown key 'proxyy' at the top level: no command has an option --proxyy"),
    ("[replay]\nproxyy = 1\n", "unknown key 'proxyy' in [replay]: `sipprobe replay` has no "
                               "option --proxyy"),
    ("[report.acc]\ninterface = 'eth0'\n", "unknown key 'interface' in [report.acc]"),
    ("replay = 3\n", "[replay] must be a table of options"),
    ("[replay\n", "is not valid TOML"),
])
def test_bad_file_is_one_line_and_exit_2(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = sipprobe("--config", str(cfg), "replay", CALLEE_BYE, "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and str(cfg) in r.stderr and message in r.stderr, r.stderr
    assert not (tmp_path / "x.db").exists()


def test_missing_file_is_one_line_and_exit_2(tmp_path):
    r = sipprobe("--config", str(tmp_path / "none.toml"), "report", "acc")
    assert r.returncode == 2
    assert r.stderr == f"sipprobe: cannot read the config file {tmp_path / 'none.toml'}: " \
                       "No such file or directory\n"


def test_every_long_option_of_every_command_is_a_key(tmp_path):
    """Generic by construction: whatever option a command has (now or added later), its long
    name is accepted in the command's table and at the top level."""
    root = typer.main.get_command(cli.app)
    commands = list(leaves(root))
    assert {("replay",), ("sniff",), ("report", "acc")} <= {names for names, _ in commands}
    for names, command in commands:
        for key, param in option_keys(command).items():
            if key in ("help", "version", "config"):
                continue
            cfg = tmp_path / "k.toml"
            # click checks the value's type when the command runs, not here
            for text in (f"[{'.'.join(names)}]\n{key} = 1\n", f"{key} = 1\n"):
                cfg.write_text(text)
                try:
                    node = default_map(str(cfg), root)
                except ConfigError as exc:
                    pytest.fail(f"{names} --{key}: {exc}")
                for name in names:
                    node = node[name]
                assert param.name in node
