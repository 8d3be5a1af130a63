"""Property-based fuzzing with hypothesis, bounded for CI (a few seconds a harness): inputs are
mutations of the seed corpus (corpus.py, cut from real captures) or raw bytes. The long run of
the same properties is tests/fuzz/long_run.py (docs/reliability.md, "Fuzzing", has its
results); every input that ever failed is a test of its own beside its module's tests."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus import FILES, mutate, seeds
from harnesses import (decode_differential, file_never_crashes, pcapfile_differential,
                       rtcp_never_raises, scan_differential, sdp_never_raises)

CI = settings(max_examples=400, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mutated(kind: str):
    """A seed of `kind`, mutated by a seeded generator; or raw bytes."""
    pool = seeds()[kind]

    def build(args):
        i, seed = args
        return mutate(pool[i % len(pool)], random.Random(seed), pool)
    return st.one_of(st.tuples(st.integers(0, 10**6), st.integers(0, 2**32)).map(build),
                     st.binary(max_size=2048))


def test_the_corpus_has_every_kind():
    assert all(len(v) >= 3 for v in seeds().values()), {k: len(v) for k, v in seeds().items()}


@CI
@given(_mutated("sip"))
def test_scanner_c_equals_python(payload):
    scan_differential(payload)


@CI
@given(_mutated("sdp"))
def test_sdp_parser_never_raises(body):
    sdp_never_raises(body)


@CI
@given(_mutated("rtcp"))
def test_rtcp_parser_never_raises(payload):
    rtcp_never_raises(payload)


@CI
@given(st.lists(_mutated("frame"), min_size=1, max_size=8))
def test_frame_decoder_c_equals_python(frames):
    decode_differential(frames)


# whole files: few examples, each a file in memory read by both readers or replayed
FILES_CI = {"deadline": None, "derandomize": True,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture]}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@settings(max_examples=40, **FILES_CI)
@given(seed=st.integers(0, 2**32))
def test_mutated_capture_files_never_raise(path, seed):
    data = path.read_bytes()
    file_never_crashes(mutate(data, random.Random(seed), [data]), filtered=seed % 2 == 0)


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".pcap"], ids=lambda p: p.name)
@settings(max_examples=150, **FILES_CI)
@given(seed=st.integers(0, 2**32))
def test_mutated_pcap_files_read_mapped_as_libpcap_reads_them(path, seed):
    data = path.read_bytes()
    pcapfile_differential(mutate(data, random.Random(seed), [data]), filtered=seed % 4 == 0)
