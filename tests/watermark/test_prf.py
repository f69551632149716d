"""The tg-kgw-v1 PRF: published vectors on every backend, and backend agreement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watermark import prf
from watermark._private import np_prf
from watermark.config import PayloadSettings, WatermarkConfig
from watermark.keys import WatermarkKey
from watermark.payload import crc8, payload_symbols

VECTORS = Path(prf.__file__).parent / "vectors" / "tg-kgw-v1.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text())
CASES = [(k, c) for k in DATA["keys"] for c in k["cases"]]
VOCAB = 128256  # every vector candidate and context id is below this


def test_vectors_match_scheme() -> None:
    assert DATA["scheme"] == prf.SCHEME


def test_splitmix_matches_the_published_generator() -> None:
    # First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
    assert prf.splitmix(0, 1) == 0xE220A8397B1DCDAF
    assert prf.splitmix(0, 2) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize(("entry", "case"), CASES)
def test_vectors_pure_python(entry: dict[str, Any], case: dict[str, Any]) -> None:
    key = WatermarkKey(bytes.fromhex(entry["secret_hex"]))
    assert key.key_id == entry["key_id"]
    assert f"{key.key64:016x}" == entry["key64"]
    x = prf.context_word(key.key64, case["context"])
    w = prf.prf_word(key.key64, case["context"], case["candidate"], self_seeded=case["self_seeded"])
    assert f"{x:016x}" == case["context_word"]
    assert f"{w:08x}" == case["prf_word"]
    assert prf.is_favoured(w, 0.25) == case["green_gamma_0.25"]
    assert prf.is_favoured(w, 0.5) == case["green_gamma_0.5"]
    assert prf.colour(w, 2) == case["colour_b2"]
    assert prf.slot_of(x, 14) == case["slot_L14"]


@pytest.mark.parametrize(("entry", "case"), CASES)
def test_vectors_numpy(entry: dict[str, Any], case: dict[str, Any]) -> None:
    key = WatermarkKey(bytes.fromhex(entry["secret_hex"]))
    h = len(case["context"])
    tables = np_prf.tables_for(key.key64, VOCAB, h)
    ids = np.asarray([*case["context"], case["candidate"]], dtype=np.int64)
    x = np_prf.context_words(ids, tables, h)
    w = np_prf.candidate_words(x, ids[h:], tables, self_seeded=case["self_seeded"])
    assert f"{int(x[0]):016x}" == case["context_word"]
    assert f"{int(w[0]):08x}" == case["prf_word"]
    assert int(np_prf.slots(x, 14)[0]) == case["slot_L14"]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("self_seeded", [False, True])
def test_vectors_torch(device: str, self_seeded: bool) -> None:
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from watermark.processor import GreenListProcessor

    for entry in DATA["keys"]:
        key = WatermarkKey(bytes.fromhex(entry["secret_hex"]))
        for case in entry["cases"]:
            if case["self_seeded"] != self_seeded:
                continue
            h = len(case["context"])
            for gamma in (0.25, 0.5):
                config = WatermarkConfig.create(
                    key, VOCAB, gamma=gamma, delta=1.0, context_width=h, self_seeded=self_seeded
                )
                ids = torch.tensor([case["context"]], device=device)
                out = GreenListProcessor(config, key)(ids, torch.zeros(1, VOCAB, device=device))
                assert bool(out[0, case["candidate"]] == 1.0) == case[f"green_gamma_{gamma}"]


def test_payload_vectors() -> None:
    settings_ = PayloadSettings(**DATA["payload_settings"])
    for item in DATA["payloads"]:
        assert crc8(item["payload"], settings_.payload_bits) == item["crc8"]
        assert list(payload_symbols(item["payload"], settings_)) == item["symbols"]


def test_crc8_check_value() -> None:
    # CRC-8/SMBUS check value over ASCII "123456789".
    assert crc8(int.from_bytes(b"123456789", "big"), 72) == 0xF4


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=16, max_size=40),
    context=st.lists(st.integers(0, 50_000), min_size=1, max_size=5),
    candidates=st.lists(st.integers(0, 50_000), min_size=1, max_size=8),
    self_seeded=st.booleans(),
)
def test_numpy_agrees_with_reference(
    secret: bytes, context: list[int], candidates: list[int], self_seeded: bool
) -> None:
    key64 = prf.key_word(secret)
    h = len(context)
    tables = np_prf.tables_for(key64, 50_001, h)
    x = np_prf.context_words(np.asarray([*context, 0], dtype=np.int64), tables, h)
    xs = np.repeat(x, len(candidates))
    words = np_prf.candidate_words(
        xs, np.asarray(candidates, dtype=np.int64), tables, self_seeded=self_seeded
    )
    expected = [prf.prf_word(key64, context, c, self_seeded=self_seeded) for c in candidates]
    assert words.tolist() == expected


@settings(max_examples=15, deadline=None)
@given(
    secret=st.binary(min_size=16, max_size=32),
    vocab=st.integers(2, 3000),
    h=st.integers(1, 4),
    self_seeded=st.booleans(),
    batch=st.integers(1, 4),
    data=st.data(),
)
def test_torch_agrees_with_numpy(
    secret: bytes, vocab: int, h: int, self_seeded: bool, batch: int, data: st.DataObject
) -> None:
    torch = pytest.importorskip("torch")
    from watermark.processor import GreenListProcessor

    key = WatermarkKey(secret)
    config = WatermarkConfig.create(
        key, vocab, gamma=0.3, delta=1.0, context_width=h, self_seeded=self_seeded
    )
    rows = data.draw(
        st.lists(
            st.lists(st.integers(0, vocab - 1), min_size=h, max_size=h),
            min_size=batch,
            max_size=batch,
        )
    )
    out = GreenListProcessor(config, key)(torch.tensor(rows), torch.zeros(batch, vocab))
    tables = np_prf.tables_for(key.key64, vocab, h)
    thr = prf.threshold32(0.3)
    for r, row in enumerate(rows):
        ids = np.asarray([*row, 0], dtype=np.int64)
        x = np.repeat(np_prf.context_words(ids, tables, h), vocab)
        w = np_prf.candidate_words(
            x, np.arange(vocab, dtype=np.int64), tables, self_seeded=self_seeded
        )
        assert ((w < thr).astype(np.float32) == out[r].numpy()).all()


@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5])
def test_green_lists_have_gamma_share_and_vary_with_context(gamma: float) -> None:
    key64 = prf.key_word(b"k" * 32)
    vocab = 20_000
    tables = np_prf.tables_for(key64, vocab, 1)
    thr = prf.threshold32(gamma)
    lists = []
    for previous in (1, 2, 3):
        x = np.repeat(np_prf.context_words(np.asarray([previous, 0]), tables, 1), vocab)
        lists.append(np_prf.candidate_words(x, np.arange(vocab), tables, self_seeded=False) < thr)
    for green in lists:
        assert abs(green.mean() - gamma) < 0.02
    # Different contexts give (nearly) independent lists: overlap ~ gamma**2.
    overlap = (lists[0] & lists[1]).mean()
    assert abs(overlap - gamma * gamma) < 0.02
