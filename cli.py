"""sipprobe command line: option parsing and output formatting only; the work is in pipeline.py."""
from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, List, Optional

import typer

from cli_accounting import with_accounting

if __name__ == "__main__":  # `python -m cli`: run as the module `cli`, which cli_reports imports
    import cli
    sys.exit(cli.main())

app = typer.Typer(
    help="Passive VoIP accounting probe: SIP transactions, dialogs, acc rows and RTCP quality "
         "from a mirror port or from pcap/pcapng files.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"sipprobe {version('sipprobe')}")
        except PackageNotFoundError:
            typer.echo("sipprobe (not installed: running from a source tree)")
        raise typer.Exit()


def _config(ctx: typer.Context, path: Optional[str]) -> Optional[str]:
    """Options from a TOML file become the commands' defaults (click's default_map)."""
    if path:
        from cli_config import ConfigError, default_map

        try:
            ctx.default_map = {**(ctx.default_map or {}), **default_map(path, ctx.command)}
        except ConfigError as exc:
            typer.echo(f"sipprobe: {exc}", err=True)
            raise typer.Exit(2) from None
    return path


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")]
        = False,
        config: Annotated[Optional[str], typer.Option(
            "--config", metavar="FILE", envvar="SIPPROBE_CONFIG", callback=_config,
            is_eager=True, help="TOML file of option values, per command or for all "
                                "(docs/configuration.md); the command line wins. Also "
                                "$SIPPROBE_CONFIG.")] = None):
    """Passive VoIP accounting probe: SIP transactions, dialogs, acc rows and RTCP quality
    from a mirror port or from pcap/pcapng files.

    Example: sipprobe replay capture.pcap --db sipprobe.db && sipprobe report summary
    """


class Format(str, Enum):
    table = "table"
    json = "json"


EXIT_DAMAGED = 3  # a capture file was damaged: what could be read was processed


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"sipprobe: {message}", err=True)
    raise typer.Exit(code)


def _exit_if_damaged(result: dict) -> None:
    """After the output: one line per damaged file on stderr, and exit 3."""
    for line in result.get("damaged", ()):
        typer.echo(f"sipprobe: damaged capture: {line}", err=True)
    if result.get("damaged"):
        raise typer.Exit(EXIT_DAMAGED)


@contextmanager
def _errors_taught():
    """Errors the user can fix (a file, a filter, a database) become `sipprobe: why`, exit 2;
    a capture file that is damaged or no capture at all, exit 3."""
    from probe.sources import DamagedFile, SourceError
    from store import StoreError

    try:
        yield
    except DamagedFile as exc:
        _fail(f"damaged capture: {exc}", EXIT_DAMAGED)
    except (SourceError, StoreError) as exc:
        _fail(str(exc))
    except Exception as exc:
        if type(exc).__name__ in ("PcapError", "BPFError"):  # pcapy: bad filter or device
            _fail(str(exc))
        raise


@contextmanager
def quiet_pipe():
    """`sipprobe ... | head`: the reader left; stop writing and exit 0, no traceback (click
    would exit 1)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush goes nowhere
        raise typer.Exit(0)


def _emit(result: dict, fmt: "Format", printer: str) -> None:
    with quiet_pipe():
        if fmt is Format.json:
            typer.echo(json.dumps(result, indent=2))
        else:
            import report_format

            getattr(report_format, printer)(result)


def _printer_preload(fmt: "Format"):
    """What a run can import while its store closes, for the summary in `fmt`."""
    if fmt is Format.json:
        return None
    import report_format

    return report_format.preload


def _options(sip_port, bpf, no_bpf, dedup_window_ms):
    from pipeline import ProbeOptions

    if bpf and no_bpf:
        _fail("--bpf and --no-bpf exclude each other: give a filter or turn filtering off")
    return ProbeOptions(
        sip_ports=tuple(sip_port) if sip_port else ProbeOptions().sip_ports,
        bpf_filter="" if no_bpf else bpf,
        dedup_window=max(dedup_window_ms, 0.0) / 1000.0,
    )


SIP_PORT_HELP = "SIP port for UDP and TCP (repeatable). Default: 5060 and 5061."
BPF_HELP = ("Replace the built-in libpcap filter (see `sipprobe filter`). "
            "Frames it rejects never reach the decoder.")
NO_BPF_HELP = "Read every frame (slow on RTP-heavy captures; frame numbers then match Wireshark's)."
DEDUP_HELP = "Window in ms within which a repeated IP packet is a SPAN duplicate; 0 disables."


@app.command()
def stats(
    captures: List[str] = typer.Argument(None, metavar="CAPTURE...",
                                         help="pcap/pcapng files (gzip allowed) or directories."),
    interface: Optional[str] = typer.Option(None, "--interface", "-i", metavar="NAME",
                                            help="Capture live from this interface instead."),
    duration: Optional[float] = typer.Option(None, metavar="SECONDS",
                                             help="Live: stop after this long (default: Ctrl-C)."),
    promisc: bool = typer.Option(True, help="Live: put the interface in promiscuous mode."),
    buffer_mb: int = typer.Option(32, metavar="MIB", help="Live: kernel capture buffer."),
    sip_port: List[int] = typer.Option(None, "--sip-port", metavar="PORT", help=SIP_PORT_HELP),
    bpf: Optional[str] = typer.Option(None, metavar="EXPR", help=BPF_HELP),
    no_bpf: bool = typer.Option(False, "--no-bpf", help=NO_BPF_HELP),
    dedup_window_ms: float = typer.Option(10.0, "--dedup-window", metavar="MS", help=DEDUP_HELP),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
):
    """Count what a capture holds: SIP requests by method, responses by code, retransmissions,
    transports, RTCP packets by type, encapsulations and every skip counter.

    Example: sipprobe stats pcaps/lab-basic-call/capture.pcap --format json
    """
    opts = _options(sip_port, bpf, no_bpf, dedup_window_ms)
    if bool(captures) == bool(interface):
        _fail("give capture files or --interface NAME (one of the two)")
    with _errors_taught():
        if interface:
            result = _live_stats(interface, opts, duration, promisc, buffer_mb)
        else:
            from pipeline import stats_files

            result = stats_files(captures, opts)
    _emit(result, fmt, "print_stats")
    _exit_if_damaged(result)


def _live_stats(interface, opts, duration, promisc, buffer_mb):
    from pipeline import stats_live

    result = stats_live(interface, opts, _stop_condition(duration), promisc=promisc,
                        buffer_mb=buffer_mb)
    _echo_kernel(result)
    return result


@app.command("filter")
def filter_cmd(
    sip_port: List[int] = typer.Option(None, "--sip-port", metavar="PORT", help=SIP_PORT_HELP),
    vlan: bool = typer.Option(True, help="Also match behind one or two VLAN tags (Ethernet only)."),
):
    """Print the built-in BPF filter, for tcpdump or a capture appliance.

    Example: tcpdump -i eth1 -w sip.pcap "$(sipprobe filter)"
    """
    from probe.bpf import DEFAULT_SIP_PORTS, default_filter

    typer.echo(default_filter(tuple(sip_port) if sip_port else DEFAULT_SIP_PORTS, vlan=vlan))


class MosModel(str, Enum):
    g107 = "g107"
    simplified = "simplified"
    rtpengine = "rtpengine"


@app.command("mos")
def mos_cmd(
    delay_ms: float = typer.Option(
        0.0, "--delay-ms", metavar="MS",
        help="One-way mouth-to-ear delay Ta in ms: network one way plus jitter buffer plus the "
             "codec's packet and look-ahead (G.729 adds 20 + 5, G.711 20)."),
    loss_pct: float = typer.Option(0.0, "--loss-pct", metavar="PCT",
                                   help="Packets lost or discarded late, percent (0-100)."),
    burst_ratio: float = typer.Option(
        1.0, "--burst-ratio", metavar="B",
        help="G.107 BurstR: mean length of loss bursts over that of random loss; 1 = random."),
    codec: Optional[str] = typer.Option(
        None, "--codec", metavar="NAME",
        help="SDP encoding name (PCMU, PCMA, G729, G723, GSM-EFR...): its G.113 Ie and Bpl. "
             "Codecs G.113 gives no pair for (AMR, G722, opus...) use G.711 with PLC's, and say "
             "so. Default: PCMU."),
    ie: Optional[float] = typer.Option(None, "--ie", metavar="X",
                                       help="Equipment impairment Ie (with --bpl)."),
    bpl: Optional[float] = typer.Option(None, "--bpl", metavar="Y",
                                        help="Packet-loss robustness Bpl (with --ie)."),
    model: MosModel = typer.Option(
        MosModel.g107, "--model",
        help="g107: the full E-model (G.107 06/2015, Table 3 defaults); simplified: Cole and "
             "Rosenbluth's reduction (G.711 or G729 only); rtpengine: the MOS rtpengine puts "
             "in its call stats, from --rtt-ms, --jitter-ms and the loss."),
    rtt_ms: Optional[float] = typer.Option(
        None, "--rtt-ms", metavar="MS",
        help="rtpengine: end-to-end round trip from RTCP, ms (default 2 x --delay-ms); "
             "rtpengine gives no MOS without one."),
    jitter_ms: float = typer.Option(0.0, "--jitter-ms", metavar="MS",
                                    help="rtpengine: RTCP interarrival jitter, ms."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
):
    """Compute R and MOS for a delay, a loss rate and a codec, with the impairments behind them
    (docs/quality.md explains the models). Out-of-range inputs are clamped, never refused.

    Example: sipprobe mos --delay-ms 150 --loss-pct 2 --codec G729 --format json
    """
    from rtcp_mos import emodel

    if (ie is None) != (bpl is None):
        _fail("give --ie and --bpl together (Bpl is the codec's loss robustness, G.113 Table I.3)")
    if codec and ie is not None:
        _fail("give --codec or --ie/--bpl, not both")
    if model is not MosModel.g107 and ie is not None:
        _fail("--ie/--bpl apply to --model g107 only")
    inputs = {"delay_ms": delay_ms, "loss_pct": loss_pct}
    if model is MosModel.rtpengine:
        from rtcp_mos.rtpengine_mos import rtpengine_mos

        rtt = 2 * delay_ms if rtt_ms is None else rtt_ms
        rtt_us, jitter, loss = (int(max(v, 0.0)) for v in (rtt * 1000, jitter_ms, loss_pct))
        value = rtpengine_mos(rtt_us, jitter, loss)
        result = {"model": "rtpengine", "R": None, "MOS": value,
                  "inputs": {"rtt_us": rtt_us, "jitter_ms": jitter, "packetloss_pct": loss},
                  "note": "rtpengine's default formula (ssrc.c mos_calc_nb), whole ms and percent"
                          + ("; no MOS without an RTT" if value is None else "")}
    elif model is MosModel.simplified:
        fit = {"PCMU": "G.711", "PCMA": "G.711", "G729": "G.729A"}.get((codec or "PCMU").upper())
        if fit is None:
            _fail("--model simplified knows G.711 (PCMU, PCMA) and G729 only")
        s = emodel.simplified(delay_ms, loss_pct, fit)
        result = {"model": "simplified", "R": s.R, "MOS": s.MOS, "inputs": inputs,
                  "impairments": {"Id": s.Id, "Ie_eff": s.Ie_eff}, "codec": {"name": fit}}
    else:
        c = emodel.codec_impairment(codec or "PCMU") if ie is None else None
        e = emodel.g107(delay_ms, loss_pct, burst_ratio, c.ie if c else ie, c.bpl if c else bpl)
        result = {"model": "g107", "R": e.R, "MOS": e.MOS,
                  "inputs": {"Ta": e.Ta, "Ppl": e.Ppl, "BurstR": e.BurstR, "Ie": e.Ie,
                             "Bpl": e.Bpl},
                  "impairments": {k: getattr(e, k) for k in
                                  ("Ro", "Is", "Id", "Idte", "Idle", "Idd", "Ie_eff", "A")},
                  "codec": c._asdict() if c else {"name": "given --ie/--bpl"}}
    if fmt is Format.json:
        typer.echo(json.dumps(result, indent=2))
        return
    lines = [(k, result[k]) for k in ("model", "R", "MOS")]
    for group in ("inputs", "impairments"):
        lines += result.get(group, {}).items()
    codec_info = result.get("codec", {})
    lines += [(f"codec {k}", codec_info[k]) for k in ("name", "source") if k in codec_info]
    for key, value in lines:
        text = "-" if value is None else f"{value:.3f}" if isinstance(value, float) else value
        typer.echo(f"{key:<16} {text}")
    if "note" in result:
        typer.echo(result["note"])


# the store options of replay and sniff
WRITE_DB = typer.Option("sipprobe.db", "--db", metavar="FILE|URL",
                        help="SQLite database to write (created if absent), or a PostgreSQL "
                             "database: postgresql://USER@HOST/DB (docs/postgresql.md).")
PROBE_NAME = typer.Option(
    None, "--probe-name", metavar="NAME",
    help="PostgreSQL: the name the rows' probe column carries (default: the host name).")


def _store_options(db: str, probe_name: str | None) -> dict:
    """open_store's options: a probe name only means something to a PostgreSQL store."""
    return {"probe": probe_name} if probe_name is not None else {}


@app.command()
@with_accounting
def replay(
    captures: List[str] = typer.Argument(..., metavar="CAPTURE...",
                                         help="pcap/pcapng files (gzip allowed) or directories."),
    db: str = WRITE_DB,
    probe_name: Optional[str] = PROBE_NAME,
    sip_port: List[int] = typer.Option(None, "--sip-port", metavar="PORT", help=SIP_PORT_HELP),
    bpf: Optional[str] = typer.Option(None, metavar="EXPR", help=BPF_HELP),
    no_bpf: bool = typer.Option(False, "--no-bpf", help=NO_BPF_HELP),
    dedup_window_ms: float = typer.Option(10.0, "--dedup-window", metavar="MS", help=DEDUP_HELP),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Summary format."),
    accounting: dict = None,
):
    """Account captures into SQLite: acc and missed_calls rows as the proxy's acc module writes
    them, one per transaction it relayed, and one acc_cdrs row per call, a call counted once
    although the mirror sees both of its legs; RTCP reports bound to their calls
    (rtcp_reports) and each call's voice quality per side (call_quality). Replaying the same capture again adds no rows;
    a call left open by one replay is completed by a later one that sees its end.

    Example: sipprobe replay pcaps/lab-basic-call/capture.pcap --db sipprobe.db --proxy 127.0.0.1:5060
    """
    from pipeline import replay_files

    opts = _options(sip_port, bpf, no_bpf, dedup_window_ms)
    with _errors_taught(), _progress() as progress:
        summary = replay_files(captures, db, opts, progress=progress,
                               store_options=_store_options(db, probe_name), notice=_notice,
                               while_closing=_printer_preload(fmt), **accounting)
    _emit(summary, fmt, "print_replay")
    _exit_if_damaged(summary)


@app.command()
@with_accounting
def sniff(
    interface: str = typer.Option(..., "--interface", "-i", metavar="NAME",
                                  help="Interface on the mirror (SPAN) port."),
    db: str = WRITE_DB,
    probe_name: Optional[str] = PROBE_NAME,
    duration: Optional[float] = typer.Option(None, metavar="SECONDS",
                                             help="Stop after this long (default: Ctrl-C)."),
    promisc: bool = typer.Option(True, help="Put the interface in promiscuous mode."),
    buffer_mb: int = typer.Option(32, metavar="MIB", help="Kernel capture buffer."),
    sip_port: List[int] = typer.Option(None, "--sip-port", metavar="PORT", help=SIP_PORT_HELP),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Summary format."),
    status_every: Optional[float] = typer.Option(
        None, "--status-every", metavar="SECONDS", min=0.1,
        help="Status line period (default 1 s on a terminal, 60 s otherwise)."),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", metavar="PORT", min=1, max=65535,
        help="Serve Prometheus metrics on http://HOST:PORT/metrics (all addresses): packets, "
             "SIP messages, calls, answered, failures by code, MOS histogram, kernel drops, "
             "rows written, skip counters. Needs pip install 'sipprobe[metrics]'."),
    accounting: dict = None,
):
    """Account live traffic into SQLite, as `replay` does for files and with the same
    accounting options: rows are committed at least every second. Says at once what it
    listens on and with which filter; then, on a terminal, a status line redrawn every second
    (packets/s, SIP messages/s, calls open, rows written, kernel drops, worst MOS of the last
    minute), otherwise that line once a minute.
    Ctrl-C, SIGTERM or --duration end the run: calls still open are written as open CDRs and
    the summary is printed with the kernel's received and dropped counters. Running with
    CAP_NET_RAW only, as a systemd service: docs/operations.md.

    Example: sipprobe sniff -i eth1 --db /var/lib/sipprobe/acc.db --proxy 192.0.2.10
    """
    from console.live import LiveStatus
    from pipeline import sniff_interface
    from probe.live_errors import check_capture, link_warning

    opts = _options(sip_port, None, False, 10.0)

    with _errors_taught():
        check_capture(interface)  # no interface, no permission, link down: before the db
    warning = link_warning(interface)
    if warning:
        typer.echo(f"sipprobe: {warning}", err=True)
    metrics = _metrics(metrics_port)
    status = LiveStatus(db, sip_ports=opts.sip_ports, interval=status_every, metrics=metrics)
    try:
        with _errors_taught():
            summary = sniff_interface(interface, db, opts, stop=_stop_condition(duration),
                                      promisc=promisc, buffer_mb=buffer_mb, monitor=status,
                                      store_options=_store_options(db, probe_name),
                                      on_call_end=status.call_ended, notice=_notice,
                                      while_closing=_printer_preload(fmt), **accounting)
    finally:
        status.finish()
        if metrics is not None:
            metrics.stop()
    _echo_kernel(summary)
    _emit(summary, fmt, "print_replay")
    _exit_if_damaged(summary)


def _metrics(port: int | None):
    """The Prometheus endpoint, serving before capture starts, or None without --metrics-port."""
    if port is None:
        return None
    from console.metrics import Metrics, MetricsUnavailable

    metrics = Metrics(port)
    try:
        metrics.start()
    except MetricsUnavailable as exc:
        _fail(str(exc))
    return metrics


def _notice(line: str) -> None:
    """An earlier run's unclean end (store/runs.py), on stderr as the run starts."""
    typer.echo(f"sipprobe: {line}", err=True)


def _echo_kernel(result: dict) -> None:
    """A live run's kernel counters on stderr, whatever the output format."""
    cap = result.get("capture", {})
    typer.echo(f"kernel: {cap.get('kernel_received')} received, {cap.get('kernel_dropped')} "
               f"dropped, {cap.get('interface_dropped')} dropped by the interface", err=True)


def _stop_condition(duration):
    """A stop() for live capture: SIGINT/SIGTERM or `duration` seconds, whichever first."""
    stopping = {"flag": False}

    def on_signal(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    deadline = time.monotonic() + duration if duration else None
    return lambda: stopping["flag"] or (deadline is not None and time.monotonic() >= deadline)


class _progress:
    """A frame counter on stderr while a long replay runs (only on a terminal)."""

    def __enter__(self):
        self._bar = None
        if not sys.stderr.isatty():
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                             TimeElapsedColumn(), transient=True, console=_stderr_console())
        self._bar.start()
        task = self._bar.add_task("replaying")
        return lambda frames: self._bar.update(task, description=f"{frames:,} frames")

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


report_app = typer.Typer(
    help="Show the rows a replay or live run stored, with Kamailio's column names, and the "
         "figures, call lists and charts drawn from them.\n\n"
         "Example: sipprobe report acc --db sipprobe.db --format csv",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(report_app, name="report")




def main() -> None:
    """The `sipprobe` command: any error the commands did not explain is still one line on
    stderr and exit 1 (SIPPROBE_DEBUG=1 shows the traceback)."""
    import os

    try:
        app()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SIPPROBE_DEBUG"):
            raise
        typer.echo(f"sipprobe: {type(exc).__name__}: {exc} (a bug: SIPPROBE_DEBUG=1 shows "
                   "where)", err=True)
        sys.exit(1)


# the report commands (acc, missed, cdrs, calls, summary, chart, quality), registered on
# report_app; last, since cli_reports imports the names above from this module
import cli_reports  # noqa: E402,F401

# diff and extract, registered on app
import cli_tools  # noqa: E402,F401
