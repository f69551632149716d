"""What both AI BOM documents say, read once from the signed release (``release.aibom``).

The SPDX and CycloneDX renderers (``release._aibom_spdx``, ``release._aibom_cyclonedx``) share
these facts, the per-tier split of the signed recipe and fidelity, the tier descriptions and
the licence expression, so both documents state the same things in their own vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from licensing.statements import ReleaseStatement, TierRecord

if TYPE_CHECKING:
    from release.aibom import EvaluationResult

__all__ = [
    "ABSENT_STATEMENT",
    "NAMESPACE",
    "OPEN_TIER",
    "PRIMARY_OPTIMIZED_TIER",
    "TOOL",
    "BomFacts",
    "fidelity_by_tier",
    "recipe_by_tier",
    "spdx_license_expression",
    "tier_description",
    "tier_title",
]

OPEN_TIER = "open"
PRIMARY_OPTIMIZED_TIER = "optimized"
# Identifiers are IRIs under the gateway-independent tiergate namespace, keyed by the
# statement digest: the same release names the same elements wherever it is served.
NAMESPACE = "https://tiergate.dev/spdx"
TOOL = "tiergate"
ABSENT_STATEMENT = (
    "This release records no evaluation attestation and no safety policy; behaviour scores "
    "and a safety risk assessment are therefore not asserted. The metrics given are the "
    "fidelity of each optimized artifact against the open tier, measured at build time and "
    "signed in the release statement."
)


def _optimized_names(statement: ReleaseStatement) -> list[str]:
    listed = statement.optimization.get("tiers")
    if isinstance(listed, str) and listed:
        return listed.split(",")
    gated = [t.name for t in statement.tiers if t.name != OPEN_TIER]
    return [PRIMARY_OPTIMIZED_TIER] if PRIMARY_OPTIMIZED_TIER in gated else gated[:1]


def _split_by_tier(
    statement: ReleaseStatement, values: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    # The statement keeps the first artifact's values under plain keys and every further
    # one's under "<tier>.<key>" (release.build).
    names = _optimized_names(statement)
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in values.items():
        tier, dot, rest = key.partition(".")
        if dot and tier in out:
            out[tier][rest] = value
        elif not dot and names and key != "tiers":
            out[names[0]][key] = value
    return {name: found for name, found in out.items() if found}


def fidelity_by_tier(statement: ReleaseStatement) -> dict[str, dict[str, str]]:
    """The signed fidelity record of each optimized tier: ``{tier: {metric: decimal}}``."""
    return {
        k: {m: str(v) for m, v in d.items()}
        for k, d in _split_by_tier(statement, statement.fidelity).items()
    }


def recipe_by_tier(statement: ReleaseStatement) -> dict[str, dict[str, str]]:
    """The signed optimization recipe of each optimized tier (method, format, group size)."""
    return {
        k: {m: str(v) for m, v in d.items()}
        for k, d in _split_by_tier(statement, statement.optimization).items()
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BomFacts:
    """What both documents say, read once from the signed inputs."""

    statement: ReleaseStatement
    digest: str
    org: str
    intended_use: str
    limitations: str
    task: str
    base_model: str
    fidelity: dict[str, dict[str, str]]
    recipe: dict[str, dict[str, str]]
    evaluations: tuple[EvaluationResult, ...]

    @property
    def created(self) -> str:
        return _iso(self.statement.created_at)


def tier_title(facts: BomFacts, tier: TierRecord) -> str:
    return f"{facts.statement.repo_id}@{facts.statement.version}#{tier.name}"


def tier_description(facts: BomFacts, tier: TierRecord) -> str:
    if tier.name == OPEN_TIER:
        return "The open tier: the weights as published, for everyone."
    recipe = facts.recipe.get(tier.name, {})
    made = ", ".join(f"{k}={v}" for k, v in sorted(recipe.items()))
    return (
        f"Optimized tier {tier.name}, built from the open tier ({made or 'recipe not recorded'})"
        "; gated: downloads need a grant after a signed usage attestation."
        if tier.gated
        else f"Tier {tier.name} ({made or 'recipe not recorded'})."
    )


def spdx_license_expression(license_id: str) -> str:
    # "other" and other non-SPDX names become a LicenseRef, as SPDX requires.
    known = license_id.replace("_", "-")
    if license_id.lower() in {"other", "unknown"} or not license_id:
        return "LicenseRef-other"
    return known if any(c.isupper() for c in known) else _spdx_case(known)


def _spdx_case(license_id: str) -> str:
    # The Hub writes licence ids in lower case ("apache-2.0"); SPDX matches ids case-
    # insensitively but tools prefer the canonical case, known here for the common ones.
    canonical = {
        "apache-2.0": "Apache-2.0",
        "mit": "MIT",
        "bsd-3-clause": "BSD-3-Clause",
        "bsd-2-clause": "BSD-2-Clause",
        "cc-by-4.0": "CC-BY-4.0",
        "cc-by-sa-4.0": "CC-BY-SA-4.0",
        "cc-by-nc-4.0": "CC-BY-NC-4.0",
        "cc0-1.0": "CC0-1.0",
        "gpl-3.0": "GPL-3.0-only",
        "lgpl-3.0": "LGPL-3.0-only",
        "agpl-3.0": "AGPL-3.0-only",
        "mpl-2.0": "MPL-2.0",
        "openrail": "LicenseRef-openrail",
        "llama3": "LicenseRef-llama3",
    }
    found = canonical.get(license_id.lower())
    if found is not None:
        return found
    # Not a licence we know the SPDX id of: a LicenseRef, never a made-up SPDX id.
    safe = "".join(c if c.isalnum() or c in ".-" else "-" for c in license_id)
    return f"LicenseRef-{safe}"
