"""The model card a build writes into every tier, from what it built and measured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release._release_layout import OPEN_TIER
from release.engine_measure import ArtifactMeasurements
from release.fidelity import OptimizedTier
from release.formats import Optimization, grant_tier
from release.manifest import TierManifest
from release.ollama import OllamaChat

if TYPE_CHECKING:
    from release.build import BuildOptions

__all__ = ["compose_model_card"]


def compose_model_card(
    options: BuildOptions,
    *,
    out: Path,
    weights: Mapping[str, TierManifest],
    names: Sequence[str],
    optimizations: Sequence[Optimization],
    artifacts: Mapping[str, OptimizedTier],
    measured: Mapping[str, ArtifactMeasurements],
    own_grant: Sequence[str],
    terms_digest: str | None,
    publisher_card: str | None,
    tokenization_record: Mapping[str, str],
    policy: Mapping[str, Any] | None,
) -> str:
    """The card of the release: the generated block (every tier's files, fidelity, speed,
    grant) merged with the publisher's own text. ``weights`` are the tiers' manifests
    without the card, which lists their digests."""
    from release.card_sections import merge_model_card
    from release.model_card import TierCard, render_model_card

    cards = [
        TierCard(
            OPEN_TIER,
            weights[OPEN_TIER],
            gated=False,
            description="The weights as published, for everyone.",
        )
    ]
    for name, optimization in zip(names, optimizations, strict=True):
        built = artifacts[name]
        cards.append(
            TierCard(
                name,
                weights[name],
                gated=True,
                description=f"{optimization.description}; needs a grant.",
                revision=name,
                fidelity=built.fidelity,
                artifact=optimization.name,
                weight_files=built.quantized.weight_files,
                calibration=built.quantized.calibration,
                grant=grant_tier(name, own_grant),
                speed=measured[name].speed,
                engine_fidelity=measured[name].engine_fidelity,
                quantizer=built.quantized.quantizer,
                ollama=_ollama_chat(out / name, built.quantized.weight_files),
            )
        )
    generated = render_model_card(
        repo_id=options.repo_id,
        version=options.version,
        license=options.license,
        tiers=tuple(cards),
        base_model=options.base_model,
        terms_sha256=terms_digest,
        intended_use=_card_text(options.intended_use, publisher_card, "Intended use"),
        limitations=_card_text(options.limitations, publisher_card, "Limitations"),
        gated_prompt="The optimized tiers are released under signed usage attestations.",
        gated_fields={f.label: f.type for f in options.approval.fields},
        tokenization=tokenization_record,
        safety_policy=policy,
    )
    card = merge_model_card(generated, publisher_card)
    return card


def _ollama_chat(tier_dir: Path, weight_files: Sequence[str]) -> OllamaChat | None:
    """The card's Ollama TEMPLATE for a GGUF artifact, from the file's own metadata."""
    gguf = next((f for f in weight_files if f.endswith(".gguf")), None)
    if gguf is None:
        return None
    from release.ollama import chat_from_gguf

    return chat_from_gguf(tier_dir / gguf)


def _card_text(given: str | None, publisher_card: str | None, heading: str) -> str:
    """A generated section's text: the CLI option's, else a pointer to the publisher's own
    section of that name, else empty (the card then says it is not specified)."""
    from release.card_sections import card_section, publisher_text

    if given and given.strip():
        return given
    if publisher_card is not None and card_section(publisher_text(publisher_card)[1], heading):
        return f"See the publisher's *{heading}* section above."
    return ""
