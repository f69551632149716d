"""The AI BOM of a real built release: both documents validate against the official schemas
and say what the signed statement and card say (names, versions, every digest, licence,
fidelity), and nothing they do not (evaluations, safety)."""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from licensing.dsse import Envelope
from licensing.keys import PrivateKey
from licensing.statements import ReleaseStatement, parse_release_statement, release_digest
from release.aibom import (
    AiBomInvalidError,
    EvaluationResult,
    ReleaseBom,
    fidelity_by_tier,
    render_release_bom,
)
from release.build import BuildOptions, build_release
from tests.release.aibom_schemas import cyclonedx_errors, spdx_errors

PUBLISHER_README = """---
language:
- en
tags:
- demo
datasets:
- acme/tiny-corpus
---

# Tiny Llama, by ACME

A **tiny** model we trained for tests.  Trailing spaces and odd characters: | ` <b> stay.

## Intended use

Teaching how releases are signed; nothing else.

## Training data

Generated text, see the repository.
"""


@pytest.fixture(scope="module")
def built(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A release of tiny_llama with a publisher README and two optimized artifacts."""
    root = tmp_path_factory.mktemp("aibom")
    model = root / "model"
    shutil.copytree(tiny_llama, model)
    (model / "README.md").write_text(PUBLISHER_README, encoding="utf-8")
    result = build_release(
        model,
        root / "out",
        key=PrivateKey.generate(),
        options=BuildOptions(
            repo_id="acme/tiny-llama",
            version="1.2.0",
            license="apache-2.0",
            terms="Be kind.\n",
            optimize=("int8", "bf16"),
            limitations="Tiny: it repeats itself.",
        ),
        now=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        show_progress=False,
    )
    return root / "out", result


def _statement(out: Path) -> tuple[ReleaseStatement, str]:
    payload = Envelope.from_json((out / "release.dsse.json").read_bytes()).payload
    return parse_release_statement(payload), release_digest(payload)


@pytest.fixture(scope="module")
def bom(built: tuple[Path, Any]) -> ReleaseBom:
    out, _ = built
    statement, digest = _statement(out)
    card = (out / "open" / "README.md").read_text("utf-8")
    return render_release_bom(statement, statement_digest=digest, model_card=card)


def _graph(bom: ReleaseBom, kind: str) -> list[dict[str, Any]]:
    return [node for node in bom.spdx["@graph"] if node["type"] == kind]


def test_both_documents_validate_against_the_official_schemas(bom: ReleaseBom) -> None:
    assert spdx_errors(bom.spdx) == []
    assert cyclonedx_errors(bom.cyclonedx) == []
    assert bom.spdx["@context"] == "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
    assert (bom.cyclonedx["bomFormat"], bom.cyclonedx["specVersion"]) == ("CycloneDX", "1.6")


def test_the_validators_reject_a_broken_document(bom: ReleaseBom) -> None:
    """The schema checks above can fail: one wrong value each is caught."""
    spdx = copy.deepcopy(bom.spdx)
    next(n for n in spdx["@graph"] if n["type"] == "ai_AIPackage")["ai_autonomyType"] = "maybe"
    assert spdx_errors(spdx)
    cdx = copy.deepcopy(bom.cyclonedx)
    cdx["metadata"]["component"]["modelCard"]["considerations"] = {"useCases": "one string"}
    assert cyclonedx_errors(cdx)


def test_every_tier_and_every_file_digest_is_listed(
    bom: ReleaseBom, built: tuple[Path, Any]
) -> None:
    out, _ = built
    statement, digest = _statement(out)
    assert {t.name for t in statement.tiers} == {"open", "optimized", "optimized_bf16"}
    packages = {p["name"]: p for p in _graph(bom, "ai_AIPackage")}
    files = _graph(bom, "software_File")
    spdx_digests = {
        (
            f["spdxId"].split("/file/")[1].split("/", 1)[0],
            f["name"],
            f["verifiedUsing"][0]["hashValue"],
        )
        for f in files
    }
    cdx_models = [bom.cyclonedx["metadata"]["component"], *bom.cyclonedx["components"]]
    cdx_digests = {
        (m["bom-ref"].removeprefix("tier:"), f["name"], f["hashes"][0]["content"])
        for m in cdx_models
        if m["type"] == "machine-learning-model"
        for f in m.get("components", [])
    }
    for tier in statement.tiers:
        package = packages[f"acme/tiny-llama@1.2.0#{tier.name}"]
        assert package["software_packageVersion"] == "1.2.0"
        assert package["verifiedUsing"][0]["hashValue"] == tier.manifest_digest
        for entry in tier.files:
            assert (tier.name, entry.path, entry.sha256) in spdx_digests
            assert (tier.name, entry.path, entry.sha256) in cdx_digests
        # The files on disk are the ones listed (README.md included: the card is signed).
        on_disk = {
            p.relative_to(out / tier.name).as_posix()
            for p in (out / tier.name).rglob("*")
            if p.is_file() and p.name != "model.sig"
        }
        assert on_disk == {f.path for f in tier.files}
    assert len(files) == sum(len(t.files) for t in statement.tiers)
    names = {m["name"] for m in cdx_models if m["type"] == "machine-learning-model"}
    assert names == {"acme/tiny-llama"}
    versions = {m["version"] for m in cdx_models if m["type"] == "machine-learning-model"}
    assert versions == {"1.2.0", "1.2.0-optimized", "1.2.0-optimized_bf16"}
    assert f"sha256:{digest}" in _graph(bom, "SpdxDocument")[0]["comment"]


def test_licence_and_fidelity_of_each_artifact(bom: ReleaseBom, built: tuple[Path, Any]) -> None:
    out, result = built
    statement, _ = _statement(out)
    expressions = {
        e["simplelicensing_licenseExpression"]
        for e in _graph(bom, "simplelicensing_LicenseExpression")
    }
    assert expressions == {"Apache-2.0"}
    rel = {
        (r["relationshipType"], r["from"].rsplit("/", 1)[-1]) for r in _graph(bom, "Relationship")
    }
    for tier in ("open", "optimized", "optimized_bf16"):
        assert ("hasDeclaredLicense", tier) in rel
        assert ("hasConcludedLicense", tier) in rel
    fidelity = fidelity_by_tier(statement)
    assert set(fidelity) == {"optimized", "optimized_bf16"}
    # The statement's strings are the build's measurements.
    measured = result.artifacts["optimized_bf16"].fidelity
    assert float(fidelity["optimized_bf16"]["top1_agreement"]) == pytest.approx(
        measured.top1_agreement, abs=1e-6
    )
    packages = {p["name"].rsplit("#", 1)[1]: p for p in _graph(bom, "ai_AIPackage")}
    cdx = {c["bom-ref"]: c for c in bom.cyclonedx["components"]}
    for tier, metrics in fidelity.items():
        spdx_metrics = {m["key"]: m["value"] for m in packages[tier]["ai_metric"]}
        assert spdx_metrics == {f"fidelity.{k}": v for k, v in metrics.items()}
        cdx_metrics = {
            m["type"]: m["value"]
            for m in cdx[f"tier:{tier}"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
        }
        assert cdx_metrics == {f"fidelity.{k}": v for k, v in metrics.items()}
        assert ("testedOn", tier) in rel
    assert "ai_metric" not in packages["open"]
    hyper = {m["key"]: m["value"] for m in packages["optimized"]["ai_hyperparameter"]}
    assert hyper["optimization.method"] == "int8"
    assert cdx["tier:optimized"]["licenses"] == [{"expression": "Apache-2.0"}]


def test_card_texts_and_absent_evidence(bom: ReleaseBom) -> None:
    packages = {p["name"].rsplit("#", 1)[1]: p for p in _graph(bom, "ai_AIPackage")}
    # The publisher's own README section; the CLI option for the one it lacked.
    assert packages["open"]["ai_informationAboutApplication"] == (
        "Teaching how releases are signed; nothing else."
    )
    assert packages["open"]["ai_limitation"] == "Tiny: it repeats itself."
    assert packages["open"]["ai_typeOfModel"] == ["text-generation"]
    # Nothing is claimed about safety or behaviour: noAssertion, no risk level, and an
    # annotation saying why.
    assert all("ai_safetyRiskAssessment" not in p for p in packages.values())
    assert {p["ai_autonomyType"] for p in packages.values()} == {"noAssertion"}
    (note,) = _graph(bom, "Annotation")
    assert "no evaluation attestation and no safety policy" in note["statement"]
    props = {p["name"]: p["value"] for p in bom.cyclonedx["metadata"]["properties"]}
    assert props["tiergate:evaluations"] == "none recorded"
    assert props["tiergate:safety_policy"] == "none recorded"
    card = bom.cyclonedx["metadata"]["component"]["modelCard"]
    assert card["considerations"]["technicalLimitations"] == ["Tiny: it repeats itself."]


def test_evaluations_are_one_argument_away(built: tuple[Path, Any]) -> None:
    out, _ = built
    statement, digest = _statement(out)
    card = (out / "open" / "README.md").read_text("utf-8")
    result = EvaluationResult(
        tier="optimized",
        task="arc_easy",
        metric="acc",
        value="0.4375",
        attestation_sha256="ab" * 32,
        dataset="arc_easy",
        interval=("0.40", "0.47"),
    )
    bom = render_release_bom(
        statement, statement_digest=digest, model_card=card, evaluations=[result]
    )
    assert spdx_errors(bom.spdx) == []
    assert cyclonedx_errors(bom.cyclonedx) == []
    optimized = next(c for c in bom.cyclonedx["components"] if c["bom-ref"] == "tier:optimized")
    metrics = optimized["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    assert {
        "type": "arc_easy.acc",
        "value": "0.4375",
        "slice": "arc_easy",
        "confidenceInterval": {"lowerBound": "0.40", "upperBound": "0.47"},
    } in metrics
    props = {p["name"] for p in bom.cyclonedx["metadata"]["properties"]}
    assert "tiergate:evaluations" not in props
    plain = render_release_bom(statement, statement_digest=digest, model_card=card)
    assert bom.cyclonedx["serialNumber"] != plain.cyclonedx["serialNumber"]
    with pytest.raises(AiBomInvalidError, match="names tier 'nope'"):
        render_release_bom(
            statement,
            statement_digest=digest,
            model_card=card,
            evaluations=[EvaluationResult("nope", "t", "m", "1", "ab" * 32)],
        )
    with pytest.raises(AiBomInvalidError):
        EvaluationResult("open", "t", "m", "1", "not-a-digest")


def test_same_inputs_same_bytes(bom: ReleaseBom, built: tuple[Path, Any]) -> None:
    out, _ = built
    statement, digest = _statement(out)
    card = (out / "open" / "README.md").read_text("utf-8")
    again = render_release_bom(statement, statement_digest=digest, model_card=card)
    assert again.files() == bom.files()
    assert bom.cyclonedx["metadata"]["timestamp"].startswith("2026-03-01T12:00:00")


def test_publisher_readme_survives_the_build_verbatim(built: tuple[Path, Any]) -> None:
    """Regression: the model folder's README.md was silently replaced by the generated card."""
    from release.card_sections import GENERATED_BEGIN, card_front_matter, card_section

    out, _ = built
    body = PUBLISHER_README.split("---\n", 2)[2]
    cards = {
        t: (out / t / "README.md").read_text("utf-8")
        for t in ("open", "optimized", "optimized_bf16")
    }
    assert len(set(cards.values())) == 1  # one card, signed in every tier
    card = cards["open"]
    assert body in card  # byte for byte, trailing spaces and all
    assert card.index(body) < card.index(GENERATED_BEGIN)
    meta = card_front_matter(card)
    assert meta["datasets"] == ["acme/tiny-corpus"]
    assert meta["license"] == "apache-2.0"
    table = card_section(card, "Comparison across tiers")
    assert [r.split("|")[1].strip() for r in table.splitlines()[4:]] == [
        "open",
        "optimized",
        "optimized_bf16",
    ]


def test_non_spdx_licences_and_odd_paths_stay_valid() -> None:
    """A licence with no SPDX id becomes a LicenseRef (never a made-up id); file paths with
    spaces or non-ASCII letters still give valid element IRIs."""
    from licensing.layout import TierFile
    from licensing.statements import ApprovalPolicy, tier_record
    from release._aibom_facts import spdx_license_expression

    assert spdx_license_expression("apache-2.0") == "Apache-2.0"
    assert spdx_license_expression("other") == "LicenseRef-other"
    assert spdx_license_expression("llama3") == "LicenseRef-llama3"
    files = (TierFile("docs/read me é.md", "ab" * 32, 3), TierFile("model.gguf", "cd" * 32, 9))
    for licence in ("other", "llama3", "MIT"):
        statement = ReleaseStatement(
            repo_id="acme/odd",
            version="0.1",
            tiers=(tier_record("open", files, gated=False),),
            license=licence,
            terms_digest=None,
            approval=ApprovalPolicy(),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        bom = render_release_bom(statement, statement_digest="ef" * 32, model_card="")
        assert spdx_errors(bom.spdx) == []
        assert cyclonedx_errors(bom.cyclonedx) == []
        names = {n["name"] for n in bom.spdx["@graph"] if n["type"] == "software_File"}
        assert names == {"docs/read me é.md", "model.gguf"}


def test_without_the_aibom_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from licensing.layout import TierFile
    from licensing.statements import ApprovalPolicy, tier_record
    from release.aibom import AiBomUnavailableError

    monkeypatch.setitem(sys.modules, "spdx_python_model", None)  # import fails, as uninstalled
    statement = ReleaseStatement(
        repo_id="acme/odd",
        version="0.1",
        tiers=(tier_record("open", (TierFile("a.json", "ab" * 32, 1),), gated=False),),
        license="MIT",
        terms_digest=None,
        approval=ApprovalPolicy(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(AiBomUnavailableError, match=r"tiergate\[aibom\]"):
        render_release_bom(statement, statement_digest="ef" * 32, model_card="")
