from __future__ import annotations

import yaml

from release.fidelity import FidelityReport
from release.manifest import TierFile, TierManifest
from release.model_card import TierCard, render_model_card

DIGEST = "ab" * 32


def _manifest(*paths: str) -> TierManifest:
    return TierManifest(tuple(TierFile(p, DIGEST, 10 * (i + 1)) for i, p in enumerate(paths)))


FIDELITY = FidelityReport(
    method="int8",
    open_weights_bytes=4_000_000,
    optimized_weights_bytes=1_100_000,
    size_ratio=0.275,
    probe_positions=512,
    top1_agreement=0.996,
    mean_kl=2.5e-5,
    max_tensor_error=0.007,
    mean_tensor_error=0.004,
    tensor_errors=(("a.weight", 0.007), ("b.weight", 0.001)),
)


def _render(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "repo_id": "acme/tiny-llama",
        "version": "1.0.0",
        "license": "apache-2.0",
        "tiers": (
            TierCard("open", _manifest("config.json", "model.safetensors")),
            TierCard(
                "optimized",
                _manifest("config.json", "model.safetensors", "tokenizer.json"),
                gated=True,
                description="int8 weights",
                revision="optimized",
                fidelity=FIDELITY,
            ),
        ),
        "base_model": "acme/base",
        "tags": ("llama", "tiny"),
        "terms_sha256": "cd" * 32,
        "intended_use": "Research on tiny models.",
        "limitations": "Tiny; not useful for anything real.",
        "gated_fields": {"Organization": "text", "I agree": "checkbox"},
    }
    kwargs.update(overrides)
    return render_model_card(**kwargs)  # type: ignore[arg-type]


def _front_matter(card: str) -> dict[str, object]:
    assert card.startswith("---\n")
    end = card.index("\n---\n", 4)
    data = yaml.safe_load(card[4:end])
    assert isinstance(data, dict)
    return data


def test_front_matter_has_hub_fields() -> None:
    meta = _front_matter(_render())
    assert meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers"
    assert meta["base_model"] == "acme/base"
    assert meta["tags"] == ["tiergate", "llama", "tiny"]
    assert meta["extra_gated_fields"] == {"Organization": "text", "I agree": "checkbox"}
    assert isinstance(meta["extra_gated_prompt"], str)


def test_sections_digests_and_fidelity() -> None:
    card = _render()
    for heading in (
        "## Tiers",
        "## File digests",
        "## Fidelity",
        "## Intended use",
        "## Limitations",
        "## Watermark",
        "## License and terms",
    ):
        assert heading in card
    assert f"| `model.safetensors` | 20 | `{DIGEST}` |" in card
    assert "| Top-1 next-token agreement | 99.60% |" in card
    assert "0.275x" in card
    assert "cd" * 32 in card
    assert "Research on tiny models." in card


def test_rendering_is_deterministic_and_pure() -> None:
    assert _render() == _render()


def test_no_base_model_no_gating_when_all_open() -> None:
    meta = _front_matter(
        _render(base_model=None, gated_fields=None, tiers=(TierCard("open", _manifest("a")),))
    )
    assert "base_model" not in meta
    assert "extra_gated_prompt" not in meta
    assert "## Fidelity" not in _render(tiers=(TierCard("open", _manifest("a")),))


def test_hostile_values_cannot_break_the_front_matter_or_tables() -> None:
    card = _render(
        license="mit\n---\nevil: true",
        tags=("a\n---", "b: c"),
        tiers=(TierCard("open|x", _manifest("we|ird`name.txt")),),
    )
    meta = _front_matter(card)
    assert meta["license"] == "mit\n---\nevil: true"
    assert "evil" not in meta
    assert "| `we\\|ird'name.txt` |" in card
