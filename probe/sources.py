"""Packet sources: capture files (pcap, pcapng, gzip) and live interfaces, through libpcap.

The BPF filter runs in C and only matching frames cross into Python, a batch at a time:
classic pcap files are mapped and filtered in place by probe._pcapfile with the program
libpcap compiled (libpcap reads on where it is unsure); interfaces and pcapng are read by
libpcap itself. Files libpcap cannot read (gzip, pcapng with interfaces of different link
types) go through scapy's raw readers with the same filter run by libpcap's BPF interpreter.
"""
from __future__ import annotations

import gzip
import heapq
import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .records import Frame, RawBatch, batch_frames

BATCH = 1024
POLL = 0.1  # seconds between checks of the stop condition on an idle live interface
SNAPLEN = 262144
DLT_EN10MB = 1
# Link types as written in files (LINKTYPE_*) whose DLT_* number differs; libpcap compiles for DLT.
LINKTYPE_TO_DLT = {101: 12, 100: 11}
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz")


class SourceError(Exception):
    """A capture file or interface cannot be opened; the message says which and why."""


class DamagedFile(SourceError):
    """A capture file is damaged or is no capture at all (wrong magic, cut inside its header):
    nothing of it can be read. The CLI exits 3 for it, as for a file damaged further in."""


@dataclass
class CaptureStats:
    """Counters a source knows: frames delivered and, live, the kernel's own counts."""

    frames: int = 0
    files: list[str] = field(default_factory=list)
    kernel_received: int | None = None
    kernel_dropped: int | None = None
    interface_dropped: int | None = None
    kernel_poll: object = None  # live: () -> (received, dropped, interface dropped)
    # one line per damaged file: what was wrong and how much of it was read
    damaged: list[str] = field(default_factory=list)

    def kernel_now(self) -> tuple | None:
        """(received, dropped, interface dropped) as the kernel counts them now, on a live
        interface whose link type has them; None otherwise (files; pcapy raises on links
        without stats)."""
        if self.kernel_poll is None:
            return None
        try:
            return self.kernel_poll()
        except Exception:
            return None

    def kernel_counters(self) -> dict:
        """What the kernel counted on a live interface (None for files)."""
        return {"kernel_received": self.kernel_received, "kernel_dropped": self.kernel_dropped,
                "interface_dropped": self.interface_dropped}


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files as given, and the capture files inside any directory, sorted by name."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            names = sorted(n for n in os.listdir(p) if n.lower().endswith(CAPTURE_SUFFIXES))
            out.extend(os.path.join(p, n) for n in names)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise SourceError(f"{p}: no such file or directory")
    if not out:
        raise SourceError("no capture files found in " + ", ".join(paths))
    return out


def _magic(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def _pcapng_linktypes(path: str) -> set[int]:
    """Link types of every interface block, found by walking block headers only (pcapng,
    draft-ietf-opsawg-pcapng section 3.1). A file cut or damaged inside a block ends the walk:
    the reader that follows reports the damage."""
    types: set[int] = set()
    with open(path, "rb") as f:
        endian = "<"
        while True:
            head = f.read(8)
            if len(head) < 8:
                return types
            btype = struct.unpack(endian + "I", head[:4])[0]
            if btype == 0x0A0D0D0A:  # section header: learn this section's byte order
                bom = f.read(4)
                if len(bom) < 4:
                    return types
                endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                blen = struct.unpack(endian + "I", head[4:])[0]
                if blen < 28:  # the smallest section header block
                    return types
                f.seek(blen - 12, os.SEEK_CUR)
                continue
            blen = struct.unpack(endian + "I", head[4:])[0]
            if blen < 12:
                return types
            if btype == 1:
                linktype = f.read(2)
                if len(linktype) < 2:  # cut inside the interface block ("unpack requires...")
                    return types
                types.add(struct.unpack(endian + "H", linktype)[0])
                f.seek(blen - 10, os.SEEK_CUR)
            else:
                f.seek(blen - 8, os.SEEK_CUR)


def needs_fallback_reader(path: str) -> bool:
    magic = _magic(path)
    if magic[:2] == GZIP_MAGIC:
        return True
    if magic == PCAPNG_MAGIC:
        return len(_pcapng_linktypes(path)) > 1
    if magic not in PCAP_MAGICS:
        raise DamagedFile(f"{path}: not a pcap, pcapng or gzip-compressed capture file")
    return False


class FilterSet:
    """BPF programs compiled once per link type, for sources that filter in Python."""

    def __init__(self, build, builtin: bool = True):
        self._build = build  # linktype -> filter text, or None for "keep everything"
        self._builtin = builtin
        self._programs: dict[int, object] = {}
        self.unfiltered: set[int] = set()  # link types the built-in filter cannot express

    def text_for(self, linktype: int) -> str | None:
        return self._build(linktype)

    def cannot_compile(self, linktype: int, text: str, exc: Exception) -> None:
        """libpcap refused the filter for this link type. The built-in filter gives way (the
        file is read whole, recorded in `unfiltered`); a filter the user gave is an error."""
        if not self._builtin:
            raise SourceError(f"BPF filter rejected for link type {linktype}: {exc}")
        self.unfiltered.add(linktype)

    def accepts(self, linktype: int, data: bytes) -> bool:
        prog = self._programs.get(linktype)
        if prog is None:
            import pcapy

            prog = False
            text = self._build(linktype)
            if text is not None:
                try:
                    prog = pcapy.compile(LINKTYPE_TO_DLT.get(linktype, linktype), SNAPLEN, text,
                                         1, 0xFFFFFFFF)
                except pcapy.PcapError as exc:
                    self.cannot_compile(linktype, text, exc)
            self._programs[linktype] = prog
        return prog is False or bool(prog.filter(data))


def _libpcap_frames(path: str, filters: FilterSet, stats: CaptureStats) -> Iterator:
    import pcapy

    done = 0  # frames the mapped reader handed out; libpcap goes on after them
    mapped = _mapped_reader(path, filters)
    if mapped is not None:
        n = stats.frames
        for data, meta in _mapped_batches(mapped):
            yield RawBatch(mapped.linktype, data, meta, n + 1)
            n += len(meta) // 16
            stats.frames = n
        if mapped.unsure is None:
            return
        done = mapped.frames
    try:
        reader = pcapy.open_offline(path)
    except pcapy.PcapError as exc:
        raise DamagedFile(f"{path}: {exc}") from None
    linktype = reader.datalink()
    text = filters.text_for(linktype)
    if text is not None:
        try:
            reader.setfilter(text)
        except pcapy.PcapError as exc:
            try:
                filters.cannot_compile(linktype, text, exc)
            except SourceError as err:
                raise SourceError(f"{path}: {err}") from None
            text = None
    for _ in range(done):
        reader.next()
    yield from _drain_batches(reader, linktype, stats, live=False, path=path, done=done,
                              reread=lambda skip: _reread_tail(path, text, linktype, skip))


def _mapped_batches(mapped) -> Iterator[tuple]:
    """The mapped reader's batches (data a buffer, meta bytes), walked ahead by a thread of the
    reader's own that holds no GIL (probe/_pcapfile.c read_ahead): the walk over the file and
    the copy of the frames run on the other core while the layers work on the batch before,
    and the bytes of a batch are not copied again. The thread ends with the consumer. A process
    that cannot start one more thread (a limit) walks the file here, between batches."""
    try:
        mapped.read_ahead(BATCH)
    except OSError:
        pass
    try:
        while True:
            batch = mapped.next_batch(BATCH)
            if not batch[1]:
                return
            yield batch
    finally:
        mapped.stop()


def _mapped_reader(path: str, filters: FilterSet):
    """probe._pcapfile's Reader for a classic pcap file it takes, its filter set; None where
    libpcap reads the file (not built, SIPPROBE_PURE, pcapng, a header or link type it does not
    take, a filter libpcap does not compile for the link type)."""
    from probe.native import load

    native = load("probe._pcapfile")
    if native is None:
        return None
    try:
        reader = native.Reader(path)
    except (OSError, ValueError):
        return None
    text = filters.text_for(reader.linktype)
    if text is not None:
        import pcapy

        try:
            reader.set_program(_bpf_program(reader.linktype, text))
        except (pcapy.PcapError, ValueError):
            return None
    return reader


class _Program:
    """libpcap's optimised program for a filter and link type, or its error, once compiled."""

    def __init__(self):
        self.done = threading.Event()
        self.program: tuple = ()
        self.error: BaseException | None = None

    def compile(self, dlt: int, text: str) -> None:
        import pcapy

        try:
            self.program = tuple(pcapy.compile(dlt, SNAPLEN, text, 1, 0xFFFFFFFF).get_bpf())
        except BaseException as exc:  # noqa: BLE001  (raised again by the reader that asks)
            self.error = exc
        self.done.set()


# (link type, filter text) -> its _Program: compiled once per process, as the built-in filter
# takes libpcap 20-30 ms, which a directory of rotated files would pay per file
_PROGRAMS: dict[tuple[int, str], _Program] = {}


def compile_ahead(filters: FilterSet, linktype: int = 1) -> None:
    """Start compiling the filter for `linktype` (Ethernet, a mirror port's) in a thread:
    pcap_compile releases the GIL, so its 20-30 ms run beside the start-up's imports and the
    store's opening; the mapped reader of a file of that link type takes the program from it."""
    text = filters.text_for(linktype)
    if text is None or (linktype, text) in _PROGRAMS:
        return
    program = _PROGRAMS[(linktype, text)] = _Program()
    threading.Thread(target=program.compile, args=(linktype, text), name="sipprobe-bpf",
                     daemon=True).start()


def _bpf_program(dlt: int, text: str) -> tuple:
    """The program for `text` on link type `dlt`: compiled here, or as compile_ahead left it
    (waited for). Raises pcapy.PcapError for a filter libpcap does not compile."""
    program = _PROGRAMS.get((dlt, text))
    if program is None:
        program = _PROGRAMS[(dlt, text)] = _Program()
        program.compile(dlt, text)
    program.done.wait()
    if program.error is not None:
        raise program.error
    return program.program


def _reread_tail(path: str, text: str | None, linktype: int, skip: int) -> Iterator[Frame]:
    """Frames after the first `skip` matching ones, packet by packet, up to a cut record."""
    import pcapy

    reader = pcapy.open_offline(path)
    if text is not None:
        reader.setfilter(text)
    seen = 0
    while True:
        try:
            hdr, data = reader.next()
        except pcapy.PcapError:
            return
        if hdr is None:
            return
        seen += 1
        if seen > skip:
            # as 32-bit unsigned, as next_batch hands them over (libpcap's are signed): a
            # frame's time does not depend on the batch a damaged file's end cut
            sec, usec = (v & 0xFFFFFFFF for v in hdr.getts())
            yield Frame(sec + usec * 1e-6, 0, linktype, data, hdr.getlen())


def _drain_batches(reader, linktype: int, stats: CaptureStats, live: bool,
                   stop=lambda: False, reread=None, path: str = "",
                   done: int = 0) -> Iterator[Frame]:
    """`done`: frames of the file read before this reader's first (the mapped reader's)."""
    import pcapy

    n = first = stats.frames
    if live:
        # next_batch blocks until traffic arrives; non-blocking reads behind select() let
        # `stop` be checked at least every POLL seconds on an idle link
        import select

        reader.setnonblock(1)
        fd = reader.getfd()
    while not stop():
        if live:
            select.select([fd], [], [], POLL)
        try:
            data, meta = reader.next_batch(BATCH)
        except pcapy.PcapError as exc:
            # a file cut mid-record ends like EOF; what was read stands. next_batch discards
            # the whole batch that hit the cut (a small file: every frame), so reread it
            if reread is not None:
                good = n - first + done
                tail = []
                for fr in reread(good):
                    n += 1
                    tail.append(fr._replace(frame=n))
                stats.frames = n
                stats.damaged.append(f"{path}: {exc}; {good + len(tail)} frames before it read")
                if tail:
                    yield tail
            break
        if not meta:
            if live:
                yield []  # idle: lets the consumer commit or report without traffic
                continue
            break
        # next_batch reports the captured length only; decode notices cut headers itself
        yield RawBatch(linktype, data, meta, n + 1)
        n += len(meta) // 16
        stats.frames = n


def _scapy_batches(path: str, filters: FilterSet, stats: CaptureStats) -> Iterator[list[Frame]]:
    """gzip and multi-link-type pcapng: slower, but the same filter and the same records."""
    from scapy.utils import RawPcapNgReader, RawPcapReader

    fh = gzip.open(path, "rb") if _magic(path)[:2] == GZIP_MAGIC else open(path, "rb")
    with fh:
        magic = fh.read(4)
        fh.seek(0)
        try:
            # scapy's reader metaclass takes one argument (a name or a file at offset 0) and
            # reads the magic itself; (path, fh, magic) raised TypeError for every file
            reader = (RawPcapNgReader if magic == PCAPNG_MAGIC else RawPcapReader)(fh)
        except Exception as exc:  # scapy raises Scapy_Exception and plain ones alike
            raise DamagedFile(f"{path}: {exc}") from None
        ng = magic == PCAPNG_MAGIC
        ts = 0.0
        read = 0
        batch: list[Frame] = []
        while True:
            try:
                rec = next(reader, None)  # Raw*Reader.read_packet() only raises "use _read_packet()"
            except EOFError:
                break
            except Exception as exc:  # truncated tail: keep what was read
                stats.damaged.append(f"{path}: {exc or type(exc).__name__}; "
                                     f"{read} frames before it read")
                break
            if rec is None:
                break
            read += 1
            data, meta = rec
            if ng:
                linktype = meta.linktype
                if meta.tshigh is not None:  # a Simple Packet Block has no time (None raised
                    ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol  # TypeError): keep last
                wirelen = meta.wirelen
            else:
                if len(data) < min(meta.caplen, 0xFFFF):  # 0xFFFF: scapy's own read limit
                    # scapy returns a record cut by the end of file short; libpcap drops it
                    stats.damaged.append(f"{path}: cut inside a record; {read - 1} frames "
                                         "before it read")
                    break
                linktype = reader.linktype
                ts = meta.sec + meta.usec / (1e9 if reader.nano else 1e6)
                wirelen = meta.wirelen
            try:
                keep = filters.accepts(linktype, data)
            except SourceError as exc:
                raise SourceError(f"{path}: {exc}") from None
            if not keep:
                continue
            stats.frames += 1
            batch.append(Frame(ts, stats.frames, linktype, data, wirelen))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _first_ts(path: str, filters: FilterSet) -> float:
    for frame in _frames_of(open_file(path, filters, CaptureStats())):
        return frame.ts
    return float("inf")


def _frames_of(batches) -> Iterator[Frame]:
    for batch in batches:
        yield from batch_frames(batch)


def open_file(path: str, filters: FilterSet, stats: CaptureStats) -> Iterator:
    """Batches (RawBatch or list of Frame) of one file."""
    if needs_fallback_reader(path):
        return _scapy_batches(path, filters, stats)
    return _libpcap_frames(path, filters, stats)


def read_files(paths: list[str], filters: FilterSet, stats: CaptureStats) -> Iterator[Frame]:
    """Frames of all files in timestamp order, renumbered across files (see read_batches)."""
    return _frames_of(read_batches(paths, filters, stats))


def read_batches(paths: list[str], filters: FilterSet, stats: CaptureStats) -> Iterator:
    """Batches of frames of all files in timestamp order, renumbered across files.

    Files are ordered by their first matching frame and opened only while they overlap the
    time already reached, so a directory of rotated captures holds one or two files open.
    """
    paths = expand_paths(paths)
    stats.files = paths
    readable = []
    for p in paths:  # a file that is no capture: before any output
        try:
            needs_fallback_reader(p)
            readable.append(p)
        except DamagedFile as exc:
            if len(paths) == 1:
                raise
            stats.damaged.append(str(exc))  # one of several: the others are read
    if not readable:
        raise DamagedFile("no readable capture among " + ", ".join(paths))
    paths = readable
    if len(paths) == 1:
        yield from open_file(paths[0], filters, stats)
        return
    merged: list[Frame] = []
    for frame in _merge(paths, filters, stats):
        merged.append(frame)
        if len(merged) >= BATCH:
            yield merged
            merged = []
    if merged:
        yield merged


def _merge(paths: list[str], filters: FilterSet, stats: CaptureStats) -> Iterator[Frame]:
    starts = sorted((_first_ts(p, filters), i, p) for i, p in enumerate(paths))
    pending = list(reversed(starts))
    heap: list = []
    scratch = CaptureStats()
    scratch.damaged = stats.damaged  # the frames are renumbered here; the damage is reported
    counter = 0

    def push(it):
        nonlocal counter
        for fr in it:
            counter += 1
            heapq.heappush(heap, (fr.ts, counter, fr, it))
            return

    while heap or pending:
        while pending and (not heap or pending[-1][0] <= heap[0][0]):
            push(_frames_of(open_file(pending.pop()[2], filters, scratch)))
        if not heap:
            continue
        _, _, fr, it = heapq.heappop(heap)
        stats.frames += 1
        yield fr._replace(frame=stats.frames)
        push(it)


def read_live(interface: str, filters: FilterSet, stats: CaptureStats, *, promisc: bool = True,
              buffer_mb: int = 32, stop=lambda: False, on_start=None) -> Iterator[RawBatch]:
    """Batches from an interface until `stop()` is true; kernel counters land in `stats`
    (stats.kernel_poll reads them while running). `on_start(interface, linktype, filter)`
    runs once capture is active."""
    import pcapy

    from probe.live_errors import activation_error

    try:
        reader = pcapy.create(interface)
        reader.set_snaplen(SNAPLEN)
        reader.set_promisc(promisc)
        reader.set_timeout(100)
        reader.set_buffer_size(buffer_mb * 1024 * 1024)
        status = reader.activate()  # pcapy returns pcap_activate()'s status, never raises it
    except pcapy.PcapError as exc:
        raise SourceError(f"interface {interface}: {exc}") from None
    if status is not None and status < 0:
        reader.close()
        raise SourceError(activation_error(interface, status))
    linktype = reader.datalink()
    text = filters.text_for(linktype)
    if text is not None:
        reader.setfilter(text)
    stats.files = [f"live:{interface}"]
    stats.kernel_poll = reader.stats
    if on_start is not None:
        on_start(interface, linktype, text)
    try:
        yield from _drain_batches(reader, linktype, stats, live=True, stop=stop)
    finally:
        recv, drop, ifdrop = reader.stats()
        stats.kernel_received, stats.kernel_dropped, stats.interface_dropped = recv, drop, ifdrop
        reader.close()
