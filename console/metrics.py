"""`sipprobe sniff --metrics-port`: the live run's figures for Prometheus, over HTTP
(prometheus_client, the optional `metrics` extra).

Nothing here runs per packet. The main thread copies what the layers already count (frames,
SIP messages, call totals, the `layer.reason` counters, rows the store wrote, the kernel's
counters) into a snapshot at most every SNAPSHOT_EVERY seconds, from the tick that runs after
each batch (console/live.py); a call's end adds its failure code and a call_quality record its
MOS. The HTTP thread only reads the last snapshot: the layers, the store's pipe and libpcap
(whose stats call is not thread-safe) are never touched from it.

Names follow Prometheus' conventions (https://prometheus.io/docs/practices/naming/): a
`sipprobe_` prefix, `_total` on counters, units in the name. Counters start at zero with each
run, as Prometheus expects of a restarted process.
"""
from __future__ import annotations

import time

from store.tables import CANCELLED, REJECTED

SNAPSHOT_EVERY = 0.5  # seconds between copies of the live counts (Prometheus scrapes every 15 s)
# G.107 MOS bounds: 4.34 is G.711's best with its defaults, 3.6 where many users are
# dissatisfied (G.107 Annex B), 3.1 where nearly all are
MOS_BUCKETS = (1.0, 2.0, 2.6, 3.1, 3.6, 4.0, 4.3, 4.5)
ROW_TABLES = ("acc", "missed_calls", "acc_cdrs", "rtcp_reports", "call_quality")


class MetricsUnavailable(Exception):
    """prometheus_client is not installed, or the port cannot be bound; the message says how
    to fix it."""


class Metrics:
    """The figures of one live run, served on `port` once start() is called."""

    def __init__(self, port: int, addr: str = "0.0.0.0"):
        self.port, self.addr = port, addr
        self.sig = self.capture = self.store = None
        self.failed_by_code: dict[str, int] = {}
        self.mos_buckets = [0] * (len(MOS_BUCKETS) + 1)  # the last: above every bound (+Inf)
        self.mos_sum = 0.0
        self.snapshot: dict = {}
        self._next = 0.0
        self.server = None

    def start(self) -> None:
        """Serve /metrics from a daemon thread; MetricsUnavailable when it cannot."""
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise MetricsUnavailable("--metrics-port needs prometheus-client: pip install "
                                     "'sipprobe[metrics]'") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        try:
            self.server, _ = start_http_server(self.port, self.addr, registry=registry)
        except OSError as exc:
            raise MetricsUnavailable(f"cannot serve metrics on port {self.port}: "
                                     f"{exc.strerror or exc}") from None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- fed by console/live.py, in the capture's thread -----------------------------------------

    def attach(self, signalling, capture, store) -> None:
        self.sig, self.capture, self.store = signalling, capture, store

    def call_ended(self, call) -> None:
        """A failed call (the dialog layer's `failed` total: rejected or cancelled, RFC 3261
        section 13.2.2.3) counted under its final code."""
        if call.end_reason in (REJECTED, CANCELLED) and call.final_code is not None:
            code = str(call.final_code)
            self.failed_by_code[code] = self.failed_by_code.get(code, 0) + 1

    def quality(self, rec) -> None:
        """A call_quality record: its side's average G.107 MOS into the histogram."""
        mos = getattr(rec, "mos_avg", None)
        if mos is None:
            return
        i = 0
        while i < len(MOS_BUCKETS) and mos > MOS_BUCKETS[i]:
            i += 1
        self.mos_buckets[i] += 1
        self.mos_sum += mos

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if (now < self._next and not force) or self.sig is None:
            return
        self._next = now + SNAPSHOT_EVERY
        self.snapshot = self.take()

    def take(self) -> dict:
        """Copies of the live counts (the collector reads only this)."""
        sig, capture = self.sig, self.capture
        kernel = capture.kernel_now() or (capture.kernel_received, capture.kernel_dropped,
                                           capture.interface_dropped)
        rows = {**self.store.counts(), **self.store.media_counts()}
        return {"frames": capture.frames, "sip_messages": sig.messages,
                "totals": dict(sig.dialogs.totals), "calls_open": len(sig.dialogs.calls),
                "counters": {k: v for k, v in sig.c.items() if v},
                "rows": {t: rows.get(t, 0) for t in ROW_TABLES},
                "kernel": kernel, "failed_by_code": dict(self.failed_by_code),
                "mos": (list(self.mos_buckets), self.mos_sum)}


class _Collector:
    """Reads Metrics.snapshot at each scrape (prometheus_client's custom collector)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)

        s = self.metrics.snapshot
        if not s:
            return
        totals = s["totals"]

        def counter(name, doc, value):
            return CounterMetricFamily(f"sipprobe_{name}", doc, value=value)

        yield counter("packets", "Frames captured that passed the filter.", s["frames"])
        yield counter("sip_messages", "SIP messages read (malformed ones are counted apart, "
                                      "in sipprobe_input_events_total).", s["sip_messages"])
        yield counter("calls", "Calls: initial INVITEs accounted (a challenge's retry is the "
                               "same call).", totals["calls"])
        yield counter("calls_answered", "Calls answered with a 2xx.", totals["answered"])
        failed = CounterMetricFamily("sipprobe_calls_failed", "Calls that failed, by final "
                                     "response code (408: the proxy's timer).", labels=["code"])
        for code, n in sorted(s["failed_by_code"].items()):
            failed.add_metric([code], n)
        yield failed
        yield GaugeMetricFamily("sipprobe_calls_open", "Calls going on now.",
                                value=s["calls_open"])
        buckets, total = s["mos"]
        cumulative, running = [], 0
        for bound, n in zip((*map(str, MOS_BUCKETS), "+Inf"), buckets):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "sipprobe_call_mos", "Average G.107 MOS of each call side, as call_quality writes "
            "it (mos_avg), at the call's quality row.", buckets=cumulative, sum_value=total)
        received, dropped, if_dropped = s["kernel"]
        for name, doc, value in (
                ("kernel_received", "Packets the kernel passed to the capture socket.",
                 received),
                ("kernel_dropped", "Packets the kernel dropped: the capture buffer was full "
                                   "(--buffer-mb).", dropped),
                ("interface_dropped", "Packets the interface or its driver dropped.",
                 if_dropped)):
            if value is not None:
                yield counter(name, doc, value)
        rows = CounterMetricFamily("sipprobe_rows_written", "Rows the store inserted, by "
                                   "table.", labels=["table"])
        for table, n in s["rows"].items():
            rows.add_metric([table], n)
        yield rows
        events = CounterMetricFamily(
            "sipprobe_input_events", "sipprobe's named counters (docs/counters.md) by "
            "layer.reason: malformed or skipped input (decode.*, sip.*, rtcp.bad_*), state "
            "caps and timers (state.*).", labels=["reason"])
        for reason, n in sorted(s["counters"].items()):
            events.add_metric([reason], n)
        yield events
