"""Options shared by `tiergate release build`, `publish` and `rebuild-optimized`: what to
build (artifacts, calibration, shards, gating policy) and how to measure it in engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import click

# The names of release.formats.OPTIMIZATIONS (kept literal: importing release here would slow
# `--help`); a test checks the two lists agree.
OPTIMIZE_NAMES = (
    "int8",
    "int4",
    "bf16",
    "gguf-q8_0",
    "gguf-q4_0",
    "gguf-q4_k_m",
    "gguf-q5_k_m",
    "gguf-q6_k",
)
QUANT_CHOICE = click.Choice(OPTIMIZE_NAMES)
# release.calibration.CALIBRATION_METHODS, literal for the same reason (a test compares them).
CALIBRATION_NAMES = ("none", "gptq", "smoothquant", "smoothquant+gptq")


class ByteSize(click.ParamType[int]):
    """A size like 500MB, 2GB or 1GiB (or plain bytes), checked when the command line is read."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from release.errors import ReleaseError
        from release.quantize import parse_size

        try:
            return parse_size(value)
        except ReleaseError as exc:
            self.fail(exc.message, param, ctx)


MAX_SHARD_SIZE_OPTION = click.option(
    "--max-shard-size",
    type=ByteSize(),
    default="5GB",
    show_default=True,
    help="Largest optimized-tier weight file (500MB, 2GB, 1GiB...); past it the tier is "
    "split into model-0000k-of-0000n.safetensors with an index.",
)


def approval_policy(mode: str, grant_days: int, fields: tuple[str, ...]) -> Any:
    from licensing.statements import ApprovalMode, ApprovalPolicy, FieldType, GatedField

    parsed = []
    for spec in fields:
        # NAME[:TYPE[:LABEL]]  e.g. org:text:Organisation  or  country:country
        name, _, rest = spec.partition(":")
        kind, _, label = rest.partition(":")
        parsed.append(
            GatedField(
                name=name,
                label=label or name.replace("_", " ").capitalize(),
                type=cast("FieldType", kind or "text"),
            )  # type: ignore[arg-type]
        )
    return ApprovalPolicy(
        mode=cast("ApprovalMode", mode),
        grant_lifetime_seconds=grant_days * 86400,  # type: ignore[arg-type]
        fields=tuple(parsed),
    )


def build_options(func: Any) -> Any:
    options = [
        click.option("--repo", "repo_id", required=True, metavar="ORG/NAME", help="Repository id."),
        click.option("--version", "version", required=True, help="Release version, e.g. 1.0.0."),
        click.option(
            "--key",
            "key_path",
            required=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Publisher private key (ECDSA P-256 PEM, see `tiergate keys generate`).",
        ),
        click.option(
            "--license", "license_id", default="other", show_default=True, help="SPDX license id."
        ),
        click.option(
            "--terms",
            "terms_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Usage terms (Markdown) the gated tier's users accept.",
        ),
        click.option(
            "--optimize",
            type=QUANT_CHOICE,
            multiple=True,
            default=("int8",),
            show_default=True,
            help="An optimized artifact to build (repeatable): int8 / int4 (compressed-tensors, "
            "vLLM and transformers), bf16, gguf-q8_0 / gguf-q4_0 (llama.cpp, Ollama), "
            "gguf-q4_k_m / gguf-q5_k_m / gguf-q6_k (llama.cpp's k-quants; need the [llamacpp] "
            "extra: make llamacpp). The first is tier 'optimized', the others "
            "'optimized_<name>'.",
        ),
        click.option(
            "--own-grant",
            "own_grant",
            type=QUANT_CHOICE,
            multiple=True,
            help="A further --optimize artifact that needs its own grant (repeatable); by "
            "default the grant on tier 'optimized' opens every optimized artifact.",
        ),
        click.option(
            "--group-size",
            type=click.Choice(["32", "64", "128"]),
            default=None,
            help="int4 group size (default 128).",
        ),
        click.option(
            "--calibration",
            type=click.Choice(CALIBRATION_NAMES),
            default=None,
            help="Calibration of int8/int4 (default: smoothquant+gptq for int8, gptq for "
            "int4; none: round-to-nearest).",
        ),
        click.option(
            "--calibration-text",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="UTF-8 text to calibrate on (default: the Python language reference that "
            "ships with CPython). Its sha256 goes into the signed release statement.",
        ),
        click.option(
            "--approval",
            type=click.Choice(["auto", "manual"]),
            default="manual",
            show_default=True,
            help="How access requests to the gated tier are decided.",
        ),
        click.option(
            "--grant-days",
            type=click.IntRange(1, 3650),
            default=30,
            show_default=True,
            help="How long a grant lasts.",
        ),
        click.option(
            "--field",
            "fields",
            multiple=True,
            metavar="NAME[:TYPE[:LABEL]]",
            help="A field requesters fill in (TYPE: text, country, checkbox). Repeatable.",
        ),
        MAX_SHARD_SIZE_OPTION,
        click.option(
            "--allow-unreliable-text-detection",
            "allow_unreliable_text_detection",
            is_flag=True,
            help="Let the gateway watermark generation even when the tokenizer does not "
            "round-trip its own sampled text (detection from text then misses watermarks). "
            "Recorded in the signed release statement.",
        ),
        click.option("--base-model", default=None, help="The model this one derives from."),
        click.option(
            "--intended-use",
            default=None,
            help="The card's Intended use section (Markdown); default: the publisher's own "
            "section of the README or --card-template, else 'Not specified'.",
        ),
        click.option(
            "--limitations",
            default=None,
            help="The card's Limitations section (Markdown); same defaults as --intended-use.",
        ),
        click.option(
            "--card-template",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="Your model card (Markdown, optional YAML front matter), kept verbatim with "
            "the generated sections added; default: MODEL_DIR/README.md.",
        ),
        click.option(
            "--safety-policy",
            "safety_policy",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="The output-safety policy (JSON, TOML or YAML; docs/safety.md), checked "
            "before the build and signed into the release statement.",
        ),
        click.option("--force", is_flag=True, help="Overwrite a non-empty --out folder."),
    ]
    for option in reversed(options):
        func = option(func)
    return engine_options(func)


def engine_options(func: Any) -> Any:
    """How each artifact is measured at build time (release.engine_measure)."""
    options = [
        click.option(
            "--measure-speed/--no-measure-speed",
            "measure_speed",
            default=None,
            help="Measure each artifact's decode tokens/s against the open tier in its engine "
            "(vLLM, else transformers; llama.cpp for GGUF) and sign the record. Default: on "
            "when the open weights are at most 1 GiB.",
        ),
        click.option(
            "--speed-tokens",
            type=click.IntRange(1, 1024),
            default=32,
            show_default=True,
            help="Tokens decoded per sequence in each timed speed run (batch 1 and 8).",
        ),
        click.option(
            "--vllm-env",
            "vllm_env",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            envvar="TIERGATE_VLLM_ENV",
            default=None,
            help="A vLLM environment (its folder, with bin/python): compressed-tensors and "
            "bf16 artifacts are then measured in vLLM, fidelity included [env: "
            "TIERGATE_VLLM_ENV].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def engine_build_options(kw: dict[str, Any]) -> dict[str, Any]:
    """The BuildOptions fields of :func:`engine_options`' values."""
    env: Path | None = kw.get("vllm_env")
    return {
        "measure_speed": kw.get("measure_speed"),
        "speed_tokens": kw.get("speed_tokens") or 32,
        "vllm_python": str(env / "bin" / "python") if env is not None else None,
    }
