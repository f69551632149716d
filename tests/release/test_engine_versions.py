"""Issue #16 bad input: an engine too old for a format is refused loudly where we load.

transformers without ``compressed-tensors`` (or before 4.45) loads a compressed-tensors
folder with random weights and a warning; ``release.loader.load_model`` refuses first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from release.engines import MIN_VERSIONS, check_engine_versions
from release.errors import EngineVersionError, OptimizedTierInvalidError


def _versions(**found: str | None) -> object:
    def version_of(distribution: str) -> str | None:
        return found.get(distribution.replace("-", "_"), "99.0")

    return version_of


@pytest.mark.parametrize(
    ("tier_format", "found", "named"),
    [
        ("compressed-tensors", {"compressed_tensors": None}, "compressed-tensors >= 0.17"),
        ("compressed-tensors", {"compressed_tensors": "0.16.9"}, "found 0.16.9"),
        ("compressed-tensors", {"transformers": "4.44.2"}, "transformers >= 4.45"),
        ("gguf", {"gguf": "0.9.1"}, "gguf >= 0.10"),
        ("gguf", {"transformers": "4.45.0.dev0", "gguf": None}, "not installed"),
    ],
)
def test_a_missing_or_old_engine_package_is_refused_naming_the_artifact(
    tier_format: str, found: dict[str, str | None], named: str
) -> None:
    with pytest.raises(EngineVersionError) as caught:
        check_engine_versions("tier/optimized", tier_format, version_of=_versions(**found))  # type: ignore[arg-type]
    assert caught.value.code == "engine_too_old"
    assert isinstance(caught.value, OptimizedTierInvalidError)
    assert named in caught.value.message
    assert caught.value.message.startswith("tier/optimized: ")


@pytest.mark.parametrize("tier_format", ["compressed-tensors", "gguf"])
def test_minimum_versions_themselves_pass(tier_format: str) -> None:
    minimums = {d.replace("-", "_"): v for d, v in MIN_VERSIONS[tier_format]}
    check_engine_versions("t", tier_format, version_of=_versions(**minimums))  # type: ignore[arg-type]
    check_engine_versions("t", "plain", version_of=_versions(transformers=None))  # type: ignore[arg-type]


def test_load_model_refuses_a_compressed_tier_without_compressed_tensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    from release.loader import load_model

    (tmp_path / "config.json").write_text(
        json.dumps(
            {"model_type": "llama", "quantization_config": {"quant_method": "compressed-tensors"}}
        )
    )
    real = metadata.version

    def without_ct(distribution: str) -> str:
        if distribution == "compressed-tensors":
            raise metadata.PackageNotFoundError(distribution)
        return real(distribution)

    monkeypatch.setattr(metadata, "version", without_ct)
    with pytest.raises(EngineVersionError, match=r"compressed-tensors >= 0\.17, which is not"):
        load_model(tmp_path)


def test_documented_minimums_match_the_checked_ones() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "release_optimized_tier.md").read_text()
    for requirements in MIN_VERSIONS.values():
        for distribution, minimum in requirements:
            assert f"{distribution} >= {minimum}" in doc
