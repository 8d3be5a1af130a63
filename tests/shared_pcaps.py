"""Where the public captures live: ../shared/pcaps beside the repository (see its MANIFEST.md)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_PCAPS = Path(os.environ.get("SIPPROBE_SHARED_PCAPS",
                                   Path(__file__).resolve().parents[2] / "shared" / "pcaps"))


def shared(name: str) -> str:
    path = SHARED_PCAPS / name
    if not path.exists():
        pytest.fail(f"public capture {path} missing: tests expect ../shared/pcaps beside the repo "
                    "(or SIPPROBE_SHARED_PCAPS)")
    return str(path)


def all_shared() -> list[str]:
    return sorted(p.name for p in SHARED_PCAPS.glob("*.pcap*"))


def require_tshark() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        pytest.fail("tshark is required for the oracle tests (apt-get install tshark)")
    return exe
