"""The publisher's card is kept: merged with the generated sections, never replaced.

Regression: a README.md in the model folder was silently dropped and every card said "Not
specified by the publisher" for intended use and limitations.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from gateway.cli.main import cli
from release.aibom import EvaluationResult
from release.card_compare import version_comparison_lines
from release.card_sections import (
    GENERATED_BEGIN,
    GENERATED_END,
    card_front_matter,
    card_section,
    merge_model_card,
)
from tests.release.test_model_card import _render

PUBLISHER = """---
language: [fr]
tags: [poems]
license: mit
---

# Mon modèle

Écrit à la main | avec des `backticks` et <em>du HTML</em>.

## Intended use

Poetry.
"""


def _front(card: str) -> dict[str, object]:
    return card_front_matter(card)


def test_publisher_text_survives_and_generated_keys_win() -> None:
    generated = _render()
    card = merge_model_card(generated, PUBLISHER)
    body = PUBLISHER.split("---\n", 2)[2]
    assert body.strip() in card
    assert card.count(GENERATED_BEGIN) == 1
    assert card.count(GENERATED_END) == 1
    assert card.index(body.strip()) < card.index(GENERATED_BEGIN)
    meta = _front(card)
    assert meta["language"] == ["fr"]  # the publisher's own key
    assert meta["license"] == "apache-2.0"  # the signed option, not the README's
    assert meta["tags"] == ["tiergate", "llama", "tiny", "poems"]
    assert card_section(card, "Intended use") == "Poetry."  # the publisher's, first


def test_rebuilding_replaces_only_the_generated_block() -> None:
    first = merge_model_card(_render(version="1.0.0"), PUBLISHER)
    # The built card given back as the next version's README (or edited around the block).
    edited = first.replace("Poetry.", "Poetry, revised.") + "\nA footer of mine.\n"
    second = merge_model_card(_render(version="2.0.0"), edited)
    assert second.count(GENERATED_BEGIN) == 1
    assert "# acme/tiny-llama 2.0.0" in second
    assert "# acme/tiny-llama 1.0.0" not in second
    assert "Poetry, revised." in second
    assert second.rstrip().endswith("A footer of mine.")
    assert second.index(GENERATED_END) < second.index("A footer of mine.")
    assert merge_model_card(_render(version="2.0.0"), second) == second  # a fixed point


def test_without_a_publisher_card_the_generated_card_is_one_block() -> None:
    card = merge_model_card(_render(), None)
    assert card.startswith("---\n")
    _, body = card.split("\n---\n", 1)
    assert body.strip().startswith(GENERATED_BEGIN)
    assert body.strip().endswith(GENERATED_END)


def test_model_index_structure_parses_with_huggingface_hub() -> None:
    from huggingface_hub import ModelCard

    plain = ModelCard(_render())
    assert plain.data.to_dict().get("model-index") is None  # no evaluations, no claims
    result = EvaluationResult("optimized", "arc_easy", "acc", "0.5", "ab" * 32, dataset="arc")
    card = ModelCard(_render(evaluations=[result]))
    (entry,) = card.data.eval_results or []
    assert (entry.task_type, entry.dataset_name, entry.metric_type) == (
        "text-generation",
        "arc",
        "acc",
    )
    assert entry.metric_value == 0.5
    assert "| arc_easy: acc |" in str(card.content)


def test_comparison_table_across_tiers() -> None:
    card = _render()
    table = card_section(card, "Comparison across tiers")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3  # header, open, optimized
    assert rows[1].startswith("| open | original |")
    assert "1.000x (reference)" in rows[1]
    assert "| 0.275x | 99.60% |" in rows[2]


def test_comparison_across_versions_needs_two(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from licensing.layout import TierFile
    from licensing.statements import ApprovalPolicy, ReleaseStatement, tier_record

    def statement(version: str, agreement: str) -> ReleaseStatement:
        files = (TierFile("model.safetensors", "ab" * 32, 2 << 20),)
        return ReleaseStatement(
            repo_id="acme/tiny",
            version=version,
            tiers=(
                tier_record("open", files, gated=False),
                tier_record("optimized", files, gated=True),
            ),
            license="mit",
            terms_digest=None,
            approval=ApprovalPolicy(),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            optimization={"method": "int8"},
            fidelity={"top1_agreement": agreement, "mean_kl": "0.01"},
        )

    assert version_comparison_lines([statement("1.0.0", "0.9")]) == []
    lines = version_comparison_lines([statement("2.0.0", "0.95"), statement("1.0.0", "0.9")])
    assert "| 2.0.0 | optimized | int8 | 2.00 MiB | 95.00% | 0.0100 | n/a |" in lines
    assert "| 1.0.0 | open | original | 2.00 MiB | n/a | n/a | n/a |" in lines


def test_cli_options_and_card_template_reach_the_signed_card(
    tiny_llama: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    (model / "README.md").write_text("# Ignored: the template wins\n", encoding="utf-8")
    template = tmp_path / "card.md"
    template.write_text(PUBLISHER, encoding="utf-8")
    key = tmp_path / "key.pem"
    assert CliRunner().invoke(cli, ["keys", "generate", "--out", str(key)]).exit_code == 0
    out = tmp_path / "out"
    args = ["release", "build", str(model), "--out", str(out), "--repo", "acme/tiny",
            "--version", "1.0.0", "--key", str(key), "--optimize", "bf16",
            "--card-template", str(template), "--limitations", "Only *short* poems."]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for tier in ("open", "optimized"):
        card = (out / tier / "README.md").read_text("utf-8")
        assert PUBLISHER.split("---\n", 2)[2].strip() in card
        assert "Ignored" not in card
        assert card_section(card, "Limitations") == "Only *short* poems."
        assert "Not specified by the publisher" not in card
        generated_use = card.split(GENERATED_BEGIN, 1)[1]
        assert card_section(generated_use, "Intended use").startswith("See the publisher's")
        assert yaml.safe_load(card.split("---\n", 2)[1])["language"] == ["fr"]


def test_an_unusable_publisher_card_stops_the_build_before_any_work(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """A non-UTF-8 or oversized README.md is a clear BuildOptionsInvalidError, up front."""
    from datetime import UTC, datetime

    import pytest

    from licensing.keys import PrivateKey
    from release.build import BuildOptions, build_release
    from release.errors import BuildOptionsInvalidError

    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    options = BuildOptions(repo_id="acme/tiny", version="1.0.0", optimize="bf16")
    for content, reason in ((b"caf\xe9\n", "not UTF-8"), (b"x" * (600 * 1024), "larger than")):
        (model / "README.md").write_bytes(content)
        with pytest.raises(BuildOptionsInvalidError, match=reason):
            build_release(model, tmp_path / "out", key=PrivateKey.generate(), options=options,
                          now=datetime.now(UTC), show_progress=False)  # fmt: skip
        assert not (tmp_path / "out").exists()
    big = BuildOptions(repo_id="acme/tiny", version="1.0.0", card_template="y" * (600 * 1024))
    with pytest.raises(BuildOptionsInvalidError, match="card template is larger"):
        build_release(model, tmp_path / "out", key=PrivateKey.generate(), options=big,
                      now=datetime.now(UTC), show_progress=False)  # fmt: skip
