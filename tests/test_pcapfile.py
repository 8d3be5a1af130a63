"""probe._pcapfile (classic pcap files mapped, libpcap's BPF program run in C) against libpcap
itself (pcapy-ng): the same frames, bytes and timestamps, on every capture, for the built-in
filter and for filters that use every instruction the compiler emits; and, where it is unsure,
the same outcome as libpcap alone (what libpcap reads, and the same damage report)."""
from __future__ import annotations

import struct
import subprocess
import sys
import threading
from pathlib import Path

import pcapy
import pytest

from probe import sources
from probe.bpf import default_filter
from probe.native import load
from probe.sources import CaptureStats, FilterSet, SNAPLEN, open_file
from shared_pcaps import SHARED_PCAPS

native = load("probe._pcapfile")
pytestmark = pytest.mark.skipif(native is None, reason="probe._pcapfile not built (or PURE)")

REPO = Path(__file__).resolve().parents[1]
CLASSIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")


def _classic(paths) -> list[Path]:
    return [p for p in paths if p.read_bytes()[:4] in CLASSIC]


def _taken(path: Path) -> bool:
    try:
        native.Reader(str(path))
    except ValueError:
        return False
    return True


CLASSICS = _classic(sorted(REPO.glob("pcaps/*/*.pcap")) + sorted(SHARED_PCAPS.glob("*.pcap*")))
CAPTURES = [p for p in CLASSICS if native is not None and _taken(p)]
# filters whose programs use every instruction class libpcap's compiler emits: loads of each
# size and mode, the packet length, scratch memory, every ALU operation with K and X, negation,
# every jump, TAX/TXA; division and modulus by an X that is 0 in most packets (rejects)
FILTERS = (
    None, "udp port 5060", "len > 400", "ip[2:2] - 20 > 100", "ip[2:2] * 2 > 400",
    "ip[2:2] / 4 > 100", "ip[2:2] % 3 = 1", "ip[2:2] ^ 0xff != 0", "ip[2:2] << 1 > 800",
    "ip[2:2] >> 1 > 200", "ip[2:2] | 1 = 1", "-ip[2:2] < 0xfffffe00", "ip[ip[0] & 0xf] = 0",
    "ip[2:2] << (ip[0] & 0x1f) > 5", "ip[2:2] >> (ip[9] & 0x1f) > 5", "ip[2:2] & ip[8] = 64",
    "ip[2:2] - ip[3] > ip[9]", "ip[0:4] > ip[4:4]", "ip[0:4] >= ip[4:4]", "ip[2:2] * ip[9] > 900",
    "ip[2:2] / (ip[1] & 3) > 0", "ip[2:2] % (ip[1] & 3) = 0", "tcp[tcpflags] & tcp-syn != 0",
    "vlan and udp", "ip6 and udp port 5060", "udp[8:4] = 0x494e5649", "ether[len - 1] = 0",
)


def _libpcap(path, text) -> list[tuple]:
    reader = pcapy.open_offline(str(path))
    if text is not None:
        reader.setfilter(text)
    return _frames(reader)


def _mapped(path, text) -> tuple[list[tuple], object]:
    reader = native.Reader(str(path))
    if text is not None:
        reader.set_program(pcapy.compile(reader.linktype, SNAPLEN, text, 1, 0xFFFFFFFF)
                           .get_bpf())
    return _frames(reader), reader


def _frames(reader, ahead: bool = False) -> list[tuple]:
    """Every frame the reader hands out, in batches of 7 walked here or, `ahead`, by the
    reader's own thread (read_ahead)."""
    if ahead:
        reader.read_ahead(7)
    out = []
    while True:
        try:
            data, meta = reader.next_batch(7)  # small batches: their seams are crossed often
        except pcapy.PcapError:
            return out
        if not meta:
            return out
        for sec, usec, off, caplen in struct.iter_unpack("4I", meta):
            out.append((sec, usec, data[off:off + caplen]))


def test_the_captures_checked_are_many_and_varied():
    linktypes = {native.Reader(str(p)).linktype for p in CAPTURES}
    assert len(CAPTURES) >= 35 and {1, 113} <= linktypes, (len(CAPTURES), linktypes)
    # the classic files left to libpcap are BSD loopback ones (see _pcapfile.c's dlt_of)
    left = {p.name: struct.unpack("<I", p.read_bytes()[20:24])[0]
            for p in CLASSICS if p not in CAPTURES}
    assert left and set(left.values()) <= {0, 108}, left


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.parent.name + "/" + p.name)
def test_every_capture_gives_libpcaps_frames(path):
    for text in (default_filter(), *FILTERS):
        try:
            want = _libpcap(path, text)
        except pcapy.PcapError:
            continue  # a filter that does not compile for this link type
        got, reader = _mapped(path, text)
        assert got == want, (text, len(got), len(want))
        assert reader.unsure is None
        if text in (None, default_filter()):  # walked ahead by the reader's thread: the same
            ahead = native.Reader(str(path))
            if text is not None:
                ahead.set_program(pcapy.compile(ahead.linktype, SNAPLEN, text, 1, 0xFFFFFFFF)
                                  .get_bpf())
            assert _frames(ahead, ahead=True) == want, text
            assert (ahead.unsure, ahead.records, ahead.frames) == (None, reader.records,
                                                                   len(want))


def _rewritten(src: Path, dst: Path, *, big: bool = False, nano: bool = False) -> Path:
    """`src` again with its headers big-endian and/or its times in nanoseconds (odd ones, so
    that the scaling back to microseconds is seen truncating)."""
    raw = src.read_bytes()
    order = ">" if big else "<"
    head = struct.unpack_from("<IHHiIII", raw)
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, *head[1:])]
    pos = 24
    while pos < len(raw):
        sec, usec, caplen, length = struct.unpack_from("<4I", raw, pos)
        frac = usec * 1000 + (sec % 997) if nano else usec
        out.append(struct.pack(order + "4I", sec, frac, caplen, length))
        out.append(raw[pos + 16:pos + 16 + caplen])
        pos += 16 + caplen
    dst.write_bytes(b"".join(out))
    return dst


@pytest.mark.parametrize("big,nano", [(True, False), (False, True), (True, True)])
def test_byte_order_and_nanoseconds_as_libpcap_reads_them(tmp_path, big, nano):
    src = REPO / "pcaps" / "lab-media-loss-5" / "capture.pcap"
    path = _rewritten(src, tmp_path / "x.pcap", big=big, nano=nano)
    for text in (default_filter(), None):
        got, _ = _mapped(path, text)
        assert got == _libpcap(path, text) and len(got) > 30


def _replayed(path, mapped: bool, monkeypatch) -> tuple[list, list]:
    if not mapped:
        monkeypatch.setattr(sources, "_mapped_reader", lambda path, filters: None)
    stats = CaptureStats()
    frames = []
    for batch in open_file(str(path), FilterSet(lambda lt: default_filter()), stats):
        frames += [(f.ts, f.frame, f.data) for f in sources.batch_frames(batch)]
    monkeypatch.undo()
    return frames, stats.damaged


def _cut_cases(tmp_path) -> dict[str, Path]:
    raw = (REPO / "pcaps" / "lab-basic-call" / "capture.pcap").read_bytes()
    records, pos = [], 24
    while pos < len(raw):
        caplen = struct.unpack_from("<I", raw, pos + 8)[0]
        records.append(pos)
        pos += 16 + caplen
    cases = {"record": raw[:records[9] + 30], "header": raw[:records[9] + 7]}
    long_ = bytearray(raw)
    snap = 200  # a snapshot length shorter than the records after the ninth
    struct.pack_into("<I", long_, 16, snap)
    cases["longer than the snapshot"] = bytes(long_)
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / (name.replace(" ", "-") + ".pcap")
        paths[name].write_bytes(data)
    return paths


def test_where_it_is_unsure_libpcap_has_the_last_word(tmp_path, monkeypatch):
    for name, path in _cut_cases(tmp_path).items():
        reader = native.Reader(str(path))
        _frames(reader)
        assert reader.unsure is not None, name
        got = _replayed(path, True, monkeypatch)
        want = _replayed(path, False, monkeypatch)
        assert got == want, name
        assert got[0], name  # the frames before the trouble are read


def test_files_it_does_not_take_go_to_libpcap(tmp_path):
    pcapngs = sorted(SHARED_PCAPS.glob("*.pcapng"))
    assert pcapngs
    with pytest.raises(ValueError, match="magic"):
        native.Reader(str(pcapngs[0]))
    short = tmp_path / "short.pcap"
    short.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")
    with pytest.raises(ValueError):
        native.Reader(str(short))
    raw = bytearray((REPO / "pcaps" / "lab-basic-call" / "capture.pcap").read_bytes())
    struct.pack_into("<I", raw, 20, 147)  # a user link type: libpcap's business
    odd = tmp_path / "odd.pcap"
    odd.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="link type"):
        native.Reader(str(odd))


def test_programs_libpcap_would_refuse_are_refused():
    reader = native.Reader(str(REPO / "pcaps" / "lab-basic-call" / "capture.pcap"))
    ret = (6, 0, 0, 1)
    for prog, why in (([], "length"), ([(0xFF, 0, 0, 0), ret], "unknown"),
                      ([(0x15, 5, 0, 1), ret], "jump"), ([(0x05, 0, 0, 1), ret], "jump"),
                      ([(0x02, 0, 0, 16), ret], "memory"), ([(0x34, 0, 0, 0), ret], "division"),
                      ([(0x64, 0, 0, 32), ret], "shift"), ([(0x28, 0, 0, 12)], "return")):
        with pytest.raises(ValueError, match=why):
            reader.set_program(prog)


def test_shifts_by_32_or_more_give_zero_as_in_libpcap_1_10():
    reader = native.Reader(str(REPO / "pcaps" / "lab-basic-call" / "capture.pcap"))
    # X = packet byte 0; A = 1; A <<= X; return A
    reader.set_program([(0x30, 0, 0, 0), (0x07, 0, 0, 0), (0x00, 0, 0, 1), (0x6C, 0, 0, 0),
                        (0x16, 0, 0, 0)])
    assert native.run(reader, b"\x03", 1) == 8
    assert native.run(reader, b"\x20", 1) == 0
    assert native.run(reader, b"", 0) == 0  # the load past the captured bytes rejects


@pytest.mark.parametrize("ahead", [False, True], ids=["walked here", "walked ahead"])
def test_a_file_shrunk_while_mapped_ends_like_a_cut_one(tmp_path, ahead):
    """Checked before each walk, a shrunk file ends where it ends now. Shrunk during a walk:
    the pages past the new end raise SIGBUS, caught inside the walk, and the rest of the last
    page reads as zeros, which is no record (the frame cut by the new end is handed out with
    zeros in place of its lost bytes). Either way the frames before the cut are handed out, the
    reader says why it stopped, the process lives on."""
    one = (REPO / "pcaps" / "lab-media-loss-5" / "capture.pcap").read_bytes()
    raw = one + one[24:] * 40
    everything = None
    for cut, skip_check, why in ((len(raw) // 3, 0, "cut inside a record"),
                                 (len(raw) // 3 & ~4095, 1, "the file shrank while it was read"),
                                 ((len(raw) // 3 & ~4095) + 2000, 1, "a record of zeros")):
        path = tmp_path / "shrinking.pcap"
        path.write_bytes(raw)
        everything = everything or _frames(native.Reader(str(path)))
        reader = native.Reader(str(path))
        reader.skip_size_check = skip_check  # 1: as if the file shrank in the middle of a walk
        with open(path, "r+b") as f:
            f.truncate(cut)
        got = _frames(reader, ahead)  # ahead: SIGBUS in the reader's own thread
        assert reader.unsure == why
        whole = got[:-1] if why == "a record of zeros" else got
        assert 0 < len(got) < len(everything) and whole == everything[:len(whole)], why


def _threads() -> list[str]:
    return [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]


def test_the_reader_thread_ends_with_its_consumer(monkeypatch):
    """A replay that stops early (an error, a limit) closes the batches' generator: the thread
    that walks ahead (blocked here: its queue is full) stops too, and nothing is left running."""
    monkeypatch.setattr(sources, "BATCH", 4)  # many batches: the thread is still walking
    path = REPO / "pcaps" / "lab-media-loss-5" / "capture.pcap"
    before = _threads()
    reader = native.Reader(str(path))
    batches = sources._mapped_batches(reader)
    data, meta = next(batches)
    assert meta and reader.walking_ahead
    assert sorted(_threads()) == sorted(before + ["sipprobe-read"])
    batches.close()
    assert not reader.walking_ahead and sorted(_threads()) == sorted(before)
    assert reader.next_batch(4) == (b"", b"")  # stopped: no more batches


def test_a_reader_dropped_while_its_thread_walks_unmaps_after_the_thread_ends(tmp_path):
    """A reader freed with its thread in the middle of a walk (nobody took a batch: no batch
    holds it) stops and joins that thread before it lets go of the mapping and the file: the
    walk never reads an unmapped page (a crash: SIGSEGV is not the walk's to catch)."""
    one = (REPO / "pcaps" / "lab-media-loss-5" / "capture.pcap").read_bytes()
    path = tmp_path / "long.pcap"
    path.write_bytes(one + one[24:] * 2000)  # 24 MB: each walk of 100 k frames takes a while
    code = (f"from probe.native import load\n"
            f"native = load('probe._pcapfile')\n"
            f"for _ in range(200):\n"
            f"    reader = native.Reader({str(path)!r})\n"
            f"    reader.read_ahead(100_000)\n"
            f"    del reader\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


def test_without_a_thread_the_file_is_walked_here(monkeypatch):
    """pthread_create can fail (a process or cgroup limit on threads): read_ahead raises
    OSError, and the same batches are walked in this thread instead."""
    class NoThread:
        def __init__(self, reader):
            self.reader = reader

        def read_ahead(self, n):
            raise OSError(11, "Resource temporarily unavailable")

        def __getattr__(self, name):
            return getattr(self.reader, name)

    monkeypatch.setattr(sources, "BATCH", 7)
    path = REPO / "pcaps" / "lab-media-loss-5" / "capture.pcap"
    got = [(bytes(data), meta) for data, meta in
           sources._mapped_batches(NoThread(native.Reader(str(path))))]
    assert all(type(data) is bytes for data, _ in
               sources._mapped_batches(NoThread(native.Reader(str(path)))))
    assert got == [(bytes(data), meta) for data, meta in
                   sources._mapped_batches(native.Reader(str(path)))]
    assert len(got) > 1


def test_batches_walked_ahead_live_as_long_as_they_are_held(monkeypatch):
    """A Batch is a buffer over memory the reader's thread walked into: it stays as it was
    while held, after the reader's end too, and a consumer holding every batch (more than the
    thread walks ahead) does not stop the walk."""
    monkeypatch.setattr(sources, "BATCH", 4)
    path = REPO / "pcaps" / "lab-media-loss-5" / "capture.pcap"
    reader = native.Reader(str(path))
    want = _frames(native.Reader(str(path)))
    held = list(sources._mapped_batches(reader))
    del reader
    assert len(held) > 8 and not any(isinstance(data, bytes) for data, _ in held)
    got = []
    for data, meta in held:
        for sec, usec, off, caplen in struct.iter_unpack("4I", meta):
            frame = data[off:off + caplen]  # sliced as bytes are: a copy
            assert frame == bytes(memoryview(data)[off:off + caplen]) and type(frame) is bytes
            got.append((sec, usec, frame))
    assert got == want
    data = held[0][0]
    whole = bytes(data)
    assert len(data) == len(whole) and data[0] == whole[0] and data[-1:] == whole[-1:]
    assert data[::7] == whole[::7] and data[-1::-3] == whole[-1::-3]
    with pytest.raises(TypeError):
        memoryview(data)[0] = 0  # read-only


def test_times_past_2038_in_a_damaged_files_last_batch_as_in_the_others(tmp_path, monkeypatch):
    """Found by tests/fuzz/long_run.py pcapfile: libpcap's per-frame re-read of a damaged
    file's last batch gave its times signed (before 1970), its batches and the mapped reader
    unsigned; both readers now give the same frames."""
    raw = bytearray((REPO / "pcaps" / "lab-basic-call" / "capture.pcap").read_bytes())
    pos, records = 24, []
    while pos < len(raw):
        records.append(pos)
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    struct.pack_into("<II", raw, records[3], 0x90000000, 0xFFFFFFF0)
    path = tmp_path / "late.pcap"
    path.write_bytes(bytes(raw[:records[5] + 40]))
    got = _replayed(path, True, monkeypatch)
    assert got == _replayed(path, False, monkeypatch)
    assert got[0][3][0] == 0x90000000 + 0xFFFFFFF0 * 1e-6 and got[1]


def test_a_filter_compiled_ahead_is_the_one_the_reader_takes(monkeypatch):
    """compile_ahead compiles the Ethernet program in a thread of its own (beside the store's
    opening); the mapped reader then waits for it rather than compile it again, and a filter
    libpcap rejects is rejected to the reader as if compiled there."""
    calls = []
    compile_ = pcapy.compile
    monkeypatch.setattr(pcapy, "compile", lambda *a: calls.append(
        threading.current_thread().name) or compile_(*a))
    sources._PROGRAMS.clear()
    filters = FilterSet(lambda lt: default_filter())
    sources.compile_ahead(filters)
    path = str(REPO / "pcaps" / "lab-basic-call" / "capture.pcap")
    reader = sources._mapped_reader(path, filters)
    frames = _frames(reader)
    assert len(frames) == 14 and frames == _libpcap(path, default_filter())
    assert calls == ["sipprobe-bpf"]
    sources.compile_ahead(FilterSet(lambda lt: "udp port"))
    with pytest.raises(pcapy.PcapError):
        sources._bpf_program(1, "udp port")
    assert calls == ["sipprobe-bpf", "sipprobe-bpf"]


def test_the_filter_is_compiled_once_for_a_directory_of_files(monkeypatch):
    """libpcap takes about 30 ms to compile the built-in filter: the mapped reader of each file
    of a directory takes the program compiled for the first."""
    calls = []
    compile_ = pcapy.compile
    monkeypatch.setattr(pcapy, "compile", lambda *a: calls.append(a) or compile_(*a))
    sources._PROGRAMS.clear()
    filters = FilterSet(lambda lt: default_filter())
    for name in ("lab-basic-call", "lab-busy-486", "lab-cancel-487"):
        reader = sources._mapped_reader(str(REPO / "pcaps" / name / "capture.pcap"), filters)
        assert reader is not None and _frames(reader)
    assert len(calls) == 1
