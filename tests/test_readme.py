"""The README stays true: its CLI reference is the current --help, its first command works.

`python tests/test_readme.py --write` regenerates the reference after a CLI change.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
README = ROOT / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def cli_reference() -> str:
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    env = {"COLUMNS": "100", "TERM": "dumb"}
    parts = []
    commands = [[]] + sorted([c.name or c.callback.__name__] for c in app.registered_commands)
    for group in app.registered_groups:
        commands.append([group.name])
        commands += sorted([group.name, c.name or c.callback.__name__]
                           for c in group.typer_instance.registered_commands)
    for words in commands:
        out = runner.invoke(app, words + ["--help"], env=env, prog_name="sipprobe").output
        title = " ".join(["sipprobe"] + words)
        parts.append(f"### `{title}`\n\n```text\n{out.rstrip()}\n```")
    return "\n\n".join(parts)


def _block(text: str) -> str:
    m = re.search(re.escape(START) + r"\n(.*)\n" + re.escape(END), text, re.S)
    assert m, "README.md lacks the cli-reference markers"
    return m.group(1)


def test_cli_reference_matches_help():
    assert _block(README.read_text()) == cli_reference(), \
        "README CLI reference is stale: run python tests/test_readme.py --write"


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = [l for l in first_block.splitlines() if l and not l.startswith("#")]
    assert "sipprobe replay pcaps/lab-basic-call/capture.pcap --db sipprobe.db" in commands[0]
    assert commands[0].endswith("sipprobe report acc --db sipprobe.db")
    assert (ROOT / "pcaps/lab-basic-call/capture.pcap").exists()
    assert commands[1] == "bash tests/run.sh"
    assert "bash tests/run.sh" in (ROOT / ".ci/run").read_text()


if __name__ == "__main__" and "--write" in sys.argv:
    text = README.read_text()
    new = f"{START}\n{cli_reference()}\n{END}"
    if START in text:
        text = re.sub(re.escape(START) + r".*" + re.escape(END), lambda _: new, text, flags=re.S)
    else:
        text = text.replace("CLI-PLACEHOLDER", new)
    README.write_text(text)
