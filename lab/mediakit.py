"""The media lab's agents and probes: baresip configs and its ctrl_tcp client,
rtpengine's ng protocol (bencode over UDP), the test WAV, and the parsers of
Kamailio's RTPENGINE_MOS lines and rtpengine's "Final packet stats" log.
Python 3.11 standard library only."""

from __future__ import annotations

import json
import math
import os
import random
import re
import socket
import struct
import time
import wave
from pathlib import Path

from labkit import LabError

# ------------------------------------------------------------------ audio

def write_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    """Mono 16-bit 8 kHz speech-like signal (two partials under a 3 Hz
    syllable envelope plus a little noise): baresip's aufile source reads it
    natively, no resampling (its sine source runs at 48 kHz, LAB-NOTES)."""
    rnd = random.Random(20261206)
    frames = bytearray()
    for n in range(int(seconds * rate)):
        t = n / rate
        env = 0.5 * (1 + math.sin(2 * math.pi * 3 * t))
        v = env * (0.3 * math.sin(2 * math.pi * 220 * t) + 0.2 * math.sin(2 * math.pi * 660 * t))
        v += 0.02 * (rnd.random() - 0.5)
        frames += struct.pack("<h", int(v * 20000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


# ---------------------------------------------------------------- baresip

def baresip_config(home: Path, user: str, sip_port: int, ctrl_port: int, rtp_port: int,
                   wav: Path) -> None:
    """One agent: SIP on 127.0.0.1:sip_port (baresip also binds +1 for TLS),
    RTP on exactly rtp_port and RTCP on rtp_port + 1 (no rtcp-mux), so an
    iptables rule can drop its RTP alone; PCMA only; auto-answer."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
sip_trans_def udp
net_interface 127.0.0.1
audio_source aufile,{wav}
audio_player
audio_alert
ausrc_srate 8000
ausrc_channels 1
rtp_ports {rtp_port}-{rtp_port + 1}
rtcp_mux no
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
""")
    (home / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{sip_port};transport=udp>;regint=0;answermode=auto;"
        "audio_codecs=PCMA\n")


class BaresipCtrl:
    """ctrl_tcp client: commands and events are netstrings holding JSON."""

    def __init__(self, port: int, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise LabError(f"baresip ctrl_tcp 127.0.0.1:{port} not reachable")
                time.sleep(0.1)
        self.buf = b""
        self.events: list[dict] = []

    def send(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def _read_one(self, timeout: float) -> dict | None:
        self.sock.settimeout(timeout)
        while True:
            m = re.match(rb"(\d+):", self.buf)
            if m and len(self.buf) >= m.end() + int(m.group(1)) + 1:
                n = int(m.group(1))
                body = self.buf[m.end():m.end() + n]
                self.buf = self.buf[m.end() + n + 1:]
                return json.loads(body)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not data:
                raise LabError("baresip closed its ctrl_tcp connection")
            self.buf += data

    def wait_event(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._read_one(left)
            if msg is None:
                break
            self.events.append(msg)
            if msg.get("type") == kind:
                return msg
            if msg.get("type") == "CALL_CLOSED" and kind != "CALL_CLOSED":
                raise LabError(f"call closed while waiting for {kind}: {msg.get('param')}")
        raise LabError(f"no baresip {kind} event within {timeout:.0f} s")

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------- rtpengine ng protocol

def bencode(v) -> bytes:
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def bdecode(data: bytes):
    def walk(i: int):
        c = data[i:i + 1]
        if c == b"i":
            j = data.index(b"e", i)
            return int(data[i + 1:j]), j + 1
        if c in (b"l", b"d"):
            items, i = [], i + 1
            while data[i:i + 1] != b"e":
                x, i = walk(i)
                items.append(x)
            if c == b"l":
                return items, i + 1
            return dict(zip(items[::2], items[1::2])), i + 1
        j = data.index(b":", i)
        n = int(data[i:j])
        raw = data[j + 1:j + 1 + n]
        try:
            return raw.decode(), j + 1 + n
        except UnicodeDecodeError:
            return raw.hex(), j + 1 + n
    return walk(0)[0]


def ng_command(addr: tuple[str, int], msg: dict, timeout: float = 2.0) -> dict:
    cookie = f"lab{os.getpid()}{time.monotonic_ns() % 10**6}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(cookie.encode() + b" " + bencode(msg), addr)
        data = s.recv(1 << 20)
    head, _, body = data.partition(b" ")
    if head.decode() != cookie:
        raise LabError("rtpengine ng: reply with another cookie")
    return bdecode(body)


# ------------------------------------------------------------- the figures

MOS_LINE = re.compile(r"RTPENGINE_MOS (callid=[^\n]*)")


def parse_mos_lines(kamailio_log: str) -> dict[str, dict[str, dict[str, str | None]]]:
    """{callid: {side: {field: value}}} from route[MEDIA_END]'s xlog lines.
    Values stay the strings Kamailio printed; "<null>" (pv not set) -> None."""
    calls: dict[str, dict] = {}
    for m in MOS_LINE.finditer(kamailio_log):
        fields = dict(kv.split("=", 1) for kv in m.group(1).strip().split(";") if "=" in kv)
        callid, side = fields.pop("callid"), fields.pop("side")
        calls.setdefault(callid, {})[side] = {
            k: (None if v == "<null>" else v) for k, v in fields.items()}
    return calls


STATS_PORT = re.compile(r"\[([^\]]+)\]: \[core\] -+ Port +(\S+) <> +(\S*) *(\(RTCP\))?, "
                        r"SSRC (\w+), (\d+) p, (\d+) b, (\d+) e, (\d+) ts")
STATS_MOS = re.compile(r"\[([^\]]+)\]: \[core\] -+ Average MOS ([\d.]+), lowest MOS ([\d.]+) "
                       r"\(at ([\d:]+)\), highest MOS ([\d.]+) \(at ([\d:]+)\) lost:(\d+)")
STATS_SSRC = re.compile(r"\[([^\]]+)\]: \[core\] --- SSRC (\w+)")


def parse_final_stats(rtpengine_log: str) -> dict[str, dict]:
    """rtpengine's own "Final packet stats" at the delete (log level 6):
    per call id, its ports with packet counts and, per SSRC, the MOS line."""
    calls: dict[str, dict] = {}
    ssrc = None
    for line in rtpengine_log.splitlines():
        if m := STATS_PORT.search(line):
            cid, local, remote, rtcp, ss, p, b, e, ts = m.groups()
            calls.setdefault(cid, {"ports": [], "ssrc": {}})["ports"].append(
                {"local": local, "remote": remote, "rtcp": bool(rtcp), "ssrc": ss,
                 "packets": int(p), "bytes": int(b), "errors": int(e), "ts": int(ts)})
        elif m := STATS_SSRC.search(line):
            ssrc = m.group(2)
        elif (m := STATS_MOS.search(line)) and ssrc:
            cid, avg, low, low_at, high, high_at, lost = m.groups()
            calls.setdefault(cid, {"ports": [], "ssrc": {}})["ssrc"][ssrc] = {
                "average_mos": avg, "lowest_mos": low, "lowest_at": low_at,
                "highest_mos": high, "highest_at": high_at, "lost": int(lost)}
    return calls
