"""sipprobe command line: option parsing and output formatting only; the work is in pipeline.py."""
from __future__ import annotations

import json
import signal
import sys
import time
from enum import Enum
from typing import List, Optional

import typer

app = typer.Typer(
    help="Passive VoIP accounting probe: SIP transactions, dialogs, acc rows and RTCP quality "
         "from a mirror port or from pcap/pcapng files.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


class Format(str, Enum):
    table = "table"
    json = "json"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"sipprobe: {message}", err=True)
    raise typer.Exit(code)


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
    from probe.sources import SourceError

    opts = _options(sip_port, bpf, no_bpf, dedup_window_ms)
    if bool(captures) == bool(interface):
        _fail("give capture files or --interface NAME (one of the two)")
    try:
        if interface:
            result = _live_stats(interface, opts, duration, promisc, buffer_mb)
        else:
            from pipeline import stats_files

            result = stats_files(captures, opts)
    except SourceError as exc:
        _fail(str(exc))
    except Exception as exc:  # pcapy raises on bad filters and devices
        if type(exc).__name__ in ("PcapError", "BPFError"):
            _fail(str(exc))
        raise
    if fmt is Format.json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from report_format import print_stats

        print_stats(result)


def _live_stats(interface, opts, duration, promisc, buffer_mb):
    from pipeline import stats_live

    stopping = {"flag": False}

    def on_signal(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    deadline = time.monotonic() + duration if duration else None

    def stop():
        return stopping["flag"] or (deadline is not None and time.monotonic() >= deadline)

    result = stats_live(interface, opts, stop, promisc=promisc, buffer_mb=buffer_mb)
    cap = result.get("capture", {})
    typer.echo(f"kernel: {cap.get('kernel_received')} received, {cap.get('kernel_dropped')} dropped, "
               f"{cap.get('interface_dropped')} dropped by the interface", err=True)
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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
