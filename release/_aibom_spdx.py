"""The SPDX 3.0.1 AI BOM of a release (AI and Dataset profiles), from :class:`BomFacts`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any
from urllib.parse import quote

from licensing.layout import TierFile
from release._aibom_facts import (
    ABSENT_STATEMENT,
    NAMESPACE,
    OPEN_TIER,
    TOOL,
    BomFacts,
    spdx_license_expression,
    tier_description,
    tier_title,
)
from release.safety_policy import statement_policy_digest

__all__ = ["render_spdx"]


def render_spdx(facts: BomFacts) -> dict[str, Any]:
    from spdx_python_model import v3_0_1 as spdx

    ns = f"{NAMESPACE}/{facts.digest}"
    creation = spdx.CreationInfo()
    creation.set_id("_:creationinfo")
    creation.specVersion = "3.0.1"
    creation.created = facts.statement.created_at.astimezone(UTC)
    org = spdx.Organization(spdxId=f"{ns}/agent/{facts.org}", name=facts.org, creationInfo=creation)
    tool = spdx.Tool(spdxId=f"{ns}/tool/{TOOL}", name=TOOL, creationInfo=creation)
    creation.createdBy = [_sid(org)]
    creation.createdUsing = [_sid(tool)]
    elements: list[Any] = [org, tool]

    def element_id(kind: str, name: str) -> str:
        return f"{ns}/{kind}/{name}"

    relationships: list[Any] = []
    counter = iter(range(1, 1_000_000))

    def relate(source: str, kind: str, targets: Sequence[str], **extra: Any) -> None:
        rel = spdx.Relationship(
            spdxId=element_id("relationship", str(next(counter))),
            creationInfo=creation,
            from_=source,
            relationshipType=getattr(spdx.RelationshipType, kind),
            to=list(targets),
            **extra,
        )
        relationships.append(rel)

    license_id = facts.statement.license
    declared = spdx.simplelicensing_LicenseExpression(
        spdxId=element_id("license", "declared"),
        creationInfo=creation,
        simplelicensing_licenseExpression=spdx_license_expression(license_id),
    )
    elements.append(declared)
    dataset = spdx.dataset_DatasetPackage(
        spdxId=element_id("dataset", "fidelity-probe-text"),
        creationInfo=creation,
        name="fidelity probe text",
        description=(
            "Held-out text each optimized tier was compared with the open tier on at build "
            "time (top-1 agreement, KL divergence, perplexity); named in the model card's "
            "Fidelity section. Not training data."
        ),
        software_primaryPurpose=spdx.software_SoftwarePurpose.data,
        dataset_datasetType=[spdx.dataset_DatasetType.text],
        suppliedBy=_sid(org),
        builtTime=facts.statement.created_at.astimezone(UTC),
        releaseTime=facts.statement.created_at.astimezone(UTC),
    )
    has_fidelity = any(t.name in facts.fidelity for t in facts.statement.tiers)
    if has_fidelity:
        elements.append(dataset)
    packages: dict[str, Any] = {}
    file_nodes: list[tuple[str, TierFile]] = []
    for tier in facts.statement.tiers:
        package = spdx.ai_AIPackage(
            spdxId=element_id("tier", tier.name),
            creationInfo=creation,
            name=tier_title(facts, tier),
            summary=f"{facts.statement.repo_id} {facts.statement.version}, tier {tier.name}",
            description=tier_description(facts, tier),
            software_packageVersion=facts.statement.version,
            software_primaryPurpose=spdx.software_SoftwarePurpose.model,
            suppliedBy=_sid(org),
            releaseTime=facts.statement.created_at.astimezone(UTC),
            ai_autonomyType=spdx.PresenceType.noAssertion,
            ai_useSensitivePersonalInformation=spdx.PresenceType.noAssertion,
        )
        package.verifiedUsing.append(
            spdx.Hash(
                algorithm=spdx.HashAlgorithm.sha256,
                hashValue=tier.manifest_digest,
                comment="model_signing manifest digest of the tier (subject of model.sig)",
            )
        )
        if facts.task:
            package.ai_domain.append(facts.task)
            package.ai_typeOfModel.append(facts.task)
        if facts.intended_use:
            package.ai_informationAboutApplication = facts.intended_use
        if facts.limitations:
            package.ai_limitation = facts.limitations
        for key, value in sorted(facts.recipe.get(tier.name, {}).items()):
            package.ai_hyperparameter.append(
                spdx.DictionaryEntry(key=f"optimization.{key}", value=value)
            )
        for key, value in sorted(facts.fidelity.get(tier.name, {}).items()):
            package.ai_metric.append(spdx.DictionaryEntry(key=f"fidelity.{key}", value=value))
        for result in facts.evaluations:
            if result.tier == tier.name:
                package.ai_metric.append(
                    spdx.DictionaryEntry(
                        key=f"eval.{result.task}.{result.metric}", value=result.value
                    )
                )
        packages[tier.name] = package
        elements.append(package)
        # Files are written as JSON-LD nodes after serialization (see below): one binding
        # object per file costs ~0.5 ms, seconds for a release of thousands of files.
        files = [
            (element_id(f"file/{tier.name}", quote(entry.path, safe="/")), entry)
            for entry in tier.files
        ]
        file_nodes.extend(files)
        if files:
            relate(_sid(package), "contains", [ident for ident, _ in files])
        relate(_sid(package), "hasDeclaredLicense", [_sid(declared)])
        relate(_sid(package), "hasConcludedLicense", [_sid(declared)])
        if tier.name in facts.fidelity:
            relate(_sid(package), "testedOn", [_sid(dataset)])
    if OPEN_TIER in packages:
        variants = [_sid(p) for name, p in packages.items() if name != OPEN_TIER]
        if variants:
            relate(_sid(packages[OPEN_TIER]), "hasVariant", variants)
    annotation = spdx.Annotation(
        spdxId=element_id("annotation", "absent"),
        creationInfo=creation,
        annotationType=spdx.AnnotationType.other,
        subject=_sid(packages.get(OPEN_TIER, next(iter(packages.values())))),
        statement=_absent_statement(facts),
    )
    elements.append(annotation)
    elements.extend(relationships)
    root = packages.get(OPEN_TIER, next(iter(packages.values())))
    document = spdx.SpdxDocument(
        spdxId=f"{ns}/document",
        creationInfo=creation,
        name=f"AI BOM of {facts.statement.repo_id}@{facts.statement.version}",
        comment=(
            f"Generated from the signed release statement sha256:{facts.digest} and the "
            "signed model card."
        ),
        dataLicense="https://spdx.org/licenses/CC0-1.0",
        rootElement=[_sid(root)],
        element=[_sid(e) for e in elements] + [ident for ident, _ in file_nodes],
        profileConformance=[
            spdx.ProfileIdentifierType.core,
            spdx.ProfileIdentifierType.software,
            spdx.ProfileIdentifierType.ai,
            spdx.ProfileIdentifierType.dataset,
            spdx.ProfileIdentifierType.simpleLicensing,
        ],
    )
    objects = spdx.SHACLObjectSet([document, *elements])
    data: dict[str, Any] = spdx.JSONLDSerializer().serialize_data(objects, force_at_graph=True)
    info = next(n["@id"] for n in data["@graph"] if n.get("type") == "CreationInfo")
    data["@graph"] += [
        {
            "type": "software_File",
            "spdxId": ident,
            "creationInfo": info,
            "name": entry.path,
            "software_primaryPurpose": _spdx_file_purpose(entry.path),
            "verifiedUsing": [{"type": "Hash", "algorithm": "sha256", "hashValue": entry.sha256}],
        }
        for ident, entry in file_nodes
    ]
    data["@graph"].sort(key=lambda node: (node.get("type", ""), str(node.get("spdxId", ""))))
    return data


def _sid(element: Any) -> str:
    return str(element.get_id())


def _spdx_file_purpose(path: str) -> str:
    if path.endswith((".safetensors", ".gguf", ".bin", ".pt")):
        return "model"
    if path.endswith(".md"):
        return "documentation"
    return "configuration"


def _absent_statement(facts: BomFacts) -> str:
    digest = statement_policy_digest(facts.statement.safety_policy)
    if digest is not None:
        # The policy says what the gateway does to outputs; it is no risk assessment.
        return (
            _evaluations_sentence(facts)
            + f" The release signs an output-safety policy ({digest}); "
            "no safety risk assessment is asserted."
        )
    return _absent_statement_without_policy(facts)


def _evaluations_sentence(facts: BomFacts) -> str:
    if facts.evaluations:
        return (
            "Evaluation results are backed by signed attestations: "
            + ", ".join(sorted({r.attestation_sha256 for r in facts.evaluations}))
            + "."
        )
    return "This release records no evaluation attestation."


def _absent_statement_without_policy(facts: BomFacts) -> str:
    if facts.evaluations:
        return (
            "Evaluation results are backed by signed attestations: "
            + ", ".join(sorted({r.attestation_sha256 for r in facts.evaluations}))
            + ". No safety policy is recorded for this release."
        )
    return ABSENT_STATEMENT
