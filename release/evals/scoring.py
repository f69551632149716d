"""Scores recomputable bit for bit: per-sample scores from output text, aggregates as decimal
strings (exact integer and ``Decimal`` arithmetic, never floats), Wilson intervals.

The attestation states the aggregate as strings this module produced; a verifier calls the
same functions on the logged outputs and compares strings, so any platform agrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from release.evals.task import EvalDoc, EvalTask

__all__ = ["Aggregate", "aggregate", "passes", "score_logprobs", "score_output"]

_PLACES = Decimal("0.000001")
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN)
# z for a two-sided 95% interval, to more digits than the rounded result keeps.
_Z95 = Decimal("1.959963984540054")


def score_output(task: EvalTask, doc: EvalDoc, output: str) -> int:
    """1 when ``output`` answers ``doc`` under the task's metric, else 0."""
    text = output.strip()
    if task.metric == "choice_letter":
        # The first label-like character: "B", " B.", "(B)" all answer B.
        for char in text:
            if char.isalnum():
                return int(char.upper() == doc.target.upper())
        return 0
    # first_word: the output's first word, stripped of surrounding punctuation.
    words = text.split()
    if not words:
        return 0
    return int(words[0].strip(".,;:!?\"'()") == doc.target.strip(".,;:!?\"'()"))


def score_logprobs(task: EvalTask, doc: EvalDoc, wires: Sequence[Mapping[str, Any]]) -> int:
    """``loglikelihood_acc``: 1 when the most likely choice (by the logprobs the gateway
    returned for each choice prompt, in ``task.choices`` order) is the document's target."""
    from release.evals.logprobs import picked_choice

    return int(task.choices[picked_choice(wires)] == doc.target)


@dataclass(frozen=True)
class Aggregate:
    correct: int
    total: int
    value: str  # correct / total, 6 decimal places
    lower: str  # Wilson 95% interval
    upper: str

    def to_dict(self) -> dict[str, object]:
        return {
            "correct": self.correct,
            "total": self.total,
            "value": self.value,
            "interval": {
                "method": "wilson",
                "level": "0.95",
                "lower": self.lower,
                "upper": self.upper,
            },
        }


def _fixed(value: Decimal) -> str:
    clamped = min(max(value, Decimal(0)), Decimal(1))
    return str(clamped.quantize(_PLACES, context=_CONTEXT))


def aggregate(scores: list[int]) -> Aggregate:
    """Mean of 0/1 scores and its Wilson score interval (95%), as exact decimal strings."""
    n, k = len(scores), sum(scores)
    if n == 0:
        return Aggregate(0, 0, _fixed(Decimal(0)), _fixed(Decimal(0)), _fixed(Decimal(1)))
    c = _CONTEXT
    p = c.divide(Decimal(k), Decimal(n))
    z2 = c.multiply(_Z95, _Z95)
    denom = c.add(Decimal(1), c.divide(z2, Decimal(n)))
    centre = c.add(p, c.divide(z2, Decimal(2 * n)))
    spread_sq = c.add(
        c.divide(c.multiply(p, c.subtract(Decimal(1), p)), Decimal(n)),
        c.divide(z2, Decimal(4 * n * n)),
    )
    spread = c.multiply(_Z95, c.sqrt(spread_sq))
    lower = c.divide(c.subtract(centre, spread), denom)
    upper = c.divide(c.add(centre, spread), denom)
    return Aggregate(k, n, _fixed(p), _fixed(lower), _fixed(upper))


def passes(task: EvalTask, result: Aggregate) -> bool:
    """The pre-registered bar: the score (or its interval's lower bound) reaches the minimum."""
    statistic = result.lower if task.pass_criteria.statistic == "lower_bound" else result.value
    return Decimal(statistic) >= Decimal(task.pass_criteria.minimum)
