"""What a build is given, checked before any work: its options and the publisher's card."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from release._release_layout import MODEL_CARD_FILE
from release.engine_measure import AUTO_SPEED_MAX_BYTES, EngineSettings
from release.errors import BuildOptionsInvalidError

if TYPE_CHECKING:
    from release.build import BuildOptions

__all__ = [
    "MAX_PUBLISHER_CARD_BYTES",
    "MAX_SPEED_TOKENS",
    "check_build_options",
    "engine_settings",
    "read_publisher_card",
]


def check_build_options(options: BuildOptions) -> None:
    """Refuse unusable options before any work (a bad repo id used to fail after the whole
    build)."""
    from licensing.layout import is_repo_id

    if not is_repo_id(options.repo_id):
        raise BuildOptionsInvalidError(f"repo id must look like ORG/NAME, got {options.repo_id!r}")
    if not options.version or any(c.isspace() or c in "/@:" for c in options.version):
        raise BuildOptionsInvalidError(f"version {options.version!r} is not usable in a revision")
    _check_engine_options(options)


# The gateway refuses a larger card (gateway.services.releases.MAX_MODEL_CARD_BYTES); the
# generated block adds a few KiB per file listed, so this leaves room for it.
MAX_PUBLISHER_CARD_BYTES = 512 * 1024


def read_publisher_card(source: Path, options: BuildOptions) -> str | None:
    """What the publisher wrote: the card template, else the model folder's README.md
    (a symlinked README.md is ignored, as the open tier never holds symlinks)."""
    if options.card_template is not None:
        text = options.card_template
    else:
        readme = source / MODEL_CARD_FILE
        if not readme.is_file() or readme.is_symlink():
            return None
        if readme.stat().st_size > MAX_PUBLISHER_CARD_BYTES:
            raise BuildOptionsInvalidError(
                f"{readme}: larger than {MAX_PUBLISHER_CARD_BYTES // 1024} KiB; the gateway "
                "refuses such a model card"
            )
        try:
            text = readme.read_text("utf-8")
        except UnicodeDecodeError as exc:
            raise BuildOptionsInvalidError(f"{readme}: not UTF-8 text ({exc.reason})") from None
    if len(text.encode("utf-8")) > MAX_PUBLISHER_CARD_BYTES:
        raise BuildOptionsInvalidError(
            f"the card template is larger than {MAX_PUBLISHER_CARD_BYTES // 1024} KiB; the "
            "gateway refuses such a model card"
        )
    return text


# Enough for a steady rate on any model, few enough that a build never stalls on timing.
MAX_SPEED_TOKENS = 1024


def _check_engine_options(options: BuildOptions) -> None:
    tokens = options.speed_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        tokens = 0
    if not 1 <= tokens <= MAX_SPEED_TOKENS:
        raise BuildOptionsInvalidError(
            f"speed tokens must be an integer from 1 to {MAX_SPEED_TOKENS}, "
            f"got {options.speed_tokens!r}"
        )
    if options.vllm_python is not None and not Path(options.vllm_python).is_file():
        raise BuildOptionsInvalidError(
            f"no vLLM interpreter at {options.vllm_python} (a vLLM environment's bin/python)"
        )


def engine_settings(options: BuildOptions, open_bytes: int) -> EngineSettings:
    settings = EngineSettings(vllm_python=options.vllm_python, decode_tokens=options.speed_tokens)
    if options.measure_speed is None and open_bytes > AUTO_SPEED_MAX_BYTES:
        reason = (
            f"the open weights are {open_bytes / 2**30:.1f} GiB, past the "
            f"{AUTO_SPEED_MAX_BYTES // 2**30} GiB measured by default; pass --measure-speed"
        )
        return replace(settings, measure_speed=False, skip_reason=reason)
    if options.measure_speed is False:
        return replace(settings, measure_speed=False)
    return settings
