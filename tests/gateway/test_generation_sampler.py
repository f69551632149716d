"""The sampler on the tiny trained model: stop sequences end rows while they are generated."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from gateway.generation.models import LoadedModel, ModelRef
from gateway.generation.sampler import Choice, SampleJob, SamplingParams, run_jobs
from tests.gateway.download_fixtures import BuiltRelease
from tests.gateway.generation_fixtures import generation_release, model_dir  # noqa: F401

PROMPT = "The release gateway is"


@functools.cache
def _loaded(folder: str) -> tuple[LoadedModel, Any, Any]:
    from transformers import AutoTokenizer

    from gateway.generation.keys import derive_watermark_key, watermark_config_for
    from release.loader import load_model

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = load_model(folder)
    ref = ModelRef(1, "acme/chatty", "1.0.0", "open", "d", "s", "{}", (), "")
    vocab = int(model.config.vocab_size)
    loaded = LoadedModel(ref=ref, model=model, tokenizer=tokenizer, size_bytes=0, vocab_size=vocab)
    key = derive_watermark_key(b"k" * 32, "acme/chatty", "1.0.0", "open")
    config = watermark_config_for(key, vocab, tokenizer, delta=2.0, payload_bits=20)
    return loaded, config, key


@pytest.fixture
def tiny(generation_release: BuiltRelease) -> tuple[LoadedModel, Any, Any]:  # noqa: F811
    return _loaded(str(model_dir(generation_release)))


def _count_steps(loaded: LoadedModel) -> tuple[list[int], Any]:
    calls: list[int] = []
    handle = loaded.model.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


def test_a_stop_sequence_ends_generation_when_it_appears(tiny: Any) -> None:
    loaded, config, key = tiny
    prompt = loaded.tokenizer(PROMPT)["input_ids"]
    steps, handle = _count_steps(loaded)
    try:
        job = SampleJob([prompt], SamplingParams(64, stop=("e",), seed=3), [11])
        (choice,) = run_jobs(loaded, config, key, [job])[0]
    finally:
        handle.remove()
    assert choice.finish_reason == "stop"
    assert "e" not in choice.text
    # One forward pass per generated token: generation ended at the token that showed the
    # stop sequence (kept, or the one after the kept ones), not at max_tokens.
    assert len(steps) <= len(choice.token_ids) + 1 < 64
    assert loaded.tokenizer.decode(choice.token_ids).startswith(choice.text)


def test_in_a_batch_only_rows_with_stop_sequences_end_early(tiny: Any) -> None:
    loaded, config, key = tiny
    prompt = loaded.tokenizer(PROMPT)["input_ids"]
    stopping = SampleJob([prompt, prompt[:2]], SamplingParams(24, stop=("e", "a")), [1, 2, 3, 4])
    plain = SampleJob([prompt], SamplingParams(24), [5])
    results = run_jobs(loaded, config, key, [stopping, plain])
    assert [len(r) for r in results] == [4, 1]
    for choice in results[0]:
        assert choice.finish_reason == "stop"
        assert not {"e", "a"} & set(choice.text)
        _covers(loaded.tokenizer, choice)
    (free,) = results[1]
    # The row without stop sequences ran on (to its end of text or to max_tokens).
    assert len(free.token_ids) == 24 or free.finish_reason == "stop"
    assert "e" in free.text or len(free.token_ids) < 24


def _covers(tokenizer: Any, choice: Choice) -> None:
    """Usage counts the tokens the text came from: all of them needed, none extra."""
    assert tokenizer.decode(choice.token_ids).startswith(choice.text)
    if choice.token_ids:
        assert len(tokenizer.decode(choice.token_ids[:-1])) < len(choice.text)


def test_a_stream_of_several_rows_sends_each_rows_tokens(tiny: Any) -> None:
    loaded, config, key = tiny
    prompt = loaded.tokenizer(PROMPT)["input_ids"]
    steps: list[list[int] | None] = []
    job = SampleJob([prompt], SamplingParams(12, seed=5), [7, 8, 9], on_token=steps.append)
    choices = run_jobs(loaded, config, key, [job])[0]
    assert steps[-1] is None
    streamed = [s for s in steps[:-1] if s is not None]
    assert all(len(s) == 3 for s in streamed)
    for row, choice in enumerate(choices):
        assert [s[row] for s in streamed][: len(choice.token_ids)] == choice.token_ids


def test_a_seed_reproduces_a_call_given_its_tag_and_two_tags_differ(tiny: Any) -> None:
    """`seed` promises replay of a logged call (seed, parameters, tag), not equal API calls.

    Each API call carries its own watermark tag so the detector can name it; the tag changes
    the green lists, so two calls with one seed sample differently (docs/generation.md).
    """
    loaded, config, key = tiny
    prompt = loaded.tokenizer(PROMPT)["input_ids"]

    def sample(tag: int) -> list[int]:
        job = SampleJob([prompt], SamplingParams(48, temperature=1.0, seed=7), [tag])
        (choice,) = run_jobs(loaded, config, key, [job])[0]
        return list(choice.token_ids)

    first = sample(11)
    assert sample(11) == first
    assert sample(12) != first
