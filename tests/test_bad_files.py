"""Damaged capture files through the CLI, as an operator meets them: real captures (public
ones and the lab's) cut, overwritten or extended in tmp_path. Each gives one clear line on
stderr, no traceback, the good part processed, and exit 3 (damaged; usage errors are 2)."""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from shared_pcaps import shared

ROOT = Path(__file__).resolve().parents[1]
LAB_CALL = ROOT / "pcaps" / "lab-basic-call" / "capture.pcap"
NG = "ndpi_sip-register-401-keepalive.pcapng"


def sipprobe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def stats(path: Path) -> tuple[int, dict | None, str]:
    r = sipprobe("stats", str(path), "--format", "json")
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None), r.stderr


def record_ends(data: bytes) -> list[int]:
    """Offsets where each record of a little-endian microsecond pcap ends."""
    ends, pos = [], 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        ends.append(pos)
    return ends


def test_pcapng_cut_inside_its_first_blocks_is_damaged_not_a_crash(tmp_path):
    """The crash of issue 14: cut inside the interface block, the link-type pre-scan raised
    struct.error ("unpack requires a buffer of 2 bytes") out of stats and replay."""
    data = Path(shared(NG)).read_bytes()
    shb_len = struct.unpack_from("<I", data, 4)[0]
    for cut in (shb_len + 9, shb_len + 4, 30, 10):
        path = tmp_path / f"cut{cut}.pcapng"
        path.write_bytes(data[:cut])
        code, out, err = stats(path)
        assert code == 3, (cut, err)
        assert err.startswith(f"sipprobe: damaged capture: {path}"), err
        assert len(err.strip().splitlines()) == 1
        r = sipprobe("replay", str(path), "--db", str(tmp_path / f"{cut}.db"))
        assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr


def test_pcap_truncated_mid_record_processes_the_records_before_the_cut(tmp_path):
    data = LAB_CALL.read_bytes()
    ends = record_ends(data)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:ends[9] + 30])  # 10 whole records, then 30 bytes of the 11th
    code, out, err = stats(path)
    assert code == 3
    assert out["frames_matched"] == 10
    assert out["damaged"] == [err.strip().removeprefix("sipprobe: damaged capture: ")]
    assert "10 frames before it read" in err
    whole = stats(tmp_path / "whole.pcap" if (tmp_path / "whole.pcap").write_bytes(
        data[:ends[9]]) else None)
    assert whole[0] == 0 and whole[1]["sip"] == out["sip"]


def test_replay_of_a_cut_capture_writes_the_rows_before_the_cut_and_says_so(tmp_path):
    """The lab call cut inside its last record (the 200 OK to BYE): the INVITE's acc row is
    written, the summary lists the damage, exit 3; the whole file later completes the rest."""
    data = LAB_CALL.read_bytes()
    path = tmp_path / "growing.pcap"
    path.write_bytes(data[:-20])  # as a file still being written leaves it
    db = tmp_path / "acc.db"
    r = sipprobe("replay", str(path), "--db", str(db), "--format", "json")
    assert r.returncode == 3, r.stderr
    summary = json.loads(r.stdout)
    assert summary["damaged"] and summary["acc_inserted"] == 2  # INVITE and the BYE request
    path.write_bytes(data)  # the writer finished
    r = sipprobe("replay", str(path), "--db", str(db), "--format", "json")
    assert r.returncode == 0
    assert "damaged" not in json.loads(r.stdout)


@pytest.mark.parametrize("content", [
    b"GIF89a" + bytes(200),  # wrong magic
    bytes(random.Random(14).randrange(256) for _ in range(4096)),  # garbage
    b"",  # empty
], ids=["wrong-magic", "garbage", "empty"])
def test_not_a_capture_exits_3_with_one_line(tmp_path, content):
    path = tmp_path / "x.pcap"
    path.write_bytes(content)
    code, out, err = stats(path)
    assert code == 3 and out is None
    assert err.startswith("sipprobe: damaged capture:") and len(err.strip().splitlines()) == 1


def test_a_damaged_file_among_good_ones(tmp_path):
    """A directory of captures with one garbage file: the others are read, exit 3."""
    (tmp_path / "a.pcap").write_bytes(LAB_CALL.read_bytes())
    (tmp_path / "b.pcap").write_bytes(b"\x00" * 100)
    code, out, err = stats(tmp_path)
    assert code == 3
    assert out["sip"] == stats(LAB_CALL)[1]["sip"]
    assert "b.pcap: not a pcap" in err


def test_pcapng_with_unknown_blocks_is_read_whole(tmp_path):
    """Blocks of a type no reader knows (pcapng section 3.1: skip them) between the real ones:
    every packet is still read, and that is no damage."""
    data = Path(shared(NG)).read_bytes()
    unknown = struct.pack("<II", 0x0BADB10C, 16) + b"junk" + struct.pack("<I", 16)
    shb_len = struct.unpack_from("<I", data, 4)[0]
    idb_len = struct.unpack_from("<I", data, shb_len + 4)[0]
    at = shb_len + idb_len
    path = tmp_path / "unknown.pcapng"
    path.write_bytes(data[:at] + unknown + data[at:] + unknown)
    code, out, _ = stats(path)
    base = stats(Path(shared(NG)))[1]
    assert code == 0
    assert out["sip"] == base["sip"] and out["frames_matched"] == base["frames_matched"]


def test_zero_length_and_256_kib_packets(tmp_path):
    """A record of 0 bytes and one of 256 KiB (libpcap's largest snapshot length) between
    the lab call's records: both are counted and skipped, every SIP message is read."""
    data = LAB_CALL.read_bytes()
    ends = record_ends(data)
    head = bytearray(data[:24])
    struct.pack_into("<I", head, 16, 262144)  # snaplen
    ts = struct.unpack_from("<II", data, 24)
    big = b"\x00" * 262144
    extra = (struct.pack("<IIII", *ts, 0, 0) +
             struct.pack("<IIII", *ts, len(big), len(big)) + big)
    path = tmp_path / "odd.pcap"
    path.write_bytes(bytes(head) + data[24:ends[2]] + extra + data[ends[2]:])
    code, out, err = stats(path)
    assert code == 0, err
    assert out["sip"] == stats(LAB_CALL)[1]["sip"]
