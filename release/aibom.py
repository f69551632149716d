"""The AI bill of materials of a release: SPDX 3.0.1 (AI and Dataset profiles) and CycloneDX
1.6 ML-BOM, generated from what the release already signs.

Inputs are the signed release statement (tiers, every file's sha256, license, terms digest,
optimization recipe and fidelity of each optimized artifact), the signed model card (intended
use, limitations, task) and, once ``tiergate eval`` exists, the evaluation results backed by
signed attestations (:class:`EvaluationResult`, passed as ``evaluations``). Nothing is
invented: what the release does not record (evaluations, a safety policy, training data) is
stated as absent the way each standard says so (SPDX: ``noAssertion`` and an annotation;
CycloneDX: the field left out plus a ``tiergate:`` property naming what is absent).

Both documents are pure functions of their inputs: timestamps are the statement's
``created_at`` and identifiers derive from the statement digest, so anyone holding the signed
statement and card regenerates the same bytes.

This module is the public surface: the inputs, the errors and the entry points. The shared
facts live in ``release._aibom_facts``, each standard's renderer in ``release._aibom_spdx``
and ``release._aibom_cyclonedx``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from licensing.statements import ReleaseStatement
from release._aibom_cyclonedx import render_cyclonedx
from release._aibom_facts import ABSENT_STATEMENT as ABSENT_STATEMENT
from release._aibom_facts import OPEN_TIER as OPEN_TIER
from release._aibom_facts import PRIMARY_OPTIMIZED_TIER as PRIMARY_OPTIMIZED_TIER
from release._aibom_facts import (
    BomFacts,
    fidelity_by_tier,
    recipe_by_tier,
)
from release._aibom_spdx import render_spdx
from release.card_sections import card_front_matter, card_section
from release.errors import ReleaseError

__all__ = [
    "CYCLONEDX_FILE",
    "SPDX_FILE",
    "AiBomInvalidError",
    "AiBomUnavailableError",
    "EvaluationResult",
    "ReleaseBom",
    "aibom_bytes",
    "fidelity_by_tier",
    "recipe_by_tier",
    "render_cyclonedx_aibom",
    "render_release_bom",
    "render_spdx_aibom",
]

SPDX_FILE = "aibom.spdx.json"
CYCLONEDX_FILE = "aibom.cdx.json"
SPDX_CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
_UNSPECIFIED = "Not specified by the publisher."


class AiBomInvalidError(ReleaseError):
    """An input to the AI BOM cannot be represented (an evaluation naming no tier of the
    release, a malformed digest)."""

    code = "aibom_invalid"


class AiBomUnavailableError(ReleaseError):
    """The AI BOM libraries are not installed (``pip install 'tiergate[aibom]'``)."""

    code = "aibom_unavailable"


@dataclass(frozen=True)
class EvaluationResult:
    """One score backed by a signed evaluation attestation (issue 20, ``tiergate eval``).

    ``value`` is the decimal string as signed; ``attestation_sha256`` the digest of the
    attestation's DSSE payload; ``interval`` an optional (lower, upper) confidence interval;
    ``runner`` who ran it (``publisher``, ``gateway``, ``third-party``).
    """

    tier: str
    task: str
    metric: str
    value: str
    attestation_sha256: str
    dataset: str = ""
    runner: str = "publisher"
    interval: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        digest = self.attestation_sha256
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise AiBomInvalidError("attestation_sha256 must be 64 lowercase hex digits")
        for name in ("tier", "task", "metric", "value"):
            if not getattr(self, name):
                raise AiBomInvalidError(f"an evaluation result needs a {name}")


@dataclass(frozen=True)
class ReleaseBom:
    """Both documents as JSON-ready dicts; :func:`aibom_bytes` serializes one."""

    spdx: dict[str, Any]
    cyclonedx: dict[str, Any]

    def files(self) -> dict[str, bytes]:
        """``{file name: bytes}`` as served next to the release."""
        return {SPDX_FILE: aibom_bytes(self.spdx), CYCLONEDX_FILE: aibom_bytes(self.cyclonedx)}


def aibom_bytes(document: Mapping[str, Any]) -> bytes:
    """Stable serialization (sorted keys, two-space indent, UTF-8, final newline)."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def _card_text(card: str, *names: str) -> str:
    for name in names:
        text = card_section(card, name).strip()
        if text and text != _UNSPECIFIED:
            return text
    return ""


def _check_evaluations(
    statement: ReleaseStatement, evaluations: Sequence[EvaluationResult]
) -> None:
    names = {t.name for t in statement.tiers}
    for result in evaluations:
        if result.tier not in names:
            raise AiBomInvalidError(
                f"evaluation {result.task}/{result.metric} names tier {result.tier!r}, "
                f"not one of {', '.join(sorted(names))}"
            )


def _facts(
    statement: ReleaseStatement,
    statement_digest: str,
    model_card: str,
    evaluations: Sequence[EvaluationResult],
) -> BomFacts:
    if len(statement_digest) != 64 or any(c not in "0123456789abcdef" for c in statement_digest):
        raise AiBomInvalidError("statement digest must be 64 lowercase hex digits")
    _check_evaluations(statement, evaluations)
    meta = card_front_matter(model_card)
    task = meta.get("pipeline_tag")
    base = meta.get("base_model")
    return BomFacts(
        statement=statement,
        digest=statement_digest,
        org=statement.repo_id.split("/", 1)[0],
        intended_use=_card_text(model_card, "Intended use", "Intended uses", "Uses"),
        limitations=_card_text(model_card, "Limitations", "Bias, risks, and limitations"),
        task=task if isinstance(task, str) else "",
        base_model=base if isinstance(base, str) else "",
        fidelity=fidelity_by_tier(statement),
        recipe=recipe_by_tier(statement),
        evaluations=tuple(evaluations),
    )


def render_release_bom(
    statement: ReleaseStatement,
    *,
    statement_digest: str,
    model_card: str,
    evaluations: Sequence[EvaluationResult] = (),
) -> ReleaseBom:
    """Both AI BOMs of a release. ``statement_digest`` is the sha256 of the statement's DSSE
    payload (the release digest attestations name); ``evaluations`` the attested scores
    (none yet: the documents then say no evaluation was recorded)."""
    facts = _facts(statement, statement_digest, model_card, evaluations)
    try:
        return ReleaseBom(spdx=render_spdx(facts), cyclonedx=render_cyclonedx(facts))
    except ImportError as exc:
        raise AiBomUnavailableError(
            f"the AI BOM needs {exc.name or 'its libraries'}: pip install 'tiergate[aibom]'"
        ) from exc
    except (ValueError, TypeError, KeyError) as exc:
        # The model libraries check values on assignment; say which release, in our error.
        raise AiBomInvalidError(
            f"{statement.repo_id}@{statement.version}: cannot express the AI BOM: {exc}"
        ) from exc


def render_spdx_aibom(
    statement: ReleaseStatement,
    *,
    statement_digest: str,
    model_card: str,
    evaluations: Sequence[EvaluationResult] = (),
) -> dict[str, Any]:
    """The SPDX 3.0.1 JSON-LD document (see :func:`render_release_bom`)."""
    return render_spdx(_facts(statement, statement_digest, model_card, evaluations))


def render_cyclonedx_aibom(
    statement: ReleaseStatement,
    *,
    statement_digest: str,
    model_card: str,
    evaluations: Sequence[EvaluationResult] = (),
) -> dict[str, Any]:
    """The CycloneDX 1.6 JSON ML-BOM (see :func:`render_release_bom`)."""
    return render_cyclonedx(_facts(statement, statement_digest, model_card, evaluations))
