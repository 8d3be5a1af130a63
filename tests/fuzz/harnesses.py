"""The properties each fuzz harness checks on one input; shared by the hypothesis tests
(tests/fuzz/test_fuzz.py, bounded, in CI) and the long random-mutation run (long_run.py)."""
from __future__ import annotations

import os
import tempfile

import pipeline
from probe import decode
from probe.counters import Counters
from probe.records import META, RawBatch
from probe import sources
from probe.sources import CaptureStats, SourceError
from rtcp_mos.rtcp import parse_compound
from sip_dissect.scan import scan_native, scan_py
from sip_dissect.sdp import parse_sdp


def scan_differential(payload: bytes) -> None:
    """The C scanner gives what its Python twin gives, or hands over (None); neither raises."""
    py = scan_py(payload)
    native = scan_native(payload)
    assert native is None or native == py, (payload, native, py)


def sdp_never_raises(body: bytes) -> None:
    parse_sdp(body)


def rtcp_never_raises(payload: bytes) -> None:
    parse_compound(payload)


def _decoder(native: bool) -> decode.Decoder:
    return decode.Decoder(Counters(), pipeline.frame_sip_stream, tcp_ports=frozenset((5060, 5061)),
                          strict=True, native=native)


def decode_differential(frames: list[bytes]) -> None:
    """The C fast path and the Python decoder give the same datagrams and counters for one
    libpcap batch of (mutated) Ethernet frames; strict: a decoder bug raises."""
    data = b"".join(frames)
    meta, off = bytearray(), 0
    for i, f in enumerate(frames):
        meta += META.pack(1795355000 + i, 0, off, len(f))
        off += len(f)
    batch = RawBatch(1, data, bytes(meta), 1)
    results = []
    for native in (True, False):
        dec = _decoder(native)
        out = dec.decode_batch(batch)
        dec.flush()
        results.append((out, dict(dec.c)))
    assert results[0] == results[1]


class MemoryFile:
    """One capture file in memory (memfd_create: no disk, no temp name), rewritten for each
    input; readers open it by its /proc path as they open any file. Falls back to a temporary
    file where memfd_create is missing."""

    def __init__(self):
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("sipprobe-fuzz")
            self.path = f"/proc/{os.getpid()}/fd/{self.fd}"
        else:
            self.fd, self.path = tempfile.mkstemp(suffix=".pcap")

    def write(self, content: bytes) -> str:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, content, 0)
        return self.path


_FILE: list[MemoryFile] = []
# The built-in filter is ~8.5 KB of BPF text, and libpcap compiles it at every open (9 ms,
# nine tenths of an input's cost): without it every frame reaches the decoder, which is
# the code under test; long_run.py's FILTERED_EVERY-th input still run with it (its compile-failure path)
NO_FILTER = pipeline.ProbeOptions(strict=True, bpf_filter="")
BUILT_IN = pipeline.ProbeOptions(strict=True)


def file_never_crashes(content: bytes, filtered: bool = True) -> None:
    """A (mutated) capture file through `sipprobe stats` and the replay's accounting: a
    result, or SourceError (the CLI's one-line message); never another exception. In
    process, from memory; `filtered`: with the built-in BPF filter (else none: faster)."""
    if not _FILE:
        _FILE.append(MemoryFile())
    path = _FILE[0].write(content)
    opts = BUILT_IN if filtered else NO_FILTER
    for run in (lambda: pipeline.stats_files([path], opts),
                lambda: pipeline.account_files([path], lambda rec: None, opts)):
        try:
            run()
        except SourceError:
            pass


def _file_outcome(path: str, opts, mapped: bool) -> tuple:
    """Frames (time, number, bytes) and damage reports of one file, or the SourceError's text;
    `mapped`: as replays read it (probe._pcapfile where it takes the file), else libpcap only."""
    keep = sources._mapped_reader
    if not mapped:
        sources._mapped_reader = lambda path, filters: None
    stats = CaptureStats()
    try:
        frames = [(f.ts, f.frame, f.data) for batch in
                  sources.open_file(path, opts.filters(), stats)
                  for f in sources.batch_frames(batch)]
    except SourceError as exc:
        return ("error", str(exc))
    finally:
        sources._mapped_reader = keep
    return frames, stats.damaged


def pcapfile_differential(content: bytes, filtered: bool = True) -> None:
    """A (mutated) capture file gives the same frames, and the same damage report, read by
    probe._pcapfile (and libpcap after it where it is unsure) as by libpcap alone."""
    if not _FILE:
        _FILE.append(MemoryFile())
    path = _FILE[0].write(content)
    opts = BUILT_IN if filtered else NO_FILTER
    mapped, alone = _file_outcome(path, opts, True), _file_outcome(path, opts, False)
    assert mapped == alone, (len(mapped[0]), len(alone[0]))
