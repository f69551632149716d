"""At publish: does the tier's tokenizer give back the token ids a detector needs from text?

The gateway watermarks the token ids its model samples; a detector that only has the text
re-tokenizes it. Two measurements, both of ``encode(decode(ids)) == ids``
(:func:`watermark.tokenization.measure_roundtrip`):

- a packaged corpus: prose that installs with Python itself (:func:`release.fidelity.
  held_out_texts`), encoded then round-tripped: catches lossy decoders and unknown tokens;
- sampled output: a few short, seeded samples of the model itself (plain multinomial
  sampling, as the gateway samples): catches what only a model shows, tokens a normalizer
  folds away and segmentations the tokenizer's merges never produce.

The lower token rate decides. Below :data:`watermark.tokenization.RELIABLE_TOKEN_RATE` the
gateway refuses watermarked generation with the release unless the publisher overrides,
and the override is signed into the statement with the figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from licensing.statements import format_decimal
from watermark.tokenization import RELIABLE_TOKEN_RATE, RoundTrip, measure_roundtrip

__all__ = [
    "SAMPLE_PROMPTS",
    "TokenizationReport",
    "check_tokenization",
]

# Prompts of the sampled-output measurement: plain openings, nothing model specific.
SAMPLE_PROMPTS = ("The", "In this release", "A model", "Every file", "We measured", "When the")
_SAMPLE_TOKENS = 48
_CORPUS_CHARS = 400  # the corpus is cut into passages of about this many characters


@dataclass(frozen=True)
class TokenizationReport:
    """The round-trip figures of one tokenizer, the verdict, and the publisher's override."""

    corpus: RoundTrip
    samples: RoundTrip
    threshold: float
    override: bool

    @property
    def rate(self) -> float:
        """The lower of the two token rates: what detection from text can count on."""
        return min(self.corpus.token_rate, self.samples.token_rate)

    @property
    def reliable(self) -> bool:
        return self.rate >= self.threshold

    @property
    def text_detection(self) -> str:
        """``reliable``, ``unreliable`` (generation is refused) or ``override``."""
        if self.reliable:
            return "reliable"
        return "override" if self.override else "unreliable"

    def to_statement(self) -> dict[str, str]:
        """The release statement's ``tokenization`` member (short strings, canonical JSON)."""
        return {
            "corpus_sequences": str(self.corpus.sequences),
            "corpus_sequence_rate": format_decimal(self.corpus.sequence_rate),
            "corpus_token_rate": format_decimal(self.corpus.token_rate),
            "sample_sequences": str(self.samples.sequences),
            "sample_sequence_rate": format_decimal(self.samples.sequence_rate),
            "sample_token_rate": format_decimal(self.samples.token_rate),
            "roundtrip_rate": format_decimal(self.rate),
            "threshold": format_decimal(self.threshold),
            "text_detection": self.text_detection,
        }

    def warning(self) -> str | None:
        """The line the CLI prints loudly when detection from text would be unreliable."""
        if self.reliable:
            return None
        what = (
            "generation is allowed by the publisher's override, which the statement records"
            if self.override
            else "the gateway will refuse watermarked generation with this release "
            "(pass --allow-unreliable-text-detection to override; the override is signed)"
        )
        return (
            f"the tokenizer round-trips only {self.rate:.1%} of tokens (corpus "
            f"{self.corpus.token_rate:.1%}, sampled output {self.samples.token_rate:.1%}; "
            f"threshold {self.threshold:.0%}): detection from text would miss watermarks "
            f"that token ids show; {what}"
        )


def _corpus_passages() -> list[str]:
    from release.fidelity import held_out_texts

    passages: list[str] = []
    for text in held_out_texts():
        current = ""
        for paragraph in text.split("\n\n"):
            current = f"{current}\n\n{paragraph}" if current else paragraph
            if len(current) >= _CORPUS_CHARS:
                passages.append(current)
                current = ""
        if current:
            passages.append(current)
    return passages


def _sample(model_dir: Path, tokenizer: Any, seed: int) -> list[list[int]]:
    import torch

    from release.loader import load_model

    model: Any = load_model(model_dir)  # validated, float32, no progress bar
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[int]] = []
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        for prompt in SAMPLE_PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            generated = model.generate(
                ids,
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                max_new_tokens=_SAMPLE_TOKENS,
                min_new_tokens=_SAMPLE_TOKENS,
                pad_token_id=pad,
            )
            out.append([int(i) for i in generated[0, ids.shape[1] :].tolist()])
    return out


def check_tokenization(
    model_dir: str | os.PathLike[str],
    *,
    override: bool = False,
    seed: int = 0,
    threshold: float = RELIABLE_TOKEN_RATE,
) -> TokenizationReport | None:
    """Measure the tokenizer of ``model_dir`` on the packaged corpus and on seeded samples of
    its model; None when the folder has no tokenizer (nothing to watermark from text)."""
    from transformers import AutoTokenizer

    folder = Path(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(folder))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    corpus = measure_roundtrip(
        tokenizer,
        (tokenizer.encode(p, add_special_tokens=False) for p in _corpus_passages()),
    )
    samples = measure_roundtrip(tokenizer, _sample(folder, tokenizer, seed))
    return TokenizationReport(corpus, samples, threshold, override)
