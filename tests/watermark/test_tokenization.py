"""Text is not token ids: round-trip measurement, candidate re-tokenizations, foreign-text
signals, and detection from text that survives a tokenizer that does not round-trip.

Statistical outcomes are seeded (fixed key, fixed torch generator): each is a fixed number.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from release.testing import LOWERCASING_VOCAB, build_lowercasing_tokenizer, build_tiny_tokenizer
from watermark.config import WatermarkConfig
from watermark.detector import detect, detect_text
from watermark.keys import WatermarkKey
from watermark.text_detection import detect_text_robust
from watermark.tokenization import (
    ASCII_PUNCTUATION,
    PLAIN,
    UNWRAPPED,
    assess_text,
    candidate_tokenizations,
    measure_roundtrip,
    token_ids_digest,
)

UPPER = [LOWERCASING_VOCAB[c] for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ "]


@pytest.fixture(scope="module")
def lowercasing() -> Any:
    return build_lowercasing_tokenizer()


@pytest.fixture(scope="module")
def bpe() -> Any:
    return build_tiny_tokenizer(vocab_size=512)


def watermarked_upper_case_ids(
    config: WatermarkConfig, key: WatermarkKey, length: int, seed: int
) -> list[int]:
    """Watermarked sampling from random logits that favour capitals and spaces (what the
    upper-case-trained model of the gateway test does), seeded."""
    import torch

    from watermark.processor import GreenListProcessor

    generator = torch.Generator().manual_seed(seed)
    processor = GreenListProcessor(config, key)
    bias = torch.full((config.vocab_size,), -6.0)
    bias[UPPER] = 0.0
    ids = torch.tensor([[LOWERCASING_VOCAB["T"]]])
    for _ in range(length):
        scores = torch.randn(1, config.vocab_size, generator=generator) * 2.0 + bias
        scores = processor(ids, scores)
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, nxt], dim=1)
    return [int(i) for i in ids[0, 1:].tolist()]


def config_for(tokenizer: Any, key: WatermarkKey) -> WatermarkConfig:
    return WatermarkConfig.create(key, len(tokenizer), tokenizer=tokenizer, gamma=0.25, delta=2.0)


def test_lowercasing_tokenizer_does_not_round_trip(lowercasing: Any) -> None:
    ids = [LOWERCASING_VOCAB[c] for c in "HELLO WORLD"]
    assert lowercasing.decode(ids) == "HELLO WORLD"
    assert lowercasing.encode("HELLO WORLD", add_special_tokens=False) != ids
    report = measure_roundtrip(lowercasing, [ids])
    assert (report.sequences, report.exact) == (1, 0)
    assert report.token_rate == pytest.approx(1 / 11)  # only the space survives


def test_bpe_round_trips_its_own_encoding(bpe: Any) -> None:
    text = "The release gateway keeps open weights free for everyone to download."
    report = measure_roundtrip(bpe, [bpe.encode(text, add_special_tokens=False)])
    assert report.sequence_rate == 1.0
    assert report.token_rate == 1.0


def test_round_trip_counts_non_canonical_segmentations(bpe: Any) -> None:
    """A BPE model may sample a word letter by letter; re-encoding merges it again."""
    word = "release"
    canonical = bpe.encode(word, add_special_tokens=False)
    letters = [bpe.convert_tokens_to_ids(c) for c in word]
    assert len(canonical) < len(letters)
    report = measure_roundtrip(bpe, [letters])
    assert report.exact == 0
    assert report.kept < report.tokens


def test_unnormalized_candidate_recovers_the_sampled_ids(lowercasing: Any) -> None:
    ids = [LOWERCASING_VOCAB[c] for c in "THE QUICK BROWN FOX"]
    text = lowercasing.decode(ids)
    candidates = candidate_tokenizations(lowercasing, text)
    assert candidates[0].name == PLAIN
    assert list(candidates[0].ids) != ids
    assert [list(c.ids) for c in candidates[1:]] == [ids]  # pieces equals it: deduplicated
    assert candidates[1].offsets == tuple((i, i + 1) for i in range(len(text)))


def test_candidates_decode_to_the_text(bpe: Any) -> None:
    text = "Every file of a tier is hashed with sha256 and listed in a manifest."
    for candidate in candidate_tokenizations(bpe, text):
        assert bpe.decode(list(candidate.ids)) == text


def test_foreign_text_is_flagged(lowercasing: Any, bpe: Any) -> None:
    text = "THE QUICK BROWN FOX"
    trust = assess_text(lowercasing, text, candidate_tokenizations(lowercasing, text))
    assert not trust.trusted
    assert not trust.text_roundtrip
    plain = "the release gateway keeps open weights free"
    assert assess_text(bpe, plain, candidate_tokenizations(bpe, plain)).trusted
    broken = "the release \ufffd gateway"
    trust = assess_text(bpe, broken, candidate_tokenizations(bpe, broken))
    assert trust.replacement_chars == 1
    assert not trust.trusted


def test_token_ids_digest_is_stable() -> None:
    assert token_ids_digest([1, 2, 3]) == token_ids_digest((1, 2, 3))
    assert token_ids_digest([1, 2, 3]) != token_ids_digest([1, 2, 4])


def test_regression_text_from_a_non_round_tripping_tokenizer_is_detected(
    lowercasing: Any, key: WatermarkKey
) -> None:
    """Issue 18: the plain re-tokenization called such text 'not watermarked' while its token
    ids carried the watermark at p ~ 1e-50."""
    config = config_for(lowercasing, key)
    ids = watermarked_upper_case_ids(config, key, length=400, seed=18)
    text = lowercasing.decode(ids)
    assert detect(ids, config, key).log10_p_value < -20  # the ids: clearly watermarked
    old = detect_text(text, lowercasing, config, key)  # the old path: plain encode only
    assert not old.watermarked
    assert old.p_value > 1e-3
    found = detect_text_robust(text, lowercasing, config, key)
    assert found.result.watermarked
    assert found.tokenization == "unnormalized"
    assert not found.trust.trusted
    # Bonferroni over the candidates: exactly log10(k) above the best single test.
    k = len(found.candidates)
    assert k >= 2
    assert found.result.log10_p_value == pytest.approx(found.raw_log10_p_value + math.log10(k))


def test_unwatermarked_text_stays_unwatermarked(lowercasing: Any, key: WatermarkKey) -> None:
    config = config_for(lowercasing, key)
    other = WatermarkKey(b"a different key, 32 bytes long..")
    ids = watermarked_upper_case_ids(config_for(lowercasing, other), other, length=400, seed=3)
    found = detect_text_robust(lowercasing.decode(ids), lowercasing, config, key)
    assert not found.result.watermarked
    assert found.result.p_value > 1e-3


def test_pasted_readings_spell_the_depasted_text_with_offsets_into_the_posted_one(
    bpe: Any,
) -> None:
    posted = "\u201cThe gateway\u2019s log\u201d\nis\u00a0signed."
    candidates = {c.name: c for c in candidate_tokenizations(bpe, posted)}
    ascii_text = '"The gateway\'s log"\nis signed.'
    assert bpe.decode(list(candidates[ASCII_PUNCTUATION].ids)) == ascii_text
    assert bpe.decode(list(candidates[UNWRAPPED].ids)) == ascii_text.replace("\n", " ")
    # Character-for-character substitutions: the offsets cover the posted text as it is.
    offsets = candidates[UNWRAPPED].offsets
    assert offsets is not None
    assert offsets[0][0] == 0
    assert offsets[-1][1] == len(posted)
    # Text no paste touched gets no pasted reading.
    plain = "the release gateway keeps open weights free"
    names = [c.name for c in candidate_tokenizations(bpe, plain)]
    assert names[0] == PLAIN
    assert ASCII_PUNCTUATION not in names


def _watermarked_words(bpe: Any, config: WatermarkConfig, key: WatermarkKey) -> list[int]:
    """300 watermarked tokens drawn (seeded) from words, quotes and line breaks: text that
    pasting changes."""
    import re

    import torch

    from watermark.processor import GreenListProcessor

    allowed = [
        i
        for i in range(len(bpe))
        if re.fullmatch(r" [a-z]{2,}", bpe.decode([i])) or bpe.decode([i]) in ("\n", '"', "'")
    ]
    generator = torch.Generator().manual_seed(18)
    processor = GreenListProcessor(config, key)
    bias = torch.full((config.vocab_size,), -30.0)
    bias[allowed] = 0.0
    ids = torch.tensor([[allowed[0]]])
    for _ in range(300):
        scores = processor(ids, torch.randn(1, config.vocab_size, generator=generator) * 2 + bias)
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, nxt], dim=1)
    return [int(i) for i in ids[0, 1:].tolist()]


def test_regression_pasted_text_is_read_as_it_was_before_the_paste(
    bpe: Any, key: WatermarkKey
) -> None:
    """Issue 18: smart quotes and line wrapping cost resolution by content most of its
    misses; the detector now also reads the text with ASCII quotes and line breaks as spaces."""
    import textwrap

    config = config_for(bpe, key)
    text = bpe.decode(_watermarked_words(bpe, config, key))
    assert "\n" in text
    assert '"' in text
    curly = text.replace('"', "\u201d").replace("'", "\u2019")
    wrapped = textwrap.fill(text, 40)
    for pasted, reading in ((curly, ASCII_PUNCTUATION), (wrapped, UNWRAPPED)):
        old = detect_text(pasted, bpe, config, key)
        found = detect_text_robust(pasted, bpe, config, key)
        assert found.tokenization == reading
        # Corrected for every reading tried, still far stronger than the plain one.
        assert found.result.log10_p_value < old.log10_p_value - 5
