"""The libpcap pre-filter that keeps SIP, RTCP, fragments and tunnels, so RTP never reaches Python.

RTCP is recognised by its header: version 2 and packet type 200-207 in the second byte
(RFC 5761 section 4 keeps RTP payload types 72-79 free, so RTP with the marker bit never matches).
SIP is recognised by port and, on any other port, by the first four bytes of the UDP or TCP
payload (a TCP message spread over several segments on such a port needs `--sip-port`).
The filter cannot look inside GRE, IP-in-IP, VXLAN or GTP-U, so it keeps those packets whole
and the Python decoder unwraps them: widening costs speed on tunnelled mirrors, never calls.
"""
from __future__ import annotations

DEFAULT_SIP_PORTS = (5060, 5061)
VXLAN_PORT = 4789
GTPU_PORT = 2152

# First four bytes of a SIP status line or of a request line for every common method.
SIP_PREFIXES = (
    b"SIP/", b"INVI", b"ACK ", b"BYE ", b"CANC", b"OPTI", b"REGI", b"PRAC",
    b"SUBS", b"NOTI", b"PUBL", b"INFO", b"REFE", b"MESS", b"UPDA",
)
# IPv6 extension headers that sit between the fixed header and UDP/TCP: hop-by-hop,
# routing, fragment, destination options. The filter reads fixed offsets, so keep them.
IP6_EXTENSION_HEADERS = (0, 43, 44, 60)
TUNNEL_PROTOCOLS = (4, 41, 47)  # IPv4-in-IP, IPv6-in-IP, GRE (ERSPAN rides on GRE)
# PPPoE session frames carrying IPv4/IPv6 (PPP 0x0021/0x0057), untagged or behind one tag, kept
# whole like tunnels. The decoder reads PPPoE but `ip`/`udp` never match it; libpcap's `pppoes`
# cannot serve: it shifts every later offset and refuses `vlan` after it, so plain offsets here.
PPPOE_SESSION = ("(ether[12:2] = 0x8864 and (ether[20:2] = 0x21 or ether[20:2] = 0x57))"
                 " or ((ether[12:2] = 0x8100 or ether[12:2] = 0x88a8) and ether[16:2] = 0x8864"
                 " and (ether[24:2] = 0x21 or ether[24:2] = 0x57))")


def _payload_tests(at: str, udp_payload: int) -> str:
    """SIP-prefix and RTCP-header tests on the UDP payload starting at `at[udp_payload]`."""
    sip = " or ".join(f"{at}[{udp_payload}:4] = 0x{p.hex()}" for p in SIP_PREFIXES)
    rtcp = (f"({at}[{udp_payload}] & 0xc0 = 0x80 and {at}[{udp_payload + 1}] >= 200"
            f" and {at}[{udp_payload + 1}] <= 207)")
    return f"{sip} or {rtcp}"


def _tcp_payload_tests(at: str, payload: str) -> str:
    """SIP-prefix tests on the TCP payload, whose offset depends on the data offset field."""
    return " or ".join(f"{at}[{payload}:4] = 0x{p.hex()}" for p in SIP_PREFIXES)


def ip_filter(sip_ports: tuple[int, ...] = DEFAULT_SIP_PORTS) -> str:
    """The expression for one IP packet (no VLAN tag in front)."""
    ports = " or ".join(f"port {p}" for p in sip_ports)
    v4 = (f"(ip and ((ip[6:2] & 0x3fff != 0)"
          f" or {' or '.join(f'ip proto {p}' for p in TUNNEL_PROTOCOLS)}"
          f" or (udp and ({_payload_tests('udp', 8)}))"
          f" or (tcp and ({_tcp_payload_tests('tcp', '((tcp[12] & 0xf0) >> 2)')}))))")
    v6 = (f"(ip6 and ({' or '.join(f'ip6[6] = {h}' for h in IP6_EXTENSION_HEADERS + TUNNEL_PROTOCOLS)}"
          f" or (ip6[6] = 17 and ({_payload_tests('ip6', 48)}))"
          f" or (ip6[6] = 6 and ({_tcp_payload_tests('ip6', '40 + ((ip6[52] & 0xf0) >> 2)')}))))")
    transport = f"((udp or tcp) and ({ports}))"
    tunnels = f"(udp and (port {VXLAN_PORT} or port {GTPU_PORT}))"
    return f"({transport} or {tunnels} or {v4} or {v6})"


def default_filter(sip_ports: tuple[int, ...] = DEFAULT_SIP_PORTS, vlan: bool = True) -> str:
    """The full expression; with `vlan`, the same again behind one and two 802.1Q/802.1ad tags.

    libpcap's `vlan` keyword shifts every later offset, so the tagged variants nest
    instead of being or-ed side by side.
    """
    inner = ip_filter(sip_ports)
    full = inner if not vlan else \
        f"{PPPOE_SESSION} or {inner} or (vlan and ({inner} or (vlan and {inner})))"
    # Most frames on a media-heavy mirror are untagged RTP over IPv4: settle those in a few
    # instructions (RTCP in, other RTP-looking UDP out) before walking the long expression.
    # SIP text, STUN, GTP-U and VXLAN never start with version bits 10, so nothing else is lost.
    # The port test goes first because a payload load past a snap-length cut rejects the frame.
    ports = " or ".join(f"port {p}" for p in sip_ports)
    rtp_like = "(udp and udp[8] & 0xc0 = 0x80)"
    rtcp = "udp[9] >= 200 and udp[9] <= 207"
    return (f"((udp or tcp) and ({ports})) or ({rtp_like} and {rtcp})"
            f" or (not {rtp_like} and ({full}))")
