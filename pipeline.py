"""Wires the layers: sources -> decode -> SIP / RTCP classification -> results.

No CLI code here, so a replay runs from tests or other programs the same way as from `sipprobe`.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from probe import bpf
from probe.counters import Counters
from probe.decode import Decoder
from probe.records import Datagram
from probe.sources import CaptureStats, FilterSet, read_files, read_live
from rtcp_mos.rtcp import PACKET_TYPES, looks_like_rtcp, walk
from sip_dissect.framing import frame_sip_stream
from sip_dissect.message import ParseError, parse

RETRANSMIT_HORIZON = 32.0  # 64*T1 (RFC 3261 section 17.1.1.2): no retransmission comes later


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
        return FilterSet(build)


class InternalError(Exception):
    """Raised in strict mode when a stage fails on a frame instead of counting it."""


def datagrams(frames, opts: ProbeOptions, counters: Counters) -> Iterator[Datagram]:
    """Decoded datagrams of `frames`; a frame that breaks a decoder is counted and skipped."""
    decoder = Decoder(counters, frame_sip_stream, tcp_ports=frozenset(opts.sip_ports),
                      dedup_window=opts.dedup_window)
    decode = decoder.decode
    for frame in frames:
        try:
            out = decode(frame)
        except Exception as exc:
            if opts.strict:
                raise InternalError(f"frame {frame.frame}: {exc!r}") from exc
            counters["internal.decode_error"] += 1
            continue
        yield from out
    decoder.flush()


class StatsCollector:
    """What `sipprobe stats` reports: SIP and RTCP counts, encapsulations, every counter."""

    def __init__(self, opts: ProbeOptions, counters: Counters):
        self.opts = opts
        self.counters = counters
        self.sip_ports = frozenset(opts.sip_ports)
        self.requests: Counter = Counter()
        self.responses: Counter = Counter()
        self.transport: Counter = Counter()
        self.rtcp_packets: Counter = Counter()
        self.rtcp_datagrams = 0
        self.encapsulations: Counter = Counter()
        self.retransmissions = 0
        self._recent: dict[tuple, float] = {}

    def add(self, d: Datagram) -> None:
        if d.vlan:
            self.encapsulations["vlan" if len(d.vlan) == 1 else "qinq"] += 1
        for t in d.tunnel:
            self.encapsulations[t] += 1
        if d.transport == "tcp" or d.sport in self.sip_ports or d.dport in self.sip_ports \
                or d.payload[:4] in bpf.SIP_PREFIXES:
            self._sip(d)
        elif looks_like_rtcp(d.payload):
            self._rtcp(d)
        else:
            self.counters["classify.not_sip_or_rtcp"] += 1

    def _sip(self, d: Datagram) -> None:
        c = self.counters
        if not d.payload.strip(b" \t\r\n\x00"):
            c["sip.keepalive"] += 1  # NAT keep-alives: CRLF (RFC 5626), spaces, NULs
            return
        msg = parse(d.payload)
        if isinstance(msg, ParseError):
            c[msg.reason] += 1
            return
        for a in msg.anomalies:
            c[a] += 1
        self.transport[d.transport] += 1
        if msg.method is not None:
            self.requests[msg.method] += 1
            kind = msg.method
        else:
            self.responses[f"{msg.status:03d}"] += 1
            kind = msg.status
        key = (d.src, d.sport, d.dst, d.dport, msg.call_id, msg.header("cseq"), msg.branch, kind)
        self._note_retransmission(key, d.ts)

    def _note_retransmission(self, key: tuple, ts: float) -> None:
        recent = self._recent
        if len(recent) > 50000:  # keep memory flat: forget what is past the horizon
            self._recent = recent = {k: t for k, t in recent.items() if ts - t <= RETRANSMIT_HORIZON}
        last = recent.get(key)
        if last is not None and ts - last <= RETRANSMIT_HORIZON:
            self.retransmissions += 1
        recent[key] = ts

    def _rtcp(self, d: Datagram) -> None:
        compound = walk(d.payload)
        self.rtcp_datagrams += 1
        for p in compound.packets:
            self.rtcp_packets[PACKET_TYPES[p.packet_type]] += 1
        for a in compound.anomalies:
            self.counters[a] += 1

    def result(self, capture: CaptureStats) -> dict:
        out = {
            "files": capture.files,
            "frames_matched": capture.frames,
            "filter": "off" if self.opts.bpf_filter == "" else
                      ("custom" if self.opts.bpf_filter else "default"),
            "sip": {
                "messages": sum(self.requests.values()) + sum(self.responses.values()),
                "requests": dict(self.requests.most_common()),
                "responses": dict(sorted(self.responses.items())),
                "retransmissions": self.retransmissions,
                "transport": dict(sorted(self.transport.items())),
            },
            "rtcp": {"datagrams": self.rtcp_datagrams,
                     "packets": dict(sorted(self.rtcp_packets.items()))},
            "encapsulations": dict(sorted(self.encapsulations.items())),
            "counters": {k: v for k, v in sorted(self.counters.items()) if v},
        }
        if capture.kernel_received is not None:
            out["capture"] = {"kernel_received": capture.kernel_received,
                              "kernel_dropped": capture.kernel_dropped,
                              "interface_dropped": capture.interface_dropped}
        return out


def stats_files(paths: list[str], opts: ProbeOptions | None = None) -> dict:
    """`sipprobe stats` on capture files, as a plain dict."""
    opts = opts or ProbeOptions()
    counters, capture = Counters(), CaptureStats()
    collector = StatsCollector(opts, counters)
    for d in datagrams(read_files(paths, opts.filters(), capture), opts, counters):
        collector.add(d)
    return collector.result(capture)


def stats_live(interface: str, opts: ProbeOptions, stop, **live) -> dict:
    """`sipprobe stats --interface`: until `stop()` is true, then kernel counters included."""
    counters, capture = Counters(), CaptureStats()
    collector = StatsCollector(opts, counters)
    frames = read_live(interface, opts.filters(), capture, stop=stop, **live)
    try:
        for d in datagrams(frames, opts, counters):
            collector.add(d)
    except KeyboardInterrupt:
        pass
    finally:
        frames.close()
    return collector.result(capture)
