"""Pieces of generation without a server: call tags, key derivation, model names, batching."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from gateway.errors import ValidationFailed
from gateway.generation.batcher import MicroBatcher
from gateway.generation.calls import payload_for_tag, payloads_for_tags, symbols_for_payloads
from gateway.generation.keys import derive_watermark_key
from gateway.generation.models import LoadedModel, ModelRef, parse_model_name
from gateway.generation.sampler import Choice, SampleJob, SamplingParams, apply_stop
from watermark import PayloadSettings
from watermark.payload import payload_symbols


def test_call_tags_are_a_permutation_and_vectorized_symbols_match_the_library() -> None:
    bits = 12
    payloads = [payload_for_tag(t, bits) for t in range(1 << bits)]
    assert sorted(payloads) == list(range(1 << bits))
    assert payload_for_tag(1 << bits, bits) == payloads[0]  # tags wrap after 2**bits calls
    # Consecutive calls get payloads far apart, so a decoding slip rarely hits a neighbour.
    assert all(bin(a ^ b).count("1") >= 2 for a, b in itertools.pairwise(payloads))
    tags = np.arange(0, 5000, dtype=np.uint64)
    assert payloads_for_tags(tags, 20).tolist() == [payload_for_tag(int(t), 20) for t in tags]
    for settings in (PayloadSettings(20), PayloadSettings(24, bits_per_symbol=3)):
        sample = np.array([0, 1, 12345, (1 << settings.payload_bits) - 1], dtype=np.uint64)
        got = symbols_for_payloads(sample, settings)
        want = [payload_symbols(int(p), settings) for p in sample]
        assert got.tolist() == [list(w) for w in want]


def test_watermark_keys_are_per_model_tier_and_deterministic() -> None:
    master = b"m" * 32
    one = derive_watermark_key(master, "acme/tiny", "1.0.0", "open")
    assert one == derive_watermark_key(master, "acme/tiny", "1.0.0", "open")
    others = {
        derive_watermark_key(master, "acme/tiny", "1.0.0", "optimized").key_id,
        derive_watermark_key(master, "acme/tiny", "1.0.1", "open").key_id,
        derive_watermark_key(b"n" * 32, "acme/tiny", "1.0.0", "open").key_id,
    }
    assert one.key_id not in others
    assert len(others) == 3
    assert one.to_hex() not in repr(one)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("acme/tiny", ("acme/tiny", None, "open")),
        ("acme/tiny@1.0.0", ("acme/tiny", "1.0.0", "open")),
        ("acme/tiny:optimized", ("acme/tiny", None, "optimized")),
        ("acme/tiny@2.0.0-rc.1:optimized", ("acme/tiny", "2.0.0-rc.1", "optimized")),
    ],
)
def test_model_names(name: str, parsed: tuple[str, str | None, str]) -> None:
    assert parse_model_name(name) == parsed


@pytest.mark.parametrize("name", ["tiny", "acme/tiny/x", "../etc", "acme/tiny@", "acme/t:A B"])
def test_bad_model_names(name: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_model_name(name)


def test_stop_sequences() -> None:
    assert apply_stop("hello world. more", (".",)) == ("hello world", True)
    assert apply_stop("abc", ("x", "")) == ("abc", False)
    assert apply_stop("a\n\nb. c", (".", "\n\n")) == ("a", True)


def test_chat_without_a_template_is_a_clear_422() -> None:
    from gateway.services.generation import GenerationInput, GenerationService, NoChatTemplate

    class Plain:
        chat_template = None

    ref = ModelRef(1, "acme/x", "1", "open", "d", "s", "{}", (), "")
    loaded = LoadedModel(ref=ref, model=None, tokenizer=Plain(), size_bytes=0, vocab_size=2)
    request = GenerationInput(
        model="acme/x", params=SamplingParams(4), messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(NoChatTemplate) as raised:
        GenerationService._encode(loaded, request)
    assert raised.value.status == 422
    assert "no chat template" in raised.value.message


def test_micro_batcher_groups_concurrent_compatible_requests() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def run(loaded: Any, jobs: list[SampleJob]) -> list[list[Choice]]:
        with lock:
            calls.append(sum(len(j.payloads) for j in jobs))
        return [[Choice([p], str(p), "length") for p in job.payloads] for job in jobs]

    ref = ModelRef(1, "acme/x", "1", "open", "d", "s", "{}", (), "")
    loaded = LoadedModel(ref=ref, model=None, tokenizer=None, size_bytes=0, vocab_size=2)

    async def main() -> list[list[Choice]]:
        batcher = MicroBatcher(run, ThreadPoolExecutor(1), window_seconds=0.05, max_rows=4)
        same = SamplingParams(8)
        jobs = [SampleJob([1], same, [i]) for i in range(6)]
        jobs.append(SampleJob([1], SamplingParams(8, seed=3), [100]))  # seeded: alone
        jobs.append(SampleJob([1], SamplingParams(9), [200]))  # other settings: own batch
        return await asyncio.gather(*(batcher.submit(loaded, job) for job in jobs))

    # A thread of its own: an event loop left running in this thread by another test's
    # library (Playwright's sync API) must not decide whether this test can run.
    with ThreadPoolExecutor(1) as runner:
        results = runner.submit(asyncio.run, main()).result(timeout=60)
    assert [r[0].text for r in results] == ["0", "1", "2", "3", "4", "5", "100", "200"]
    assert sorted(calls) == [1, 1, 2, 4]  # 6 compatible rows -> batches of 4 and 2
