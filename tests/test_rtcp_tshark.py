"""rtcp_mos.rtcp.parse_compound against Wireshark's RTCP dissector, field by field.

Every capture in ../shared/pcaps and pcaps/ is decoded twice: by sipprobe's own frame decoder
(unfiltered, so frame numbers are Wireshark's; tunnels and IP reassembly included), with the
RTCP datagrams parsed by `parse_compound`, and by `tshark -T pdml` with the RTCP heuristic on.
Per frame, the SR/RR packets (type, reporter SSRC, sender info, every report block field), the
SDES CNAMEs, the BYE SSRCs and the SRTCP verdict must be equal. RTCP quoted inside ICMP errors
is left out on both sides: sipprobe's decoder ignores ICMP (`decode.icmp_ignored`), so the
tshark side is read with `not icmp`. XR VoIP Metrics appear in no public capture, so crafted
XR packets are written to a pcap and compared against tshark's decode of that file.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from console import tshark
from console.crosscheck import rtcp_shape
from crafted import A_IP, B_IP, T0, frames, udp, write_pcap
from pipeline import RTCP, ProbeOptions, classify, datagram_batches
from probe.counters import Counters
from probe.sources import CaptureStats, read_batches
from rtcp_mos.rtcp import VoipMetrics, parse_compound
from shared_pcaps import SHARED_PCAPS, all_shared, require_tshark

LAB_PCAPS = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "pcaps").glob("*/*.pcap*"))

# RTCP datagrams per capture outside ICMP, as ../shared/pcaps/MANIFEST.md describes them
# (an independent count: written from tshark 4.0.17's -z rtp,streams and field extraction)
MANIFEST_RTCP = {"voipshark_sip-rtp-b2bua-call-rtcp.pcap": 33,
                 "voipshark_sip-tls-rtp-b2bua-call-rtcp.pcap": 27,
                 "voipshark_sip-srtp-b2bua-call-ipfrag.pcap": 29,
                 "ndpi_rtcp-compound-sr-rr-loss.pcap": 5,
                 "asterisk_ast-2017-012-rtp-rtcp-compound.pcap": 2}
SRTCP_CAPTURES = {"voipshark_sip-srtp-b2bua-call-ipfrag.pcap"}

VOIP_FIELDS = {  # VoipMetrics field -> tshark field (RFC 3611 section 4.7)
    "source_ssrc": "rtcp.ssrc.identifier", "loss_rate": "rtcp.ssrc.fraction",
    "discard_rate": "rtcp.ssrc.discarded",
    "burst_density": "rtcp.xr.voipmetrics.burstdensity",
    "gap_density": "rtcp.xr.voipmetrics.gapdensity",
    "burst_duration": "rtcp.xr.voipmetrics.burstduration",
    "gap_duration": "rtcp.xr.voipmetrics.gapduration",
    "round_trip_delay": "rtcp.xr.voipmetrics.rtdelay",
    "end_system_delay": "rtcp.xr.voipmetrics.esdelay",
    "signal_level": "rtcp.xr.voipmetrics.signallevel",
    "noise_level": "rtcp.xr.voipmetrics.noiselevel", "rerl": "rtcp.xr.voipmetrics.rerl",
    "gmin": "rtcp.xr.voipmetrics.gmin", "r_factor": "rtcp.xr.voipmetrics.rfactor",
    "ext_r_factor": "rtcp.xr.voipmetrics.extrfactor", "mos_lq": "rtcp.xr.voipmetrics.moslq",
    "mos_cq": "rtcp.xr.voipmetrics.moscq", "jb_nominal": "rtcp.xr.voipmetrics.jbnominal",
    "jb_maximum": "rtcp.xr.voipmetrics.jbmax", "jb_abs_max": "rtcp.xr.voipmetrics.jbabsmax"}
RX_CONFIG_FIELDS = ("rtcp.xr.voipmetrics.plc", "rtcp.xr.voipmetrics.jba",
                    "rtcp.xr.voipmetrics.jbrate")  # 2, 2 and 4 bits of the RX config byte


# -- sipprobe's side ---------------------------------------------------------------------------

def sipprobe_rtcp(path: str) -> dict:
    """{frame: RtcpCompound} for every datagram the pipeline classifies as RTCP."""
    opts = ProbeOptions(bpf_filter="", dedup_window=0, strict=True)
    sip_ports = frozenset(opts.sip_ports)
    out = {}
    for batch in datagram_batches(read_batches([path], opts.filters(), CaptureStats()), opts,
                                  Counters()):
        for d in batch:
            if classify(d, sip_ports) == RTCP:
                assert d.frame not in out, "two RTCP datagrams completed by one frame"
                out[d.frame] = parse_compound(d.payload)
    return out


ours = rtcp_shape  # RtcpCompound -> the shape tshark.rtcp_entry gives (console/crosscheck.py)
tshark_rtcp = tshark.rtcp_frames  # {frame: that shape} from tshark's PDML
tshark_pdml = tshark.pdml
_int = tshark.number


def captures() -> list:
    return [str(SHARED_PCAPS / n) for n in all_shared()] + LAB_PCAPS


@pytest.mark.parametrize("path", captures(), ids=lambda p: Path(p).name if "shared" in p
                         else Path(p).parent.name)
def test_rtcp_fields_equal_tshark(path):
    """Same RTCP frames, and per frame the same reports, blocks, sender info, CNAMEs, BYEs and
    SRTCP verdict as Wireshark; as many RTCP datagrams as MANIFEST.md describes."""
    got = {frame: ours(c) for frame, c in sipprobe_rtcp(path).items()}
    expected = tshark_rtcp(path)
    assert sorted(got) == sorted(expected)
    for frame in expected:
        assert got[frame] == expected[frame], f"frame {frame}"
    name = Path(path).name
    if name in MANIFEST_RTCP:
        assert len(got) == MANIFEST_RTCP[name]
        with_blocks = [f for f, e in got.items() if any(r[3] for r in e["reports"])]
        assert bool(with_blocks) == (name not in SRTCP_CAPTURES)
    assert all(e["srtcp"] for e in got.values()) == (name in SRTCP_CAPTURES) or not got


def test_public_rtcp_is_found():
    """The oracle test above has something to compare: report blocks in every capture
    MANIFEST.md lists with them, loss only where it says, and all SRTCP recognised."""
    blocks = {}
    for name in sorted(MANIFEST_RTCP) + ["arkime_gtp-volte-ipv6-sip-tcp-rtcp.pcap",
                                         "sngrep_aaa-sip-rtp-cancel-auth.pcap"]:
        parsed = sipprobe_rtcp(str(SHARED_PCAPS / name)).values()
        blocks[name] = [b for c in parsed for r in c.reports for b in r.blocks]
        if name in SRTCP_CAPTURES:
            assert len(parsed) == 29 and all(c.srtcp and c.anomalies == ("rtcp.srtcp",)
                                             for c in parsed)
    assert blocks.pop("voipshark_sip-srtp-b2bua-call-ipfrag.pcap") == []
    lossy = {n for n, bs in blocks.items() if any(b.fraction_lost or b.cumulative_lost for b in bs)}
    assert lossy == {"ndpi_rtcp-compound-sr-rr-loss.pcap"}
    for name in MANIFEST_RTCP.keys() - SRTCP_CAPTURES:
        assert blocks[name], name
        assert any(b.lsr and b.dlsr for b in blocks[name]), name


# -- XR VoIP Metrics, crafted (no public capture has XR) -----------------------------------------

def _voip_block(ssrc: int, values: dict) -> bytes:
    v = values
    return struct.pack("!BBH", 7, 0, 8) + struct.pack(
        "!I4B4H2b2B4BBxHHH", ssrc, v["loss"], v["discard"], v["bd"], v["gd"], v["bdur"],
        v["gdur"], v["rtd"], v["esd"], v["signal"], v["noise"], v["rerl"], v["gmin"], v["r"],
        v["extr"], v["moslq"], v["moscq"], v["rx"], v["jbn"], v["jbm"], v["jba"])


def _xr(ssrc: int, *blocks: bytes) -> bytes:
    body = struct.pack("!I", ssrc) + b"".join(blocks)
    return struct.pack("!BBH", 0x80, 207, len(body) // 4) + body


def _rr(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


XR_CASES = [
    # a typical call: 2% loss (5/256), MOS 4.1 / 3.9, R 82, adaptive jitter buffer
    dict(loss=5, discard=1, bd=40, gd=2, bdur=120, gdur=4500, rtd=84, esd=60, signal=-20,
         noise=-62, rerl=30, gmin=16, r=82, extr=127, moslq=41, moscq=39, rx=0b01_11_0101,
         jbn=40, jbm=80, jba=200),
    # everything unavailable or extreme: 127 markers, full loss, large durations
    dict(loss=255, discard=255, bd=255, gd=0, bdur=65535, gdur=0, rtd=0, esd=65535,
         signal=127, noise=127, rerl=127, gmin=1, r=127, extr=127, moslq=127, moscq=127,
         rx=0b11_10_1111, jbn=0, jbm=65535, jba=65535),
    # poor quality, levels at the low end
    dict(loss=64, discard=32, bd=200, gd=10, bdur=500, gdur=300, rtd=600, esd=250,
         signal=-128, noise=-90, rerl=5, gmin=16, r=40, extr=38, moslq=15, moscq=10, rx=0,
         jbn=60, jbm=60, jba=120),
]


def test_xr_voip_metrics_equal_tshark(tmp_path):
    """Crafted RR + XR compounds (one XR carries a VoIP Metrics block between a Receiver
    Reference Time block and a DLRR block) decode as tshark decodes them, field by field."""
    rrt = struct.pack("!BBHII", 4, 0, 2, 0xE8000000, 0x40000000)  # BT=4 (RFC 3611 4.4)
    dlrr = struct.pack("!BBHIII", 5, 0, 3, 0x33333333, 0x12345678, 0x10000)  # BT=5 (4.5)
    payloads = [_rr(0x1000 + i) + _xr(0x1000 + i, rrt, _voip_block(0xABC0 + i, v), dlrr)
                if i == 0 else _rr(0x1000 + i) + _xr(0x1000 + i, _voip_block(0xABC0 + i, v))
                for i, v in enumerate(XR_CASES)]
    path = write_pcap(tmp_path / "xr.pcap", frames(
        [(T0 + i, udp(A_IP, B_IP, 40001, 50001, p)) for i, p in enumerate(payloads)]))

    parsed = [parse_compound(p) for p in payloads]
    assert [c.anomalies for c in parsed] == [()] * len(XR_CASES)
    assert parsed[0].xrs[0].other_blocks == (4, 5)
    assert sipprobe_rtcp(str(path)).keys() == {1, 2, 3}

    pdml = tshark_pdml(str(path))
    assert len(pdml) == len(XR_CASES)
    for packet, compound in zip(pdml, parsed):
        (xr,) = compound.xrs
        (metrics,) = xr.voip_metrics
        (proto,) = [p for p in packet.findall("proto[@name='rtcp']") if
                    p.find("field[@name='rtcp.pt']").get("show") == "207"]
        assert _int(proto.find("field[@name='rtcp.senderssrc']").get("show")) == xr.reporter_ssrc
        (block,) = [b for b in proto.iter("field") if b.find("field[@name='rtcp.xr.bt']") is not
                    None and b.find("field[@name='rtcp.xr.bt']").get("show") == "7"]
        shown = {f.get("name"): f.get("show") for f in block.iter("field")}
        tshark = {}
        for ours_name, field in VOIP_FIELDS.items():
            text = shown[field]
            if ours_name in ("mos_lq", "mos_cq"):  # tshark shows MOS / 10 as a float
                tshark[ours_name] = 127 if text == "127" else round(float(text) * 10)
            else:
                tshark[ours_name] = _int(text)
        assert {k: getattr(metrics, k) for k in VOIP_FIELDS} == tshark
        plc, jba, rate = (_int(shown[f]) for f in RX_CONFIG_FIELDS)
        assert metrics.rx_config == plc << 6 | jba << 4 | rate
    assert parsed[0].xrs[0].voip_metrics[0].mos_lq_score == 4.1
    assert parsed[1].xrs[0].voip_metrics[0].mos_cq_score is None
    assert isinstance(parsed[2].xrs[0].voip_metrics[0], VoipMetrics)


# -- crafted compounds both sides can read -----------------------------------------------------

def _sr_block(source: int, lost_word: int, ext: int) -> bytes:
    return struct.pack("!6I", source, lost_word, ext, 1234, 0x12345678, 65536)


def test_crafted_report_fields_equal_tshark(tmp_path):
    """Negative cumulative loss (0xFFFFFF = -1, and the most negative 0x800000), the maximum
    positive value, several blocks, padding on the last packet and a reduced-size compound
    (RFC 5506: an RR-less SDES first): tshark and parse_compound agree on every field."""
    sdes = struct.pack("!BBHIBB", 0x81, 202, 3, 0x77, 1, 5) + b"a@b.c" + b"\x00"
    three = b"".join(_sr_block(0x100 + i, w, 0x0002_FFFF + i) for i, w in
                     enumerate(((0x80 << 24) | 0xFFFFFF, 0x800000, (0xFF << 24) | 0x7FFFFF)))
    sr = struct.pack("!BBHI5I", 0x83, 200, 6 + 18, 0x77, 0xE9A1B2C3, 0x80000000, 1, 2, 3) + three
    padded_rr = struct.pack("!BBHI", 0xA1, 201, 7 + 1, 0x88) + _sr_block(0x77, 0xFFFFFF, 9) \
        + b"\x00\x00\x00\x04"
    payloads = [sr + sdes, _rr(0x88) + sdes, padded_rr, sdes + _rr(0x99)]
    path = write_pcap(tmp_path / "edge.pcap", frames(
        [(T0 + i, udp(A_IP, B_IP, 40001, 50001, p)) for i, p in enumerate(payloads)]))
    got = {f: ours(c) for f, c in sipprobe_rtcp(str(path)).items()}
    expected = tshark_rtcp(str(path), "udp.port==50001,rtcp")
    assert got == expected
    assert [b[2] for b in got[1]["reports"][0][3]] == [-1, -0x800000, 0x7FFFFF]
    assert got[3]["reports"][0][3][0][2] == -1
    assert parse_compound(payloads[2]).anomalies == ()
    assert parse_compound(payloads[3]).anomalies == ("rtcp.reduced_size",)
