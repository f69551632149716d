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
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from licensing.layout import TierFile
from licensing.statements import ReleaseStatement, TierRecord
from release.card_sections import card_front_matter, card_section
from release.errors import ReleaseError
from release.safety_policy import statement_policy_digest

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
OPEN_TIER = "open"
PRIMARY_OPTIMIZED_TIER = "optimized"
SPDX_CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
# Identifiers are IRIs under the gateway-independent tiergate namespace, keyed by the
# statement digest: the same release names the same elements wherever it is served.
_NAMESPACE = "https://tiergate.dev/spdx"
_TOOL = "tiergate"
_UNSPECIFIED = "Not specified by the publisher."
ABSENT_STATEMENT = (
    "This release records no evaluation attestation and no safety policy; behaviour scores "
    "and a safety risk assessment are therefore not asserted. The metrics given are the "
    "fidelity of each optimized artifact against the open tier, measured at build time and "
    "signed in the release statement."
)


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


@dataclass(frozen=True)
class _Facts:
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


def _facts(
    statement: ReleaseStatement,
    statement_digest: str,
    model_card: str,
    evaluations: Sequence[EvaluationResult],
) -> _Facts:
    if len(statement_digest) != 64 or any(c not in "0123456789abcdef" for c in statement_digest):
        raise AiBomInvalidError("statement digest must be 64 lowercase hex digits")
    _check_evaluations(statement, evaluations)
    meta = card_front_matter(model_card)
    task = meta.get("pipeline_tag")
    base = meta.get("base_model")
    return _Facts(
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
        return ReleaseBom(spdx=_spdx(facts), cyclonedx=_cyclonedx(facts))
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
    return _spdx(_facts(statement, statement_digest, model_card, evaluations))


def render_cyclonedx_aibom(
    statement: ReleaseStatement,
    *,
    statement_digest: str,
    model_card: str,
    evaluations: Sequence[EvaluationResult] = (),
) -> dict[str, Any]:
    """The CycloneDX 1.6 JSON ML-BOM (see :func:`render_release_bom`)."""
    return _cyclonedx(_facts(statement, statement_digest, model_card, evaluations))


def _tier_title(facts: _Facts, tier: TierRecord) -> str:
    return f"{facts.statement.repo_id}@{facts.statement.version}#{tier.name}"


def _tier_description(facts: _Facts, tier: TierRecord) -> str:
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


# ------------------------------------------------------------------------------ SPDX 3.0.1


def _spdx(facts: _Facts) -> dict[str, Any]:
    from spdx_python_model import v3_0_1 as spdx

    ns = f"{_NAMESPACE}/{facts.digest}"
    creation = spdx.CreationInfo()
    creation.set_id("_:creationinfo")
    creation.specVersion = "3.0.1"
    creation.created = facts.statement.created_at.astimezone(UTC)
    org = spdx.Organization(spdxId=f"{ns}/agent/{facts.org}", name=facts.org, creationInfo=creation)
    tool = spdx.Tool(spdxId=f"{ns}/tool/{_TOOL}", name=_TOOL, creationInfo=creation)
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
        simplelicensing_licenseExpression=_spdx_license_expression(license_id),
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
            name=_tier_title(facts, tier),
            summary=f"{facts.statement.repo_id} {facts.statement.version}, tier {tier.name}",
            description=_tier_description(facts, tier),
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


def _spdx_license_expression(license_id: str) -> str:
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


def _spdx_file_purpose(path: str) -> str:
    if path.endswith((".safetensors", ".gguf", ".bin", ".pt")):
        return "model"
    if path.endswith(".md"):
        return "documentation"
    return "configuration"


def _absent_statement(facts: _Facts) -> str:
    digest = statement_policy_digest(facts.statement.safety_policy)
    if digest is not None:
        # The policy says what the gateway does to outputs; it is no risk assessment.
        return (
            _evaluations_sentence(facts)
            + f" The release signs an output-safety policy ({digest}); "
            "no safety risk assessment is asserted."
        )
    return _absent_statement_without_policy(facts)


def _evaluations_sentence(facts: _Facts) -> str:
    if facts.evaluations:
        return (
            "Evaluation results are backed by signed attestations: "
            + ", ".join(sorted({r.attestation_sha256 for r in facts.evaluations}))
            + "."
        )
    return "This release records no evaluation attestation."


def _absent_statement_without_policy(facts: _Facts) -> str:
    if facts.evaluations:
        return (
            "Evaluation results are backed by signed attestations: "
            + ", ".join(sorted({r.attestation_sha256 for r in facts.evaluations}))
            + ". No safety policy is recorded for this release."
        )
    return ABSENT_STATEMENT


# ------------------------------------------------------------------------- CycloneDX 1.6


def _serial(facts: _Facts) -> uuid.UUID:
    evidence = ",".join(sorted(r.attestation_sha256 for r in facts.evaluations))
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{_NAMESPACE}/{facts.digest}/cyclonedx/{evidence}")


def _cyclonedx(facts: _Facts) -> dict[str, Any]:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6

    statement = facts.statement
    supplier = OrganizationalEntity(name=facts.org)
    expression = _spdx_license_expression(statement.license)
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
                description=_tier_description(facts, tier),
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
            tools=ToolRepository(
                components=[Component(type=ComponentType.APPLICATION, name=_TOOL)]
            ),
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


def _model_card(facts: _Facts, tier: str, has_fidelity: bool) -> dict[str, Any]:
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
