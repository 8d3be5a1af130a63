"""The C fast path of Decoder.decode_batch (probe/_fastdecode.c) against the pure-Python path:
the same datagrams, counters, de-duplication state and address cache on real and crafted
captures. Without the extension built both decoders run the pure path (see the first test)."""
from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from socket import inet_aton

import pytest
from scapy.layers.inet import IP, UDP, IPOption_EOL, IPOption_NOP, fragment
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

import pipeline
from crafted import (A_IP, B_IP, MAC_A, MAC_B, OUTER_A, OUTER_B, T0, call_packets, gtpu_header,
                     link, tunnel, write_pcap)
from probe import decode
from probe.counters import Counters
from probe.records import Datagram, Frame, RawBatch
from probe.sources import CaptureStats, read_batches
from shared_pcaps import all_shared, shared

REPO = Path(__file__).resolve().parents[1]
LABS = sorted(str(p.relative_to(REPO)) for p in REPO.glob("pcaps/lab-*/capture.pcap"))
BENCH_QUICK = "/tmp/sipprobe-bench/quick/sig-only.pcap"


def _decoder(native: bool, opts: pipeline.ProbeOptions) -> decode.Decoder:
    return decode.Decoder(Counters(), pipeline.frame_sip_stream,
                          tcp_ports=frozenset(opts.sip_ports), dedup_window=opts.dedup_window,
                          strict=opts.strict, native=native)


def _run(decoder: decode.Decoder, batches) -> list:
    out = []
    for batch in batches:
        out += decoder.decode_batch(batch)
    decoder.flush()
    return out


def both(batches_of, opts: pipeline.ProbeOptions | None = None):
    """Decode natively and purely (batches_of() gives fresh batches each time), assert every
    observable equal; the native result and counters."""
    opts = opts or pipeline.ProbeOptions()
    native, pure = _decoder(True, opts), _decoder(False, opts)
    got, want = _run(native, batches_of()), _run(pure, batches_of())
    assert got == want
    assert all(type(d) is Datagram for d in got)
    assert dict(native.c) == dict(pure.c)
    for name in ("_seen", "_older", "_rotate_at"):
        assert getattr(native.dedup, name) == getattr(pure.dedup, name), name
    assert native._names == pure._names
    # addresses are the strings of the decoder's own cache, not copies
    for d in got:
        if d.vlan == d.tunnel == () and "." in d.src and inet_aton(d.src) in native._names:
            assert d.src is native._names[inet_aton(d.src)]
    return got, dict(native.c)


def both_file(path, **kw):
    opts = pipeline.ProbeOptions(**kw)
    return both(lambda: read_batches([str(path)], opts.filters(), CaptureStats()), opts)


# -- the extension is what runs ------------------------------------------------------------------

def test_native_module_in_use():
    try:
        from probe import _fastdecode
    except ImportError as exc:
        pytest.skip(f"probe._fastdecode not built ({exc}): python setup.py build_ext --inplace")
    if os.environ.get("SIPPROBE_PURE") == "1":
        pytest.skip("SIPPROBE_PURE=1 turns the native path off")
    assert decode._fastdecode is _fastdecode
    d = _decoder(True, pipeline.ProbeOptions())
    assert d.native is _fastdecode
    assert _decoder(False, pipeline.ProbeOptions()).native is None


def test_pure_env_turns_native_off():
    code = "import probe.decode as d; print(d._fastdecode, d.Decoder(None, None, tcp_ports=frozenset()).native)"
    env = dict(os.environ, SIPPROBE_PURE="1")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    assert res.stdout.split() == ["None", "None"]


# -- differential on real captures --------------------------------------------------------------

@pytest.mark.parametrize("bpf", [None, ""], ids=["filtered", "unfiltered"])
@pytest.mark.parametrize("name", all_shared())
def test_shared_capture(name, bpf):
    both_file(shared(name), bpf_filter=bpf)


@pytest.mark.parametrize("bpf", [None, ""], ids=["filtered", "unfiltered"])
@pytest.mark.parametrize("path", LABS)
def test_lab_capture(path, bpf):
    got, _ = both_file(REPO / path, bpf_filter=bpf)
    assert got


@pytest.mark.parametrize("window", [0.010, 0])
def test_bench_quick_capture(window):
    if not os.path.exists(BENCH_QUICK):
        pytest.skip(f"{BENCH_QUICK} absent (made by the benchmark scripts)")
    got, _ = both_file(BENCH_QUICK, dedup_window=window)
    assert len(got) > 1024  # more than one batch


# -- crafted frames -------------------------------------------------------------------------------

INVITE = call_packets(media=False)[0][1]  # IP / UDP 5060 -> 5060 / INVITE
PAYLOAD = bytes(INVITE[UDP].payload)


def _file(tmp_path, records, linktype=1):
    return write_pcap(tmp_path / "c.pcap", records, linktype)


def _eth(pkt) -> bytes:
    return bytes(Ether(src=MAC_A, dst=MAC_B) / pkt)


def _copy(pkt, ttl=63):
    """`pkt` as the next mirrored hop shows it: another TTL and header checksum."""
    c = IP(bytes(pkt))
    c.ttl, c.chksum = ttl, None
    return IP(bytes(c))


def _with(pkt, **fields) -> bytes:
    """`pkt` (IP/UDP) with header fields overwritten, checksums kept as they were."""
    c = IP(bytes(pkt))
    for k, v in fields.items():
        setattr(c[UDP] if k.startswith("udp_") else c, k.removeprefix("udp_"), v)
    return bytes(c)


def test_plain_frame_and_timestamps(tmp_path):
    times = [T0, T0 + 0.123457, T0 + 0.999999, T0 + 1.5]
    pkts = [IP(src=A_IP, dst=B_IP, id=i) / UDP(sport=5060, dport=5060) / Raw(PAYLOAD)
            for i in range(len(times))]
    got, counters = both_file(_file(tmp_path, [(t, _eth(p)) for t, p in zip(times, pkts)]),
                              bpf_filter="")
    assert counters == {"frag.expired": 0, "tcp.incomplete_at_close": 0}
    for d, t in zip(got, times):
        sec, usec = divmod(round(t * 1e6), 10**6)
        assert d.ts == sec + usec * 1e-6
    assert [d[1:] for d in got] == [(i + 1, A_IP, B_IP, 5060, 5060, "udp", PAYLOAD, (), ())
                                    for i in range(4)]


@pytest.mark.parametrize("caplen", [14, 33, 34, 41, 42])
def test_truncated_frame(tmp_path, caplen):
    """Cut frames (the packet claims more than was captured) go the general way."""
    frame = _eth(INVITE)[:caplen]
    got, counters = both_file(_file(tmp_path, [(T0, frame), (T0 + 1, _eth(INVITE))]), bpf_filter="")
    assert got[-1].payload == PAYLOAD and got[-1].frame == 2
    if caplen < 42:
        assert len(got) == 1
        assert counters.get("decode.ipv4_truncated", 0) + counters.get("decode.udp_truncated", 0) == 1
    else:
        assert counters["decode.ipv4_length_exceeds_capture"] == 1


def test_ip_length_beyond_capture(tmp_path):
    frame = _eth(IP(_with(INVITE, len=len(INVITE) + 100)))
    got, counters = both_file(_file(tmp_path, [(T0, frame)]), bpf_filter="")
    assert [d.payload for d in got] == [PAYLOAD]
    assert counters["decode.ipv4_length_exceeds_capture"] == 1


def test_ethernet_padding_is_not_payload(tmp_path):
    pkt = IP(src=A_IP, dst=B_IP) / UDP(sport=5060, dport=5060) / Raw(b"x")
    frame = _eth(pkt) + b"\x00" * 17  # padded to the 60-byte minimum
    got, _ = both_file(_file(tmp_path, [(T0, frame)]), bpf_filter="")
    assert [d.payload for d in got] == [b"x"]


@pytest.mark.parametrize("ulen,expect", [
    (len(PAYLOAD) + 8 + 50, PAYLOAD),  # longer than the IP payload: general path, cut to it
    (4, None),  # below the UDP header
    (8 + 10, PAYLOAD[:10]),  # shorter: the UDP length wins
])
def test_udp_length_inconsistent(tmp_path, ulen, expect):
    frame = _eth(IP(_with(INVITE, udp_len=ulen)))
    got, counters = both_file(_file(tmp_path, [(T0, frame)]), bpf_filter="")
    assert [d.payload for d in got] == ([expect] if expect is not None else [])
    if ulen > len(PAYLOAD) + 8:
        assert counters["decode.udp_length_exceeds_payload"] == 1
    if ulen < 8:
        assert counters["decode.udp_bad_length"] == 1


def test_ip_options(tmp_path):
    pkt = IP(src=A_IP, dst=B_IP, options=[IPOption_NOP()] * 3 + [IPOption_EOL()]) \
        / UDP(sport=5060, dport=5060) / Raw(PAYLOAD)
    assert IP(bytes(pkt)).ihl == 6
    got, _ = both_file(_file(tmp_path, [(T0, _eth(pkt))]), bpf_filter="")
    assert [(d.src, d.dst, d.payload) for d in got] == [(A_IP, B_IP, PAYLOAD)]


def test_fragments(tmp_path):
    frags = fragment(IP(src=A_IP, dst=B_IP, id=0x4242) / UDP(sport=5060, dport=5060)
                     / Raw(PAYLOAD), fragsize=256)
    records = [(T0 + i * 0.001, _eth(f)) for i, f in enumerate(frags)]
    records.append((T0 + 0.1, _eth(INVITE)))
    got, counters = both_file(_file(tmp_path, records), bpf_filter="")
    assert [(d.frame, d.payload) for d in got] == [(len(frags), PAYLOAD), (len(frags) + 1, PAYLOAD)]
    assert counters["frag.reassembled"] == 1


@pytest.mark.parametrize("order", ["untagged_first", "tagged_first"])
def test_vlan_copy_is_one_duplicate(tmp_path, order):
    """One copy on the fast path, the other (802.1Q) on the general one: one de-duplication
    state, one duplicate counted, whichever comes first."""
    plain, tagged = _eth(INVITE), link("vlan", _copy(INVITE))
    first, second = (plain, tagged) if order == "untagged_first" else (tagged, plain)
    got, counters = both_file(_file(tmp_path, [(T0, first), (T0 + 0.001, second)]))
    assert [d.frame for d in got] == [1]
    assert got[0].vlan == (() if order == "untagged_first" else (100,))
    assert counters["dedup.duplicates"] == 1


@pytest.mark.parametrize("copy_kind", ["ethernet", "vlan"])
def test_duplicate_across_rotation(tmp_path, copy_kind):
    """A copy after the window rotated is found in the older generation; one beyond the window
    is not a duplicate. Timeline: X at T0 (next rotation T0+10ms), INVITE at +8 ms, its copy at
    +12 ms (rotation: INVITE now in the older dict, 4 ms ago), again at +40 ms."""
    other = IP(src=B_IP, dst=A_IP) / UDP(sport=5060, dport=5060) / Raw(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    copy = (lambda p: bytes(Ether(src=MAC_B, dst=MAC_A) / p)) if copy_kind == "ethernet" \
        else (lambda p: link("vlan", p))
    records = [(T0, _eth(other)), (T0 + 0.008, _eth(INVITE)), (T0 + 0.012, copy(_copy(INVITE))),
               (T0 + 0.040, copy(_copy(INVITE, 62)))]
    got, counters = both_file(_file(tmp_path, records))
    assert [d.frame for d in got] == [1, 2, 4]
    assert counters["dedup.duplicates"] == 1


@pytest.mark.parametrize("port", [4789, 2152])
def test_tunnel_port_without_tunnel(tmp_path, port):
    """SIP to a VXLAN or GTP-U port is not a tunnel; the general path decides that."""
    pkt = IP(src=A_IP, dst=B_IP) / UDP(sport=5060, dport=port) / Raw(PAYLOAD)
    got, _ = both_file(_file(tmp_path, [(T0, _eth(pkt))]), bpf_filter="")
    assert [(d.dport, d.tunnel, d.payload) for d in got] == [(port, (), PAYLOAD)]


@pytest.mark.parametrize("kind", ["vxlan", "gtpu"])
def test_tunnel(tmp_path, kind):
    if kind == "vxlan":
        outer = tunnel("vxlan", INVITE)
    else:
        inner = bytes(INVITE)
        outer = IP(src=OUTER_A, dst=OUTER_B) / UDP(sport=2152, dport=2152) \
            / Raw(gtpu_header(len(inner)) + inner)
    records = [(T0, _eth(outer)), (T0 + 0.001, _eth(INVITE))]  # the inner packet again: a copy
    got, counters = both_file(_file(tmp_path, records), bpf_filter="")
    assert [(d.src, d.tunnel, d.payload) for d in got] == [(A_IP, (kind,), PAYLOAD)]
    assert counters["dedup.duplicates"] == 1


def test_non_ethernet_batch(tmp_path):
    got, _ = both_file(write_pcap(tmp_path / "raw.pcap", [(T0, bytes(INVITE))], 101), bpf_filter="")
    assert [d.payload for d in got] == [PAYLOAD]


# -- malformed batches ----------------------------------------------------------------------------

def test_meta_outside_the_buffer():
    """Offsets and lengths that point past the data never read it: such records decode as the
    bytes there are (none, or a cut frame) on both paths."""
    frame = _eth(INVITE)
    data = frame + frame
    n = len(frame)
    recs = [(1, 0, 0, n), (2, 1, n, n + 1), (3, 2, 2 * n, 60), (4, 3, 0xFFFFFFFF, 0xFFFFFFFF),
            (5, 4, n - 10, 100), (6, 5, 0, 0), (7, 999999, n, n)]
    meta = b"".join(struct.pack("=IIII", *r) for r in recs)
    got, counters = both(lambda: [RawBatch(1, data, meta, 7)])
    assert [(d.frame, d.payload) for d in got] == [(7, PAYLOAD), (8, PAYLOAD), (13, PAYLOAD)]
    assert got[2].ts == 7 + 999999 * 1e-6


def test_timestamps_bit_exact():
    """ts is sec + usec * 1e-6 as Python computes it (not usec / 1e6, not a fused multiply-add):
    small seconds make a last-bit difference visible."""
    frame = _eth(INVITE)
    rng = random.Random(7)
    recs = [(sec, rng.randrange(10**6)) for sec in (0, 1, 1_700_000_000) for _ in range(2000)]
    meta = b"".join(struct.pack("=IIII", sec, usec, 0, len(frame)) for sec, usec in recs)
    got, _ = both(lambda: [RawBatch(1, frame, meta, 1)], pipeline.ProbeOptions(dedup_window=0))
    assert [d.ts for d in got] == [sec + usec * 1e-6 for sec, usec in recs]


def test_mutated_frames():
    """Random byte flips and cuts in the headers, random offsets and lengths: equal results."""
    rng = random.Random(11)
    base = [_eth(INVITE), link("vlan", INVITE), _eth(tunnel("vxlan", INVITE)), _eth(_copy(INVITE))]
    for _ in range(40):
        frames, recs, pos = [], [], 0
        for i in range(64):
            f = bytearray(rng.choice(base))
            for _ in range(rng.randrange(3)):
                f[rng.randrange(12, 48)] = rng.randrange(256)
            f = bytes(f[:rng.choice([len(f), rng.randrange(len(f) + 1)])])
            off = pos if rng.random() < 0.95 else rng.randrange(2 * pos + 2)
            caplen = len(f) if rng.random() < 0.95 else rng.randrange(2 * len(f) + 2)
            recs.append((1000 + i // 8, rng.randrange(10**6), off, caplen))
            frames.append(f)
            pos += len(f)
        data = b"".join(frames)
        meta = b"".join(struct.pack("=IIII", *r) for r in recs)
        both(lambda: [RawBatch(1, data, meta, 1)], pipeline.ProbeOptions(strict=False))


def test_meta_not_whole_records():
    meta = struct.pack("=IIII", 1, 0, 0, 60)[:15]
    for native in (True, False):
        with pytest.raises(struct.error):
            _decoder(native, pipeline.ProbeOptions()).decode_batch(RawBatch(1, b"\0" * 60, meta, 1))


def test_counts_and_state_shared_across_batches():
    """The same packet in consecutive batches (the fast path of one, the general path of the
    other) is one duplicate: the state lives in the SpanDedup object, not in the C code."""
    plain, tagged = _eth(INVITE), link("vlan", _copy(INVITE))

    def batches():
        return [RawBatch(1, plain, struct.pack("=IIII", 100, 0, 0, len(plain)), 1),
                RawBatch(1, tagged, struct.pack("=IIII", 100, 500, 0, len(tagged)), 2),
                RawBatch(1, plain, struct.pack("=IIII", 100, 900, 0, len(plain)), 3)]
    got, counters = both(batches)
    assert [d.frame for d in got] == [1]
    assert counters["dedup.duplicates"] == 2


# -- the de-duplication mirror (keys written to SpanDedup's dicts only when Python looks) ---------

def _raw_batch(records, first=1):
    """A RawBatch of (ts, frame bytes) records."""
    data, meta = b"", b""
    for ts, frame in records:
        sec, usec = divmod(round(ts * 1e6), 10**6)
        meta += struct.pack("=IIII", sec, usec, len(data), len(frame))
        data += frame
    return RawBatch(1, data, meta, first)


def _frames(records, first):
    """The same records as Frame objects: the decoder's all-Python path."""
    out = []
    for i, (ts, frame) in enumerate(records):
        sec, usec = divmod(round(ts * 1e6), 10**6)
        out.append(Frame(sec + usec * 1e-6, first + i, 1, frame, len(frame)))
    return out


def test_python_path_between_batches_updates_the_time():
    """A copy decoded by Python between two batches moves the key's time on in the dict; the
    next batch must see that time, not the one it stored itself. Timeline (window 10 ms): A at
    0, its copy through Python at 9 ms, A again at 15 ms: 6 ms after the copy, a duplicate."""
    plain, tagged = _eth(INVITE), link("vlan", _copy(INVITE))
    got, counters = both(lambda: [_raw_batch([(T0, plain)]), _frames([(T0 + 0.009, tagged)], 2),
                                  _raw_batch([(T0 + 0.015, plain)], 3)])
    assert [d.frame for d in got] == [1]
    assert counters["dedup.duplicates"] == 2


def test_keys_put_in_the_dicts_by_others_are_found():
    """Keys in the dicts before a batch (any shape decode.py makes, or a foreign one) are
    honoured; a tuple subclass, which could equal a key without being one, makes the batch
    run on the dicts."""
    payload = PAYLOAD
    for extra in [
        {(A_IP, B_IP, 1, 5060, 5060, payload): T0},  # the packet below, stored by Python
        {(A_IP, B_IP, None, 5060, 5060, payload): T0, b"\x45" * 20: T0},  # IPv6-like, bytes
        {("10.0.0.01", B_IP, 1, 5060, 5060, payload): T0, (A_IP, B_IP, 1, b"x"): T0},
        {(A_IP, B_IP, 1, 5060, 5060, payload): T0 - 0.5},  # too old to count
    ]:
        pkt = _eth(IP(_with(INVITE, id=1)))

        def batches():
            return [_raw_batch([(T0 + 0.002, pkt), (T0 + 0.004, pkt)])]
        opts = pipeline.ProbeOptions()
        native, pure = _decoder(True, opts), _decoder(False, opts)
        for dec in (native, pure):
            dec.dedup._seen.update(extra)
            dec.dedup._rotate_at = T0 + 0.010
        got, want = _run(native, batches()), _run(pure, batches())
        assert got == want and dict(native.c) == dict(pure.c)
        assert native.dedup._seen == pure.dedup._seen and native.dedup._older == pure.dedup._older


def test_a_tuple_subclass_key_falls_back_to_the_dicts():
    class Key(tuple):
        pass
    pkt = _eth(IP(_with(INVITE, id=1)))
    opts = pipeline.ProbeOptions()
    native, pure = _decoder(True, opts), _decoder(False, opts)
    for dec in (native, pure):
        dec.dedup._seen[Key((A_IP, B_IP, 1, 5060, 5060, PAYLOAD))] = T0
        dec.dedup._rotate_at = T0 + 0.010
    batch = [_raw_batch([(T0 + 0.002, pkt), (T0 + 0.020, pkt), (T0 + 0.021, pkt)])]
    got, want = _run(native, batch), _run(pure, batch)
    assert got == want and [d.frame for d in got] == [2]
    assert dict(native.c) == dict(pure.c) and native.c["dedup.duplicates"] == 2
    assert native.dedup._seen == pure.dedup._seen and native.dedup._older == pure.dedup._older


def test_two_decoders_taking_turns():
    """The mirror follows one SpanDedup at a time: batches of two decoders interleaved give
    what each gives alone."""
    recs = [(T0 + i * 0.002, _eth(IP(_with(INVITE, id=i * i % 6)))) for i in range(40)]
    opts = pipeline.ProbeOptions()
    n1, n2, pure = _decoder(True, opts), _decoder(True, opts), _decoder(False, opts)
    out1, out2 = [], []
    for i in range(0, 40, 5):
        out1 += n1.decode_batch(_raw_batch(recs[i:i + 5], i + 1))
        out2 += n2.decode_batch(_raw_batch(recs[i:i + 5], i + 1))
    want = _run(pure, [_raw_batch(recs[i:i + 5], i + 1) for i in range(0, 40, 5)])
    assert out1 == out2 == want and 0 < len(want) < 40
    for dec in (n1, n2):
        dec.flush()
        assert dict(dec.c) == dict(pure.c)
        assert dec.dedup._seen == pure.dedup._seen and dec.dedup._older == pure.dedup._older


@pytest.mark.parametrize("seed", range(12))
def test_random_copies_batches_and_paths(seed):
    """Few distinct packets, many copies (plain on the fast path, 802.1Q-tagged on the Python
    path), times that jump forwards and sometimes back, cut into random batches, some of them
    decoded frame by frame in Python: the same datagrams, counters and dicts."""
    rng = random.Random(seed)
    pool = [_with(INVITE, id=rng.randrange(3), src=rng.choice([A_IP, B_IP]),
                  udp_sport=rng.choice([5060, 5061])) for _ in range(6)]
    pool += [bytes(IP(src=A_IP, dst=B_IP, id=1) / UDP(sport=5060, dport=5060) / Raw(b"x" * n))
             for n in (0, 1, 15, 16, 17)]
    ts, records = T0, []
    for _ in range(300):
        ts += rng.choice([0.0, 0.0005, 0.002, 0.004, 0.009, 0.011, 0.03, -0.003, -0.012])
        pkt = IP(rng.choice(pool))
        frame = _eth(pkt) if rng.random() < 0.7 else link("vlan", _copy(pkt, rng.randrange(1, 64)))
        records.append((max(ts, 1.0), frame))
    cuts = sorted(rng.sample(range(1, len(records)), 25))
    window = rng.choice([0.010, 0.010, 0.005, 0.0])
    batches, start = [], 0
    for end in cuts + [len(records)]:
        part = records[start:end]
        batches.append(_frames(part, start + 1) if rng.random() < 0.2 else _raw_batch(part, start + 1))
        start = end
    got, counters = both(lambda: batches, pipeline.ProbeOptions(dedup_window=window, bpf_filter=""))
    assert (counters.get("dedup.duplicates", 0) > 10) == (window > 0)
