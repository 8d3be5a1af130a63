"""The Cython-compiled modules (probe/native.py COMPILED) against the same .py interpreted:
every row, CDR and summary counter of every bundled and public capture, the interpreted run in
a subprocess with SIPPROBE_PURE=1. And what was built is what runs: a module compiled beside
its .py must be imported compiled, unless SIPPROBE_PURE=1, which must give the .py."""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline
from probe import native
from shared_pcaps import SHARED_PCAPS

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = sorted(ROOT.glob("pcaps/*/capture.pcap*")) + sorted(
    p for p in SHARED_PCAPS.glob("*") if p.suffix in (".pcap", ".pcapng"))

REPLAY = r"""
import json, sys
import pipeline
from probe.native import COMPILED
s = pipeline.replay_files([sys.argv[1]], sys.argv[2])
print(json.dumps({"files": [sys.modules[m].__file__ for m in COMPILED], "summary": s}))
"""


def built(name: str) -> bool:
    """Whether an extension module for `name` sits beside its .py."""
    spec = importlib.util.find_spec(name.rpartition(".")[0] or name)  # package, or itself
    base = Path(spec.origin).parent
    leaf = name.rpartition(".")[2]
    return any((base / (leaf + s)).exists() for s in importlib.machinery.EXTENSION_SUFFIXES)


def rows(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        out = {}
        for table in ("acc", "missed_calls", "acc_cdrs"):
            cur = con.execute(f'SELECT * FROM "{table}" ORDER BY id')
            names = [d[0] for d in cur.description]
            out[table] = [dict(zip(names, row)) for row in cur.fetchall()]
        return out
    finally:
        con.close()


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("engine", "db")}


@pytest.mark.skipif(native.PURE, reason="compares the compiled run with SIPPROBE_PURE=1")
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.parent.name if
                         p.name.startswith("capture.") else p.name)
def test_compiled_equals_interpreted(capture, tmp_path):
    compiled = pipeline.replay_files([str(capture)], str(tmp_path / "c.db"))
    env = {**os.environ, "SIPPROBE_PURE": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", REPLAY, str(capture), str(tmp_path / "p.db")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pure = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(f.endswith(".py") for f in pure["files"]), pure["files"]
    assert comparable(compiled) == comparable(pure["summary"])
    assert rows(tmp_path / "c.db") == rows(tmp_path / "p.db")


@pytest.mark.parametrize("name", native.COMPILED + native.C_EXTENSIONS)
def test_what_was_built_is_in_use(name):
    module = importlib.import_module(name) if name in native.COMPILED else None
    if name in native.C_EXTENSIONS:
        loaded = native.load(name)
        if native.PURE:
            assert loaded is None
        elif built(name):
            assert loaded is not None and native.is_compiled(loaded)
        return
    if native.PURE:
        assert module.__file__.endswith(".py"), module.__file__
        assert not native.is_compiled(module)
    elif built(name):
        assert native.is_compiled(module), f"{name} is built but {module.__file__} runs"


def test_pure_loads_every_compiled_module_from_source(tmp_path):
    """`import pipeline` first (it imports probe, which installs the hook, as its first line):
    still the .py, everywhere."""
    code = ("import pipeline, importlib; from probe.native import COMPILED; "
            "print([importlib.import_module(m).__file__ for m in COMPILED]); "
            "print(pipeline.engine())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "SIPPROBE_PURE": "1",
                                            "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    files, engine = res.stdout.strip().splitlines()
    assert all(f.endswith(".py'") or f.endswith('.py"') for f in files.strip("[]").split(", "))
    assert engine == "pure Python (SIPPROBE_PURE=1)"


def test_the_console_script_runs_the_compiled_modules(tmp_path):
    """`sipprobe` starts with `from cli import main`, whose commands import pipeline before
    anything of probe, as an installed package (not this checkout on sys.path): the compiled
    modules run all the same. (An editable install's finder prefers a top-level .py; it once made pipeline run
    interpreted under `sipprobe replay` alone.)"""
    if native.PURE or not all(built(name) for name in native.COMPILED):
        pytest.skip("the compiled modules are not built, or SIPPROBE_PURE=1")
    code = ("import importlib; from cli import main; from pipeline import ProbeOptions; "
            "from probe.native import COMPILED; "
            "print([importlib.import_module(m).__spec__.origin for m in COMPILED])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    if "No module named 'cli'" in res.stderr:
        pytest.skip("sipprobe is not installed in this interpreter")
    assert res.returncode == 0, res.stderr
    origins = res.stdout.strip().strip("[]").split(", ")
    assert len(origins) == len(native.COMPILED)
    assert all(o.strip("'\"").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
               for o in origins), origins


def test_build_products_of_compiled_modules_are_ignored_by_git():
    """Cython's .c and pxdgen's .pxd of every compiled module are build products, never
    committed (a hand-written C file such as _sipscan.c or _rtcpscan.c is source and is not
    ignored)."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    products = [name.replace(".", "/") + ext for name in native.COMPILED for ext in (".c", ".pxd")]
    res = subprocess.run(["git", "check-ignore", *products, "sip_dissect/_sipscan.c",
                          "rtcp_mos/_rtcpscan.c"],
                         cwd=root, capture_output=True, text=True)
    assert sorted(res.stdout.split()) == sorted(products)


def test_pxdgen_declares_ccall_functions_and_cimports_them_across_modules(tmp_path):
    """A top-level @cython.ccall function gets its cpdef declaration in its module's .pxd,
    and a sibling compiled module importing it cimports it (a C call, not a Python one);
    plain functions and names imported under another name are left alone."""
    spec = importlib.util.spec_from_file_location("_pxdgen_under_test",
                                                  ROOT / "native" / "pxdgen.py")
    pxdgen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pxdgen)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "import cython\n\n\n"
        "@cython.ccall\n"
        "def f(x: cython.double, n: cython.longlong, name: str = 'g107') -> tuple:\n"
        "    return x, n, name\n\n\n"
        "@cython.ccall\n"
        "def g(value):\n"
        "    return value\n\n\n"
        "def plain(x):\n"
        "    return x\n")
    (pkg / "b.py").write_text("from .a import f, plain\nfrom .a import g as h\n")
    pxdgen.generate(tmp_path, ["pkg.a", "pkg.b"])
    a = (pkg / "a.pxd").read_text().splitlines()[1:]
    assert a == ["cpdef tuple f(double x, long long n, str name=*)", "cpdef g(value)"]
    b = (pkg / "b.pxd").read_text().splitlines()[1:]
    assert b == ["from pkg.a cimport f"]
