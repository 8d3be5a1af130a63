"""Wires the layers: sources -> decode -> SIP / RTCP classification -> results.

No CLI code here, so a replay runs from tests or other programs the same way as from `sipprobe`.
"""
from __future__ import annotations

import gc
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import cython

from probe import bpf, records
from probe.bpf import SIP_PREFIXES
from probe.counters import Counters
from probe.decode import DecodeBug, Decoder
from probe.records import Datagram, Frame
from probe.sources import CaptureStats, FilterSet, compile_ahead, read_batches, read_live
from rtcp_mos.rtcp import PACKET_TYPES, looks_like_rtcp, packet_spans
from sip_dissect.framing import frame_sip_stream
from sip_dissect.message import match_start_line, parse_start_line

RETRANSMIT_HORIZON = 32.0  # 64*T1 (RFC 3261 section 17.1.1.2): no retransmission comes later
MAX_REMEMBERED = 1_000_000  # messages within the horizon; beyond, forget rather than grow


@dataclass
class ProbeOptions:
    """How frames are captured and decoded; the CLI maps its switches onto this."""

    sip_ports: tuple[int, ...] = bpf.DEFAULT_SIP_PORTS
    bpf_filter: str | None = None  # None: the built-in filter; "" : no filter at all
    dedup_window: float = 0.010  # seconds; 0 turns SPAN de-duplication off
    strict: bool = field(default_factory=lambda: os.environ.get("SIPPROBE_STRICT") == "1")

    def filters(self) -> FilterSet:
        def build(linktype: int) -> str | None:
            if self.bpf_filter == "":
                return None
            if self.bpf_filter is not None:
                return self.bpf_filter
            # `vlan` only means something on Ethernet; libpcap rejects it elsewhere
            return bpf.default_filter(self.sip_ports, vlan=(linktype == 1))
        return FilterSet(build, builtin=self.bpf_filter is None)


SIP, RTCP, OTHER = 1, 2, 0  # what classify() tells
# a Datagram's fields by position: C indexes once compiled (native/pxdgen.py)
_SPORT: cython.Py_ssize_t = records.D_SPORT
_DPORT: cython.Py_ssize_t = records.D_DPORT
_TRANSPORT: cython.Py_ssize_t = records.D_TRANSPORT
_PAYLOAD: cython.Py_ssize_t = records.D_PAYLOAD


@cython.ccall  # a C call from account_batch and StatsCollector.add once compiled
def classify(d: Datagram, sip_ports: frozenset) -> int:
    """The one place that tells SIP from RTCP from the rest, for `stats` and `replay` alike.

    SIP by transport port, or by its first bytes on any other UDP port (TCP streams reach here
    only once they opened like SIP); then RTCP by its header (RFC 5761 section 4 keeps RTP
    payload types 72-79 free, so a second byte of 200-207 is RTCP even on a muxed port)."""
    t = cython.cast(tuple, d)  # indexed as a tuple: see sip_dissect/transaction.py
    if t[_TRANSPORT] == "tcp" or t[_SPORT] in sip_ports or t[_DPORT] in sip_ports \
            or t[_PAYLOAD][:4] in SIP_PREFIXES:
        return SIP
    if looks_like_rtcp(t[_PAYLOAD]):
        return RTCP
    return OTHER


def engine() -> str:
    """Which per-message engine runs: the C decoder and SIP scanner, and the signalling layers
    compiled by Cython (probe/native.py COMPILED), or their pure-Python run."""
    import sys

    from probe import decode
    from probe.native import COMPILED, PURE, is_compiled
    from sip_dissect import scan

    built = {"decode": decode._fastdecode is not None, "SIP scan": scan.NATIVE}
    for name in COMPILED:  # imported by now: signalling and this module
        built[name] = name in sys.modules and is_compiled(sys.modules[name])
    if all(built.values()):
        return "native (C decode and SIP scan; signalling compiled by Cython)"
    if PURE:
        return "pure Python (SIPPROBE_PURE=1)"
    missing = ", ".join(name for name, on in built.items() if not on)
    return (f"pure Python for {missing}: not compiled; reinstall with gcc and the "
            "Python headers present for about 1.5x the speed")


def datagram_batches(batches, opts: ProbeOptions, counters: Counters) -> Iterator[list[Datagram]]:
    """Decoded datagrams of frame batches (RawBatch or lists of Frame) or of single Frames,
    a list per batch. A frame that breaks the decoder is counted as `internal.decode_error`
    and skipped (raised as DecodeBug with `opts.strict`)."""
    decoder = Decoder(counters, frame_sip_stream, tcp_ports=frozenset(opts.sip_ports),
                      dedup_window=opts.dedup_window, strict=opts.strict)
    decode_batch = decoder.decode_batch
    for batch in batches:
        yield decode_batch([batch] if isinstance(batch, Frame) else batch)
    decoder.flush()


def datagrams(batches, opts: ProbeOptions, counters: Counters) -> Iterator[Datagram]:
    """datagram_batches, one datagram at a time."""
    for out in datagram_batches(batches, opts, counters):
        yield from out


class StatsCollector:
    """What `sipprobe stats` reports: SIP and RTCP counts, encapsulations, every counter."""

    def __init__(self, opts: ProbeOptions, counters: Counters):
        self.opts = opts
        self.counters = counters
        self.sip_ports = frozenset(opts.sip_ports)
        self.requests: dict[bytes, int] = {}
        self.responses: dict[bytes, int] = {}
        self.transport = Counters()  # dicts with 0 for a missing key: Counter's store is dearer
        self.rtcp_packets: dict[int, int] = {}  # by packet type number; named in result()
        self.rtcp_datagrams = 0
        self.encapsulations = Counters()
        self.retransmissions = 0
        # two generations of remembered messages: the older one is dropped whole every
        # horizon, so forgetting costs nothing per message and no dict is ever rebuilt
        self._recent: dict[tuple, float] = {}
        self._older: dict[tuple, float] = {}
        self._rotate_at = 0.0

    def add_all(self, datagrams: list[Datagram]) -> None:
        add = self.add
        for d in datagrams:
            add(d)

    def add(self, d: Datagram) -> None:
        if d.vlan or d.tunnel:
            self._encapsulated(d)
        payload = d.payload
        kind = classify(d, self.sip_ports)
        if kind == SIP:
            m = match_start_line(payload)
            if m is None:
                self._not_sip(payload)
                return
            # counted by raw bytes; named in result(), off the per-message path
            self.transport[d.transport] += 1
            method = m[3]
            if method is not None:
                self.requests[method] = self.requests.get(method, 0) + 1
            else:
                code = m[1]
                self.responses[code] = self.responses.get(code, 0) + 1
            # A retransmission is the same message again (RFC 3261 section 17: the transaction
            # layer resends it unchanged), so the bytes themselves are the key.
            key = (d.src, d.sport, d.dst, d.dport, payload)
            ts = d.ts
            if ts >= self._rotate_at:
                self._rotate(ts)
            recent = self._recent
            last = recent.get(key)
            if last is None:
                last = self._older.get(key)
            if last is not None and ts - last <= RETRANSMIT_HORIZON:
                self.retransmissions += 1
            recent[key] = ts
        elif kind == RTCP:
            self._rtcp(d)
        else:
            self.counters["classify.not_sip_or_rtcp"] += 1

    def _encapsulated(self, d: Datagram) -> None:
        if d.vlan:
            self.encapsulations["vlan" if len(d.vlan) == 1 else "qinq"] += 1
        for t in d.tunnel:
            self.encapsulations[t] += 1

    def _not_sip(self, payload: bytes) -> None:
        if not payload.strip(b" \t\r\n\x00"):
            self.counters["sip.keepalive"] += 1  # NAT keep-alives: CRLF (RFC 5626), spaces, NULs
        else:
            self.counters[parse_start_line(payload).reason] += 1

    def _rotate(self, ts: float) -> None:
        """Forget messages older than one to two horizons, so memory stays flat."""
        if len(self._recent) > MAX_REMEMBERED:
            self.counters["stats.retransmission_memory_full"] += 1
            self._recent = {}
        self._older, self._recent = self._recent, {}
        self._rotate_at = ts + RETRANSMIT_HORIZON

    def _rtcp(self, d: Datagram) -> None:
        spans, anomaly = packet_spans(d.payload)
        self.rtcp_datagrams += 1
        counts = self.rtcp_packets
        for pt, _, _ in spans:
            counts[pt] = counts.get(pt, 0) + 1
        if anomaly is not None:
            self.counters[anomaly] += 1

    def result(self, capture: CaptureStats) -> dict:
        out = {
            "files": capture.files,
            "frames_matched": capture.frames,
            "filter": "off" if self.opts.bpf_filter == "" else
                      ("custom" if self.opts.bpf_filter else "default"),
            "sip": {
                "messages": sum(self.requests.values()) + sum(self.responses.values()),
                "requests": {m.decode("ascii"): n for m, n in
                             sorted(self.requests.items(), key=lambda kv: (-kv[1], kv[0]))},
                "responses": {c.decode("ascii"): n for c, n in sorted(self.responses.items())},
                "retransmissions": self.retransmissions,
                "transport": dict(sorted(self.transport.items())),
            },
            "rtcp": {"datagrams": self.rtcp_datagrams,
                     "packets": dict(sorted((PACKET_TYPES[pt], n)
                                            for pt, n in self.rtcp_packets.items()))},
            "encapsulations": dict(sorted(self.encapsulations.items())),
            "counters": {k: v for k, v in sorted(self.counters.items()) if v},
        }
        if capture.kernel_received is not None:
            out["capture"] = capture.kernel_counters()
        if capture.damaged:
            out["damaged"] = capture.damaged
        return out


def stats_files(paths: list[str], opts: ProbeOptions | None = None) -> dict:
    """`sipprobe stats` on capture files, as a plain dict."""
    return _stats(lambda filters, capture: read_batches(paths, filters, capture), opts)


def stats_live(interface: str, opts: ProbeOptions, stop, **live) -> dict:
    """`sipprobe stats --interface`: until `stop()` is true, then kernel counters included."""
    return _stats(lambda filters, capture: read_live(interface, filters, capture, stop=stop,
                                                     **live), opts)


def _stats(source, opts: ProbeOptions | None) -> dict:
    opts = opts or ProbeOptions()
    counters, capture = Counters(), CaptureStats()
    collector = StatsCollector(opts, counters)
    filters = opts.filters()
    frames = source(filters, capture)
    try:
        for batch in datagram_batches(frames, opts, counters):
            collector.add_all(batch)
    except KeyboardInterrupt:
        pass  # a live run stopped by Ctrl-C: report what was seen
    finally:
        frames.close()
    result = collector.result(capture)
    if filters.unfiltered:
        result["unfiltered_linktypes"] = sorted(filters.unfiltered)
    return result


def parse_proxy(text: str) -> tuple[str, int | None]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT`, as given to --proxy."""
    import ipaddress

    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"bad port in {text!r}")
        port = int(p)
    ipaddress.ip_address(host)  # raises ValueError with a clear message
    return host, port


def account_files(paths: list[str], sink, opts: ProbeOptions | None = None, **kw) -> dict:
    """Replay captures through the signalling layers; `sink` receives every AccRecord.
    Returns the run summary (calls, rows, counters); options as `account`."""
    return account(lambda filters, capture: read_batches(paths, filters, capture), sink, opts, **kw)


def account_live(interface: str, sink, opts: ProbeOptions | None = None, *, stop,
                 promisc: bool = True, buffer_mb: int = 32, on_start=None, **kw) -> dict:
    """`sipprobe sniff`: account an interface's traffic until `stop()` is true."""
    def source(filters, capture):
        return read_live(interface, filters, capture, stop=stop, promisc=promisc,
                         buffer_mb=buffer_mb, on_start=on_start)
    return account(source, sink, opts, **kw)


def account(source, sink, opts: ProbeOptions | None = None, *,
            acc_options=None, proxies: list[tuple[str, int | None]] = (),
            dialog_timeout: float = 7200.0, on_call_end=None, progress=None,
            proxy_set=None, tick=None, subscribers=(), media_sink=None,
            rtpengine_formula: str = "g107", monitor=None, carry=None, flavour=None,
            carry_every: float | None = None, **timers) -> dict:
    """Frames from `source(filters, capture)` through the signalling and media layers: `sink`
    receives every AccRecord, `subscribers` (sip_dissect.events.Subscriber) the call events,
    `on_call_end` each ended Call. `proxy_set` (a ProxySet built from `proxies`) lets the
    caller see the proxies learned on the way, as CDRs need; `tick()` runs after every batch
    (a live source also yields empty batches when idle), for commits that must not wait for
    traffic. `media_sink` receives the voice quality records (rtcp_mos.records: a row per
    RTCP report block, a row per call and side; `rtpengine_formula` the MOS formula of the
    rtpengine to reproduce, rtcp_mos.rtpengine_mos.FORMULAS); without it RTCP is only counted.
    `monitor.attach(signalling, capture)` lets a live status read the counts as they grow.
    `carry`: a store that keeps the signalling state between runs (sip_dissect/carry.py):
    the calls going on when the last run ended are taken up before the first packet, and
    those going on at the end are left for the next run; with `carry_every` (seconds of wall
    time, a live run's) they are also kept while the run goes (KeptCalls). `flavour`: whose
    acc rows `sink` receives (sip_dissect.flavour: KAMAILIO, the default, or OPENSIPS).
    `timers`: Signalling's invite_timeout, no_reply_timeout, max_calls and max_transactions."""
    from rtcp_mos.media import MediaLayer
    from sip_dissect.accounting import AccOptions, ProxySet
    from sip_dissect.events import Publisher
    from sip_dissect.flavour import KAMAILIO
    from sip_dissect.signalling import Signalling

    opts = opts or ProbeOptions()
    flavour = flavour or KAMAILIO
    table_of = flavour.table_of
    counters, capture = Counters(), CaptureStats()
    rows = {"acc": 0, "missed_calls": 0}  # a plain dict: a subclass's item get is a method call

    def count_and_sink(rec):
        table = table_of(rec)
        rows[table] = rows.get(table, 0) + 1
        try:
            sink(rec)
        except Exception as exc:
            exc.from_sink = True  # the caller's (a store error): not swallowed below
            raise

    proxy_set = proxy_set if proxy_set is not None else ProxySet(list(proxies))
    media = MediaLayer(counters, media_sink, rtpengine_formula)
    events = Publisher([flavour.acc_subscriber(acc_options or AccOptions(), proxy_set,
                                               count_and_sink), *subscribers, media])
    if on_call_end is not None:
        events.add_handler("call_ended", on_call_end)
    sig = Signalling(counters, events, proxies=proxy_set, dialog_timeout=dialog_timeout, **timers)
    media.live_calls = sig.dialogs.calls  # indexed at the first RTCP datagram
    if monitor is not None:
        monitor.attach(sig, capture)
    sip_ports = frozenset(opts.sip_ports)
    taken: set = set()
    frames = source(opts.filters(), capture)
    batches = datagram_batches(frames, opts, counters)
    kept = None
    if carry is not None:
        batches = _taking_up(batches, sig, carry.carried(), counters, taken)
        if carry_every:
            kept = KeptCalls(sig, carry, taken, carry_every)
            tick = kept.after(tick)
    try:
        with gc_spaced():
            _account_batches(batches, sig.add, media.rtcp,
                             sip_ports, opts, counters, capture, progress, tick)
    except KeyboardInterrupt:
        pass  # a live run stopped by Ctrl-C: what was seen is still accounted below
    finally:
        frames.close()
    groups = None
    if carry is not None:
        from sip_dissect.carry import snapshot
        groups = snapshot(sig)  # before close() ends the calls
    sig.close()
    media.close()  # after the calls' ends: their quality rows follow their CDRs
    if groups is not None:  # committed with the open calls' rows
        carry.keep_carried(taken | kept.kept if kept is not None else taken, groups)
    totals = sig.dialogs.totals
    summary = {
        "files": capture.files,
        "engine": engine(),
        "frames_matched": capture.frames,
        "sip_messages": sig.messages,
        "proxies": sig.proxies.describe(),
        "calls": totals["calls"],
        "answered": totals["answered"],
        "failed": totals["failed"],
        "challenged": totals["challenged"],
        "acc_rows": rows["acc"],
        "missed_rows": rows["missed_calls"],
        "counters": {k: v for k, v in sorted(counters.items()) if v},
    }
    if capture.kernel_received is not None:
        summary["capture"] = capture.kernel_counters()
    if capture.damaged:
        summary["damaged"] = capture.damaged  # the CLI exits 3
    return summary


class KeptCalls:
    """The signalling state kept in the store while a live run goes, not only at its end, so
    that a SIGKILL loses the calls' state of at most the last interval: their BYE after a
    restart still completes them (sip_dissect/carry.py). Every `every` seconds of wall time,
    and never sooner than 20 times the last snapshot's own time after it (at most 5 % of the
    capture thread; a snapshot costs about 30 k instructions an open call). Each keep replaces
    the groups of the last keep and of those taken up at the start, in the transaction of the
    rows buffered with it."""

    def __init__(self, sig, carry, taken: set, every: float):
        self.sig, self.carry, self.taken, self.every = sig, carry, taken, every
        self.kept: set = set()  # the Call-IDs the last keep wrote
        self.due = time.monotonic() + every

    def after(self, tick):
        """`tick` (or nothing) followed by a keep when one is due."""
        def run():
            if tick is not None:
                tick()
            if time.monotonic() >= self.due:
                self.keep()
        return run

    def keep(self) -> None:
        from sip_dissect.carry import snapshot

        start = time.monotonic()
        groups = snapshot(self.sig)
        self.carry.keep_carried(self.taken | self.kept, groups)
        self.kept = {callid for callid, _, _ in groups}
        now = time.monotonic()
        self.due = now + max(self.every, 20 * (now - start))


def _taking_up(batches, sig, groups, counters: Counters, taken: set):
    """`batches` as they are, the carried state taken up before the first datagram: the groups
    whose last packet is not later than it (a run that continues the last one; a rerun of an
    earlier capture leaves them as they are)."""
    from sip_dissect.carry import PROXIES, restore

    pending = True
    for batch in batches:
        if pending and batch:
            pending = False
            first = batch[0].ts
            taken.update(restore(sig, [(c, s) for c, t, s in groups
                                       if c == PROXIES or t <= first], counters))
        yield batch


def account_batch(datagrams: list[Datagram], add, rtcp, sip_ports: frozenset, on_error,
                  counters: Counters) -> None:
    """Each datagram to the signalling layers (`add`), the media layer (`rtcp`) or counted;
    an Exception from `add` goes to `on_error(exc, d)`, which raises or not."""
    for d in datagrams:
        kind = classify(d, sip_ports)
        if kind == SIP:
            try:
                add(d)
            except Exception as exc:
                on_error(exc, d)
        elif kind == RTCP:
            rtcp(d)
        else:
            counters["classify.not_sip_or_rtcp"] += 1


def _account_batches(batches, add, rtcp, sip_ports: frozenset, opts: ProbeOptions,
                     counters: Counters, capture: CaptureStats, progress, tick) -> None:
    """account()'s loop: each batch through account_batch."""
    def on_error(exc: Exception, d: Datagram) -> None:
        _signalling_error(exc, d, opts, counters)

    for batch in batches:
        account_batch(batch, add, rtcp, sip_ports, on_error, counters)
        if progress is not None:
            progress(capture.frames)
        if tick is not None:
            tick()


@contextmanager
def gc_spaced(young: int = 50_000):
    """Run the cyclic garbage collector less often. The signalling state is many small
    long-lived objects (transactions, calls), and with the default threshold (700
    allocations) the collector walks them hundreds of times a second for nothing: the layers
    cut their own cycles (transaction._unlink), so reference counting frees finished calls.
    What exists when the run starts (modules, classes: about 100 k objects) is frozen out of
    the collector's walks (gc.freeze): it lives as long as the process."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _signalling_error(exc: Exception, d: Datagram, opts: ProbeOptions,
                      counters: Counters) -> None:
    """As Decoder._guarded does: a bug on one message must not end a replay (a non-ASCII
    digit in a CSeq did); strict mode raises so tests see it; the sink's errors (the
    store's) always propagate."""
    if getattr(exc, "from_sink", False):
        raise exc
    if opts.strict:
        raise DecodeBug(f"frame {d.frame}: {exc!r}") from exc
    counters["internal.signalling_error"] += 1


def sniff_interface(interface: str, db_path: str, opts: ProbeOptions | None = None, *,
                    stop, promisc: bool = True, buffer_mb: int = 32, monitor=None,
                    **run) -> dict:
    """`sipprobe sniff`: account live traffic into SQLite (or PostgreSQL); batches commit at
    least every second even on a quiet link, and the calls going on are kept every
    CARRY_EVERY seconds, so that a SIGKILL loses no more of them (KeptCalls). `monitor`
    (console.live.LiveStatus) is told when capture starts, sees the store and the voice
    quality records, and ticks after every batch. `run`: StoreRun's options (the store, the
    proxies, the flavour, the syslog, the notice of unclean runs), then account's."""
    with StoreRun(db_path, "sniff", **run) as r:
        tick, media_sink, on_start = r.store.flush_if_due, r.store.add_media, None
        if monitor is not None:
            tick, media_sink = monitor.wrap(r.store, tick, media_sink)
            on_start = monitor.started
        summary = account_live(interface, r.sink, opts, stop=stop, promisc=promisc,
                               buffer_mb=buffer_mb, tick=tick, media_sink=media_sink,
                               on_start=on_start, monitor=monitor, carry_every=CARRY_EVERY,
                               **r.arguments)
    return r.summary(summary)


CARRY_EVERY = 1.0  # sniff keeps its calls' state this often (seconds; the commit interval)


def replay_files(paths: list[str], db_path: str, opts: ProbeOptions | None = None,
                 **run) -> dict:
    """`sipprobe replay`: account captures into the SQLite database (or PostgreSQL) at
    `db_path`.

    Rows are committed in batches keyed by content, so a rerun adds nothing and a killed run
    keeps every batch it committed. Returns the summary of account_files plus what the store
    inserted and ignored as already present. `run`: as sniff_interface's."""
    opts = opts or ProbeOptions()
    compile_ahead(opts.filters())  # beside the store's opening
    with StoreRun(db_path, "replay", **run) as r:
        summary = account_files(paths, r.sink, opts, media_sink=r.store.add_media,
                                **r.arguments)
    return r.summary(summary)


class StoreRun:
    """What `replay` and `sniff` share around their accounting: the store opened for this
    run (open_store: `local_time`, `store_options`, the run's `kind`), the earlier runs that
    ended without a clean stop told to `notice(line)` (store/runs.py; also the summary's
    `unclean_runs`), the flavour's acc sink and CDR subscriber, the ACC log lines of
    `syslog` (store.acc_log.SyslogOptions: each acc and missed_calls row the store gets is
    also logged as Kamailio's acc module logs it), the calls carried between runs
    (`carry_calls`: sip_dissect/carry.py), and the store's counts in the summary.
    `arguments`: account's keyword arguments of all that, with the rest of `accounting`.
    `while_closing()` runs in a thread while the store waits for its writer process's last
    commit and close (the CLI imports its summary printer there, 36 ms of a replay's end)."""

    def __init__(self, db_path: str, kind: str, *, local_time: bool = False, proxies=(),
                 cdr_options: dict | None = None, store_options: dict | None = None,
                 carry_calls: bool = True, syslog=None, flavour=None, notice=None,
                 while_closing=None, **accounting):
        self.db_path, self.kind, self.local_time = db_path, kind, local_time
        self.while_closing = while_closing
        self.cdr_options, self.store_options = cdr_options, store_options or {}
        self.carry_calls, self.syslog, self.notice = carry_calls, syslog, notice
        self.flavour = _flavour(flavour)
        self.known = self._proxy_set(proxies)  # learns the relaying proxies as the run goes
        self.accounting = accounting

    @staticmethod
    def _proxy_set(proxies):
        from sip_dissect.accounting import ProxySet
        return ProxySet(list(proxies))

    def __enter__(self) -> "StoreRun":
        from contextlib import ExitStack

        from store.writer import open_store

        self._stack = ExitStack()
        try:
            self.acc_log = self._stack.enter_context(_acc_log(self.syslog))
            self.store = self._stack.enter_context(open_store(
                self.db_path, local_time=self.local_time, flavour=self.flavour.name,
                kind=self.kind, **self.store_options))
        except BaseException:
            self._stack.close()
            raise
        if self.notice is not None:
            for run in self.store.unclean_runs:
                self.notice(run["message"])
        self.sink = _acc_sink(self.store, self.flavour, self.acc_log)
        subscribers = [_cdr_writer(self.store, self.known, self.cdr_options)] \
            if self.flavour.writes_cdrs else []
        self.arguments = {"proxy_set": self.known, "subscribers": subscribers,
                          "carry": self.store if self.carry_calls else None,
                          "flavour": self.flavour, **self.accounting}
        return self

    def __exit__(self, *exc):
        if self.while_closing is not None:
            import threading
            threading.Thread(target=self.while_closing, daemon=True).start()
        return self._stack.__exit__(*exc)

    def summary(self, summary: dict) -> dict:
        """The run's summary with what the store inserted and ignored (after the exit)."""
        store, counts = self.store, {**self.store.counts(), **self.store.media_counts()}
        if store.unclean_runs:  # earlier runs killed or crashed: what they lost
            summary["unclean_runs"] = store.unclean_runs
        summary.update(db=self.db_path,
                       acc_inserted=counts["acc"] + counts.get("opensips_acc", 0),
                       missed_inserted=counts["missed_calls"]
                       + counts.get("opensips_missed_calls", 0),
                       duplicates=counts["duplicates"], cdrs_inserted=counts["acc_cdrs"],
                       cdrs_completed=counts["cdrs_completed"],
                       rtcp_reports_inserted=counts["rtcp_reports"],
                       call_quality_inserted=counts["call_quality"])
        if self.acc_log is not None:
            summary.update(syslog_lines=self.acc_log.lines, syslog_failed=self.acc_log.failed)
        return summary


def _acc_log(syslog):
    """An AccLog for these SyslogOptions (a context manager), or a null context for None."""
    if syslog is None:
        from contextlib import nullcontext
        return nullcontext()
    from store.acc_log import AccLog
    return AccLog(syslog)


def _acc_sink(store, flavour, acc_log):
    """The acc sink: the store's method for the flavour's records, and the ACC log line of the
    same record when asked. One accounting path: the log sees exactly the records the store
    gets, in the same order."""
    add = getattr(store, flavour.store_method)
    if acc_log is None:
        return add

    def both(rec):
        add(rec)
        acc_log(rec)
    return both


def _flavour(flavour):
    """The flavour policy (sip_dissect.flavour) of a name or a policy; None: Kamailio's."""
    from sip_dissect.flavour import FLAVOURS, KAMAILIO
    return FLAVOURS[flavour] if isinstance(flavour, str) else flavour or KAMAILIO


def _cdr_writer(store, proxies, cdr_options: dict | None):
    """The CDR subscriber: each ended call's CDR into the store."""
    from sip_dissect.cdr import CdrWriter

    def add_cdr(rec):
        try:
            store.add_cdr(rec)
        except Exception as exc:
            exc.from_sink = True  # the store's, as in account(): not a signalling bug
            raise
    return CdrWriter(add_cdr, proxies, **(cdr_options or {}))


def cdr_files(paths: list[str], opts: ProbeOptions | None = None, *,
              proxies: list[tuple[str, int | None]] = (), kamailio_exact: bool = False,
              **accounting) -> list:
    """Replay captures and return the dialog CDRs (sip_dissect.cdr.CdrRecord), in the order
    the calls ended. `kamailio_exact` leaves out calls still open at the end (and expired
    ones), as Kamailio writes no CDR for them."""
    from sip_dissect.accounting import ProxySet
    from sip_dissect.cdr import cdr_from_call

    known = ProxySet(list(proxies))  # learns the relaying proxies while the replay runs
    cdrs = []

    def on_call_end(call):
        cdr = cdr_from_call(call, known, kamailio_exact=kamailio_exact)
        if cdr is not None:
            cdrs.append(cdr)

    account_files(paths, lambda rec: None, opts, proxy_set=known, on_call_end=on_call_end,
                  **accounting)
    return cdrs
