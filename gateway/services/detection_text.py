"""Detection from text, the tokenization half: what the detector may conclude when it had to
re-tokenize, and what it can verify against the log.

The detection service scores every candidate tokenization of the text
(:func:`watermark.text_detection.read_text`) under every key; each is one more test in its
Bonferroni correction. This module turns the reading into the response's ``tokenization``
report and applies the one rule on confidence: a verdict of "not watermarked" from text is
only as good as the reading of the text. When the text's tokenization looks foreign, or a
model that could have written it published a tokenizer that does not round-trip (its signed
statement says so), a miss is "inconclusive", never "not watermarked, confidence high".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from gateway.db.models import LogEntry
from gateway.ledger.events import digest_of
from gateway.schemas.openai import PublishedRoundTrip, TokenizationReport, TokenizationTrust
from gateway.services.text_detectability import tokenization_record
from watermark.text_detection import TextReading
from watermark.tokenization import ASCII_PUNCTUATION, UNWRAPPED

__all__ = ["PublishedModel", "judge_tokenization", "logged_output_matches"]

TOKEN_IDS = "token_ids"  # noqa: S105 (an input kind, not a secret)
PASTED_READINGS = (ASCII_PUNCTUATION, UNWRAPPED)


@dataclass(frozen=True)
class PublishedModel:
    """A model whose key was tried, with its signed release statement."""

    name: str
    statement_envelope: str


def _published(models: Sequence[PublishedModel]) -> list[PublishedRoundTrip]:
    out = []
    for model in models:
        record = tokenization_record(model.statement_envelope)
        out.append(
            PublishedRoundTrip(
                model=model.name, text_detection=record.text_detection, roundtrip_rate=record.rate
            )
        )
    return out


def judge_tokenization(
    *,
    verdict: str,
    confidence: str,
    reading: TextReading | None,
    scored_with: str | None,
    models: Sequence[PublishedModel],
) -> tuple[str, str, list[str], TokenizationReport]:
    """(verdict, confidence, notes, report) once tokenization trust is taken into account.

    ``reading`` is None for token ids (nothing was re-tokenized: nothing changes).
    """
    published = _published(models)
    if reading is None:
        report = TokenizationReport(
            input=TOKEN_IDS,
            scored_with=TOKEN_IDS,
            candidates=[TOKEN_IDS],
            corrected_for_candidates=1,
            trust=None,
            published=published,
        )
        return verdict, confidence, [], report
    trust = reading.trust
    report = TokenizationReport(
        input="text",
        scored_with=scored_with,
        candidates=list(reading.names),
        corrected_for_candidates=len(reading.candidates),
        trust=TokenizationTrust(**trust.to_dict()),
        published=published,
    )
    notes: list[str] = []
    count = len(reading.candidates)
    if count > 1:
        notes.append(
            f"the text was read {count} ways ({', '.join(reading.names)}); the p-value is "
            f"corrected for all {count} (Bonferroni)"
        )
    if scored_with in PASTED_READINGS:
        notes.append(
            f"the evidence comes from the {scored_with!r} reading: the text as it likely was "
            "before pasting changed it (typographic quotes or line breaks)"
        )
    elif scored_with is not None and scored_with != reading.names[0]:
        notes.append(
            f"the evidence comes from the {scored_with!r} tokenization: the tokenizer's own "
            "encoding of this text differs from what the model sampled"
        )
    if verdict == "watermarked":
        # A positive stays: its p-value is valid whatever tokenization was scored.
        return verdict, confidence, notes, report
    unreliable = [p for p in published if p.text_detection in ("unreliable", "override")]
    unknown = [p for p in published if p.text_detection == "unknown"]
    if not trust.trusted or unreliable:
        why = list(trust.reasons)
        why += [
            f"{p.model} published a tokenizer that round-trips "
            f"{_rate(p.roundtrip_rate)} of sampled tokens"
            for p in unreliable
        ]
        notes.append(
            "the text's tokenization cannot be trusted (" + "; ".join(why) + "): a watermark "
            "may be present but unscorable from text; send token ids if you have them"
        )
        return "inconclusive", "low", notes, report
    if verdict == "not_watermarked" and confidence == "high" and unknown:
        notes.append(
            "the tokenizer round trip of "
            + ", ".join(p.model for p in unknown)
            + " was not measured at publish; confidence capped at medium"
        )
        return verdict, "medium", notes, report
    return verdict, confidence, notes, report


def _rate(rate: float | None) -> str:
    return f"{rate:.1%}" if rate is not None else "an unknown share"


def logged_output_matches(
    session: Session, log_index: int, choice_index: int, text: str
) -> bool | None:
    """Whether ``text`` is byte-identical to the output the log recorded for this choice
    (its ``sha256``); None when the entry or the digest is not there."""
    entry = session.get(LogEntry, log_index)
    if entry is None:
        return None
    try:
        outputs = json.loads(entry.entry)["fields"]["outputs"]
        logged = next(o["sha256"] for o in outputs if o["index"] == choice_index)
    except (ValueError, KeyError, TypeError, StopIteration):
        return None
    return bool(logged == digest_of(text))
