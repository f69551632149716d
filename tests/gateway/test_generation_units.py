"""Pieces of generation without a server: call tags, key derivation, model names, batching."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

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
    from gateway.generation.prompts import NoChatTemplate, encode_prompts

    class Plain:
        chat_template = None

    with pytest.raises(NoChatTemplate) as raised:
        encode_prompts(
            Plain(), model="acme/x", vocab_size=2, messages=[{"role": "user", "content": "hi"}]
        )
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
        jobs = [SampleJob([[1]], same, [i]) for i in range(6)]
        jobs.append(SampleJob([[1]], SamplingParams(8, seed=3), [100]))  # seeded: alone
        jobs.append(SampleJob([[1]], SamplingParams(9), [200]))  # other settings: own batch
        return await asyncio.gather(*(batcher.submit(loaded, job) for job in jobs))

    # A thread of its own: an event loop left running in this thread by another test's
    # library (Playwright's sync API) must not decide whether this test can run.
    with ThreadPoolExecutor(1) as runner:
        results = runner.submit(asyncio.run, main()).result(timeout=60)
    assert [r[0].text for r in results] == ["0", "1", "2", "3", "4", "5", "100", "200"]
    assert sorted(calls) == [1, 1, 2, 4]  # 6 compatible rows -> batches of 4 and 2


class CharTokenizer:
    """Token i decodes to PIECES[i]; 0 is the end of text (a special token)."""

    PIECES: ClassVar[list[str]] = ["<eos>", "a", "b", "c", " ", ".", "c.", "\ufffd"]
    eos_token_id = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.PIECES[i] for i in ids if i != 0 or not skip_special_tokens)


def test_row_stops_end_only_the_rows_whose_text_shows_a_stop() -> None:
    import torch

    from gateway.generation.sampler import RowStops

    stopping = SampleJob([[1]], SamplingParams(8, stop=("c.",)), [1, 2])
    plain = SampleJob([[1]], SamplingParams(8), [3])
    stops = RowStops(CharTokenizer(), [stopping, plain], width=1, eos={0})
    steps = [[3, 2, 3], [5, 3, 5], [1, 5, 0], [1, 1, 0]]
    rows = [[1], [1], [1]]
    answers = []
    for step in steps:
        rows = [[*row, token] for row, token in zip(rows, step, strict=True)]
        answers.append(stops(torch.tensor(rows), None).tolist())
    # Row 0 reads "c." after 2 tokens, row 1 after 3; row 2 has no stops and ends at its EOS.
    assert answers == [
        [False, False, False],
        [True, False, False],
        [True, True, True],
        [True, True, True],
    ]
    assert stops.ended == {0: 2, 1: 3}

    stopping.cancel.set()  # the client went away: every row of the job stops
    fresh = RowStops(CharTokenizer(), [stopping, plain], width=1, eos={0})
    assert fresh(torch.tensor([[1, 1], [1, 1], [1, 1]]), None).tolist() == [True, True, False]


def test_kept_tokens_are_those_the_returned_text_came_from() -> None:
    from gateway.generation.sampler import _kept_tokens

    tokenizer = CharTokenizer()
    assert _kept_tokens(tokenizer, [1, 2, 6, 1], "abc") == 3  # "c." is needed for its "c"
    assert _kept_tokens(tokenizer, [1, 2, 3, 5], "ab") == 2
    assert _kept_tokens(tokenizer, [3, 5], "") == 0


def test_stream_texts_hold_back_stop_prefixes_and_end_choices_separately() -> None:
    from gateway.generation.deltas import StreamTexts

    texts = StreamTexts(CharTokenizer(), 2, ("c.",))
    assert texts.step([1, 2]) == [(0, "a"), (1, "b")]
    # "c" might start the stop sequence: held back until the next token says otherwise.
    assert texts.step([3, 3]) == []
    assert texts.step([5, 1]) == [(1, "ca")]  # choice 0 reads "ac." and ends with "a" sent
    assert texts.choices[0].ended
    assert not texts.choices[1].ended
    assert texts.step([4, 0]) == []  # choice 0 ignores its padding; choice 1 ends on EOS
    assert texts.done
    assert texts.choices[1].rest("bca") == ""
    assert texts.choices[0].rest("a") == ""
    # An incomplete UTF-8 sequence is not sent until it decodes.
    partial = StreamTexts(CharTokenizer(), 1, ())
    assert partial.step([7]) == []
    assert partial.choices[0].rest("é") == "é"


@pytest.mark.parametrize(
    ("prompt", "prompts"),
    [
        ("hi", ["hi"]),
        (["a", "b"], ["a", "b"]),
        ([5, 6, 7], [[5, 6, 7]]),
        ([[5, 6], [7]], [[5, 6], [7]]),
        ([], []),
    ],
)
def test_completion_prompts_take_every_openai_form(prompt: Any, prompts: list[Any]) -> None:
    from gateway.schemas.openai import CompletionRequest

    assert CompletionRequest(model="acme/x", prompt=prompt).prompt_list() == prompts


@pytest.mark.parametrize("prompt", [["a", 1], [1.5], [True], [[1], "a"]])
def test_completion_prompts_refuse_mixed_forms(prompt: Any) -> None:
    from pydantic import ValidationError

    from gateway.schemas.openai import CompletionRequest

    with pytest.raises(ValidationError):
        CompletionRequest.model_validate_json(json.dumps({"model": "acme/x", "prompt": prompt}))


def test_model_ref_cache_is_a_bounded_lru() -> None:
    from gateway.services.admission import CachedModel, ModelRefCache

    cache = ModelRefCache(capacity=2)

    def entry(version: str) -> CachedModel:
        ref = ModelRef(1, "acme/x", version, "open", "d", "s", "{}", (), "")
        return CachedModel(ref, org_id=1, release_name="x", pinned=False, gated=False)

    cache.put("a", entry("1"))
    cache.put("b", entry("2"))
    assert cache.get("a") is not None  # now the most recent
    cache.put("c", entry("3"))
    assert cache.get("b") is None
    assert cache.get("a") is not None
    cache.forget("a")
    assert cache.get("a") is None


def test_token_quota_prunes_once_per_window_and_refuses_over_the_limit() -> None:
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, event
    from sqlalchemy import text as sql

    from gateway.services.admission import TokenQuota
    from gateway.services.ratelimit import RateLimited

    engine = create_engine("sqlite://")
    statements: list[str] = []
    event.listen(
        engine, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0])
    )
    with engine.begin() as db:
        db.execute(
            sql(
                "CREATE TABLE rate_limits (bucket TEXT, window_start INTEGER, count INTEGER, "
                "PRIMARY KEY (bucket, window_start))"
            )
        )
    quota = TokenQuota(100)
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    statements.clear()
    with engine.begin() as db:
        window = quota.charge(db, 7, 60, now)
        quota.charge(db, 7, 30, now)
        quota.refund(db, 7, 50, window)
        with pytest.raises(RateLimited) as refused:
            quota.charge(db, 7, 61, now)
    assert statements == ["DELETE", "INSERT", "INSERT", "UPDATE", "INSERT"]
    assert refused.value.headers == {"Retry-After": "30"}
