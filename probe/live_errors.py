"""Why a live capture could not start, one line each, from libpcap's pcap_activate() status
(pcap/pcap.h PCAP_ERROR_*; pcapy returns it instead of raising) and the kernel's
/sys/class/net/IF/operstate (Documentation/ABI/testing/sysfs-class-net)."""
from __future__ import annotations

import os

NO_SUCH_DEVICE, PERM_DENIED, IFACE_NOT_UP = -5, -8, -9
PROMISC_PERM_DENIED, CAPTURE_NOTSUP = -11, -13


def interfaces() -> list[str]:
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def operstate(interface: str) -> str | None:
    """'up', 'down', 'lowerlayerdown', 'unknown' (loopback, tunnels...), or None (no such
    interface in this network namespace)."""
    try:
        with open(f"/sys/class/net/{interface}/operstate") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def activation_error(interface: str, code: int) -> str:
    """The one-line message for pcap_activate()'s negative `code` on `interface`."""
    # without permission libpcap fails before it looks the device up: name a missing one first
    if code == NO_SUCH_DEVICE or (code == PERM_DENIED and interface != "any"
                                  and operstate(interface) is None):
        known = ", ".join(interfaces()) or "none visible"
        return f"no interface named {interface!r} (interfaces here: {known})"
    if code in (PERM_DENIED, PROMISC_PERM_DENIED):
        return (f"no permission to capture on {interface}: run as root, or give the Python "
                "interpreter CAP_NET_RAW (setcap cap_net_raw,cap_net_admin=eip; "
                "docs/operations.md)")
    if code == IFACE_NOT_UP:
        return (f"interface {interface} is down: bring it up (ip link set {interface} up) "
                "and check the mirror port's cable")
    if code == CAPTURE_NOTSUP:
        return f"interface {interface} does not support packet capture"
    return f"cannot capture on {interface}: libpcap status {code}"


def link_warning(interface: str) -> str | None:
    """A warning for an interface that is administratively up but has no carrier: capture
    starts, yet nothing arrives until the link comes up."""
    state = operstate(interface)
    if state in ("down", "lowerlayerdown", "dormant"):
        return f"warning: {interface} has no link (operstate {state}): no traffic until it comes up"
    return None


def check_capture(interface: str) -> None:
    """Open and close `interface` as a capture would, raising SourceError with the one-line
    reason if it cannot be captured on: before a database is created for nothing."""
    import pcapy

    from probe.sources import SourceError

    try:
        reader = pcapy.create(interface)
        status = reader.activate()
    except pcapy.PcapError as exc:
        raise SourceError(f"interface {interface}: {exc}") from None
    reader.close()
    if status is not None and status < 0:
        raise SourceError(activation_error(interface, status))
