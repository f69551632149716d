"""Tiers compared on the same task: the difference of two attested scores and its interval,
and the Markdown section a release page shows for its evaluation attestations.

The difference's interval is Newcombe's hybrid score interval (his method 10) built from the
two attested Wilson intervals, computed from their decimal strings, so anyone holding the two
attestations gets the same digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

__all__ = ["AttestedScore", "Difference", "difference", "evaluation_lines"]

_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN)
_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class AttestedScore:
    tier: str
    task: str
    value: str
    lower: str
    upper: str
    total: int
    status: str  # how the gateway shows it: publisher, accepted, community, unverified
    digest: str


@dataclass(frozen=True)
class Difference:
    value: str  # a - b
    lower: str
    upper: str


def _q(value: Decimal) -> str:
    return str(value.quantize(_PLACES, context=_CONTEXT))


def difference(a: AttestedScore, b: AttestedScore) -> Difference:
    """``a - b`` with Newcombe's 95% interval from the two Wilson intervals."""
    c = _CONTEXT
    p1, l1, u1 = Decimal(a.value), Decimal(a.lower), Decimal(a.upper)
    p2, l2, u2 = Decimal(b.value), Decimal(b.lower), Decimal(b.upper)
    d = c.subtract(p1, p2)
    below = c.sqrt(c.add(c.power(c.subtract(p1, l1), 2), c.power(c.subtract(u2, p2), 2)))
    above = c.sqrt(c.add(c.power(c.subtract(u1, p1), 2), c.power(c.subtract(p2, l2), 2)))
    return Difference(_q(d), _q(c.subtract(d, below)), _q(c.add(d, above)))


_SHOWN = {
    "publisher": "publisher",
    "accepted": "accepted (community)",
    "community": "community (not yet accepted)",
    "unverified": "unverified signature",
}


def evaluation_lines(scores: Sequence[AttestedScore], reference_tier: str = "open") -> list[str]:
    """``## Evaluations``: every shown attestation, then each endorsed tier against the
    reference tier on the same task (difference and interval). Empty without attestations."""
    shown = [s for s in scores if s.status in _SHOWN]
    if not shown:
        return []
    lines = [
        "## Evaluations",
        "",
        "Signed evaluation attestations; each number is recomputable from logged calls "
        "(`tiergate eval verify`).",
        "",
        "| task | tier | score | 95% CI | samples | shown as | attestation |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(shown, key=lambda s: (s.task, s.tier, s.digest)):
        lines.append(
            f"| {s.task} | {s.tier} | {s.value} | {s.lower}-{s.upper} | {s.total} "
            f"| {_SHOWN[s.status]} | `{s.digest[:16]}` |"
        )
    endorsed = [s for s in shown if s.status in ("publisher", "accepted")]
    pairs = []
    for s in endorsed:
        if s.tier == reference_tier:
            continue
        for ref in endorsed:
            if ref.tier == reference_tier and ref.task == s.task:
                pairs.append((s, ref, difference(s, ref)))
                break
    if pairs:
        lines += [
            "",
            f"Tiers against `{reference_tier}` on the same task (Newcombe 95% interval):",
            "",
            f"| task | tier | minus {reference_tier} | 95% CI |",
            "|---|---|---|---|",
        ]
        for s, _, d in pairs:
            lines.append(f"| {s.task} | {s.tier} | {d.value} | {d.lower} to {d.upper} |")
    lines.append("")
    return lines
