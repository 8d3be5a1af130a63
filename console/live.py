"""`sipprobe sniff`'s live status on stderr: what it listens on as soon as capture starts, then
packets/s, SIP messages/s, calls open, rows written, kernel drops and the worst MOS of the last
minute, redrawn in place about once a second on a terminal, or one plain line a minute when
stderr is a file or a journal (systemd). With --metrics-port it also feeds console/metrics.py
from the same places: the batch tick, the voice quality records and the calls' ends."""
from __future__ import annotations

import sys
import time
from collections import deque
from datetime import datetime, timezone

WINDOW = 60.0  # seconds of packet time the worst MOS looks back


# the link types a SIP mirror port shows (tcpdump's names)
LINK_NAMES = {0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 101: "raw IP", 113: "Linux cooked",
              276: "Linux cooked v2"}


def link_name(linktype: int) -> str:
    return LINK_NAMES.get(linktype, f"linktype {linktype}")


class LiveStatus:
    def __init__(self, db: str, *, out=None, tty: bool | None = None,
                 interval: float | None = None, sip_ports=(5060, 5061), metrics=None):
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.interval = interval or (1.0 if self.tty else 60.0)
        self.db = db
        self.sip_ports = tuple(sip_ports)
        self.sig = self.capture = self.store = None
        self.mos: deque = deque()  # (packet time, MOS) of recent report blocks
        self.last = None  # (monotonic, frames, SIP messages) at the last line
        self.drawn = False
        self.metrics = metrics  # console.metrics.Metrics, or None

    def started(self, interface: str, linktype: int, filter_text: str | None) -> None:
        if filter_text and len(filter_text) > 120:  # the built-in BPF runs to kilobytes
            ports = " ".join(f"--sip-port {p}" for p in self.sip_ports)
            filter_text = (f"built-in, SIP on ports {', '.join(map(str, self.sip_ports))} or "
                           "by its first bytes on any port, RTCP, tunnels and fragments "
                           f"({len(filter_text)} characters of BPF: sipprobe filter {ports})")
        self.out.write(f"sipprobe: listening on {interface} ({link_name(linktype)}), filter: "
                       f"{filter_text or 'none (every packet)'}; writing {self.db}; "
                       "Ctrl-C or SIGTERM stops\n")
        self.out.flush()
        self.last = (time.monotonic(), 0, 0)

    def attach(self, signalling, capture) -> None:
        self.sig, self.capture = signalling, capture
        if self.metrics is not None:
            self.metrics.attach(signalling, capture, self.store)

    def call_ended(self, call) -> None:
        """account()'s on_call_end: once per call, never per packet."""
        if self.metrics is not None:
            self.metrics.call_ended(call)

    def wrap(self, store, tick, media_sink):
        """The tick and the media sink to hand the pipeline: the store's, seen on the way."""
        self.store = store

        metrics = self.metrics

        def seen(rec):
            mos = getattr(rec, "mos", None)
            if mos is not None and hasattr(rec, "time_epoch"):
                self.mos.append((rec.time_epoch, mos))
            elif metrics is not None and hasattr(rec, "mos_avg"):  # a call_quality record
                metrics.quality(rec)
            media_sink(rec)

        def ticked():
            tick()
            self.tick()
            if metrics is not None:
                metrics.tick()
        return ticked, seen

    def worst_mos(self):
        if not self.mos:
            return None
        newest = max(t for t, _ in self.mos)
        while self.mos and self.mos[0][0] < newest - WINDOW:
            self.mos.popleft()
        return min(m for _, m in self.mos)

    def line(self, now: float) -> str:
        then, frames0, sip0 = self.last
        dt = max(now - then, 1e-6)
        frames, sip = self.capture.frames, self.sig.messages
        rows = sum(v for k, v in self.store.counts().items()
                   if k in ("acc", "missed_calls", "acc_cdrs"))
        kernel = self.capture.kernel_now()
        drops = "-" if kernel is None else str(kernel[1] + kernel[2])
        worst = self.worst_mos()
        self.last = (now, frames, sip)
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
        return (f"{stamp}  packets/s {(frames - frames0) / dt:.0f}  SIP msg/s "
                f"{(sip - sip0) / dt:.1f}  calls open {len(self.sig.dialogs.calls)}  "
                f"rows {rows}  kernel drops {drops}  worst MOS (1 min) "
                f"{'-' if worst is None else f'{worst:.2f}'}")

    def tick(self) -> None:
        if self.last is None or self.sig is None or self.store is None:
            return
        now = time.monotonic()
        if now - self.last[0] < self.interval:
            return
        text = self.line(now)
        if self.tty:
            self.out.write("\r" + text + "\x1b[K")
            self.drawn = True
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.metrics is not None:  # the final figures, while the process still serves them
            self.metrics.tick(force=True)
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
