"""The oldest engine versions that load each optimized artifact format correctly.

Checked where tiergate itself loads a tier (:func:`release.loader.load_model`), so a too-old
environment fails loudly instead of loading wrong weights: transformers before 4.45, or one
without ``compressed-tensors``, warns "Unknown quantization type" and fills the quantized
layers with random values. The same table is in ``docs/release_optimized_tier.md`` with the
engines tiergate does not drive itself (vLLM, llama.cpp, Ollama).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from release.errors import EngineVersionError

__all__ = ["MIN_VERSIONS", "check_engine_versions"]

# Format -> (distribution, oldest version) for loading through transformers.
MIN_VERSIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    # 0.17 is the oldest compressed-tensors these configs were loaded with (vLLM 0.32's).
    "compressed-tensors": (("transformers", "4.45"), ("compressed-tensors", "0.17")),
    # transformers' GGUF loader reads GPT-2 from 4.45 and needs gguf >= 0.10.
    "gguf": (("transformers", "4.45"), ("gguf", "0.10")),
}
_NUMBERS = re.compile(r"\d+")


def _release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version string (``4.45.0.dev0`` -> ``(4, 45, 0)``)."""
    parts: list[int] = []
    for piece in version.split("."):
        match = _NUMBERS.match(piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def _installed(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_engine_versions(
    artifact: str,
    tier_format: str,
    *,
    version_of: Callable[[str], str | None] = _installed,
) -> None:
    """Raise :class:`~release.errors.EngineVersionError` (naming ``artifact``, the package
    and the minimum) unless every package loading ``tier_format`` is installed and recent
    enough. Formats without an entry need nothing beyond transformers itself."""
    for distribution, minimum in MIN_VERSIONS.get(tier_format, ()):
        found = version_of(distribution)
        if found is None:
            raise EngineVersionError(
                f"{artifact}: loading a {tier_format} tier with transformers needs "
                f"{distribution} >= {minimum}, which is not installed "
                f"(pip install '{distribution}>={minimum}')"
            )
        if _release(found) < _release(minimum):
            raise EngineVersionError(
                f"{artifact}: loading a {tier_format} tier with transformers needs "
                f"{distribution} >= {minimum}, found {found}"
            )
