"""The CycloneDX 1.6 ML-BOM of a release, from :class:`BomFacts`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from typing import Any

from licensing.layout import TierFile
from release._aibom_facts import (
    NAMESPACE,
    OPEN_TIER,
    TOOL,
    BomFacts,
    spdx_license_expression,
    tier_description,
)
from release.safety_policy import statement_policy_digest

__all__ = ["render_cyclonedx"]


def _serial(facts: BomFacts) -> uuid.UUID:
    evidence = ",".join(sorted(r.attestation_sha256 for r in facts.evaluations))
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{NAMESPACE}/{facts.digest}/cyclonedx/{evidence}")


def render_cyclonedx(facts: BomFacts) -> dict[str, Any]:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6

    statement = facts.statement
    supplier = OrganizationalEntity(name=facts.org)
    expression = spdx_license_expression(statement.license)
    licence: Any = (
        DisjunctiveLicense(name=statement.license)
        if expression.startswith("LicenseRef-")
        else LicenseExpression(expression)
    )
    components: list[Any] = []
    for tier in statement.tiers:
        properties = [
            Property(name="tiergate:tier", value=tier.name),
            Property(name="tiergate:gated", value=str(tier.gated).lower()),
            Property(name="tiergate:manifest_sha256", value=tier.manifest_digest),
            Property(name="tiergate:statement_sha256", value=facts.digest),
        ]
        properties += [
            Property(name=f"tiergate:optimization:{k}", value=v)
            for k, v in sorted(facts.recipe.get(tier.name, {}).items())
        ]
        properties += [
            Property(name=f"tiergate:fidelity:{k}", value=v)
            for k, v in sorted(facts.fidelity.get(tier.name, {}).items())
        ]
        if statement.terms_digest:
            properties.append(Property(name="tiergate:terms_sha256", value=statement.terms_digest))
        components.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=statement.repo_id,
                group=facts.org,
                version=(
                    statement.version
                    if tier.name == OPEN_TIER
                    else f"{statement.version}-{tier.name}"
                ),
                bom_ref=f"tier:{tier.name}",
                description=tier_description(facts, tier),
                supplier=supplier,
                licenses=[licence],
                properties=properties,
            )
        )
    has_fidelity = any(t.name in facts.fidelity for t in statement.tiers)
    if has_fidelity:
        components.append(
            Component(
                type=ComponentType.DATA,
                name="fidelity probe text",
                bom_ref="data:fidelity-probe-text",
                description=(
                    "Held-out text each optimized tier was compared with the open tier on at "
                    "build time; named in the model card's Fidelity section. Not training data."
                ),
            )
        )
    # The BOM describes the release; it is made of its tiers (and the probe data).
    root = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=statement.repo_id,
        group=facts.org,
        version=statement.version,
        bom_ref="release",
        description=f"The release {statement.repo_id}@{statement.version}: "
        + ", ".join(t.name for t in statement.tiers),
        supplier=supplier,
        licenses=[licence],
        properties=[Property(name="tiergate:statement_sha256", value=facts.digest)],
    )
    bom = Bom(
        serial_number=_serial(facts),
        version=1,
        metadata=BomMetaData(
            component=root,
            timestamp=statement.created_at.astimezone(UTC),
            supplier=supplier,
            tools=ToolRepository(components=[Component(type=ComponentType.APPLICATION, name=TOOL)]),
            properties=[
                Property(name="tiergate:release", value=f"{statement.repo_id}@{statement.version}"),
                Property(name="tiergate:statement_sha256", value=facts.digest),
                *(
                    [Property(name="tiergate:evaluations", value="none recorded")]
                    if not facts.evaluations
                    else []
                ),
                Property(
                    name="tiergate:safety_policy",
                    value=statement_policy_digest(statement.safety_policy) or "none recorded",
                ),
            ],
        ),
        components=components,
    )
    bom.register_dependency(root, components)
    open_tier = next((c for c in components if str(c.bom_ref) == f"tier:{OPEN_TIER}"), None)
    for component in components:
        built_from_open = component.type is ComponentType.MACHINE_LEARNING_MODEL
        if open_tier is not None and component is not open_tier and built_from_open:
            bom.register_dependency(component, [open_tier])
    data: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    # cyclonedx-python-lib does not model `modelCard` (1.5+): add it to each model component.
    data["metadata"]["component"]["modelCard"] = _model_card(facts, "release", has_fidelity)
    tiers = {t.name: t for t in statement.tiers}
    for component in data.get("components", []):
        if component.get("type") == "machine-learning-model":
            tier = component["bom-ref"].removeprefix("tier:")
            component["modelCard"] = _model_card(facts, tier, has_fidelity)
            # Files as plain JSON: the lib keeps sub-components in sorted sets with a costly
            # comparison (~1 ms per file; 25 s for a 9,000-file release, bench/aibom_render.py),
            # and a file entry is three fields the schema check covers all the same.
            component["components"] = [_file_entry(tier, f) for f in tiers[tier].files]
    return data


def _file_entry(tier: str, entry: TierFile) -> dict[str, Any]:
    return {
        "type": "file",
        "bom-ref": f"file:{tier}/{entry.path}",
        "name": entry.path,
        "hashes": [{"alg": "SHA-256", "content": entry.sha256}],
        "properties": [{"name": "tiergate:size", "value": str(entry.size)}],
    }


def _model_card(facts: BomFacts, tier: str, has_fidelity: bool) -> dict[str, Any]:
    # "release" (the root) carries what holds for every tier: task, use, limitations.
    card: dict[str, Any] = {"bom-ref": f"modelcard:{tier}"}
    parameters: dict[str, Any] = {}
    if facts.task:
        parameters["task"] = facts.task
    if has_fidelity and (tier in facts.fidelity or tier == OPEN_TIER):
        parameters["datasets"] = [{"ref": "data:fidelity-probe-text"}]
    if parameters:
        card["modelParameters"] = parameters
    metrics: list[dict[str, Any]] = [
        {"type": f"fidelity.{key}", "value": value, "slice": "fidelity probe text vs open tier"}
        for key, value in sorted(facts.fidelity.get(tier, {}).items())
    ]
    for result in facts.evaluations:
        if result.tier != tier:
            continue
        metric: dict[str, Any] = {
            "type": f"{result.task}.{result.metric}",
            "value": result.value,
            "slice": result.dataset or result.task,
        }
        if result.interval is not None:
            metric["confidenceInterval"] = {
                "lowerBound": result.interval[0],
                "upperBound": result.interval[1],
            }
        metrics.append(metric)
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    considerations: dict[str, Any] = {}
    if facts.intended_use:
        considerations["useCases"] = [facts.intended_use]
    if facts.limitations:
        considerations["technicalLimitations"] = [facts.limitations]
    if considerations:
        card["considerations"] = considerations
    return card
