"""`tiergate release`: validate a model folder and build its optimized tier, offline.

Heavy imports (torch, transformers) happen inside the commands, so loading this group for
`--help` stays fast. `build`, `publish`, `verify`, `list`, `show` and `yank` join this group
when signing and upload land.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.cli._release_options import CALIBRATION_NAMES, MAX_SHARD_SIZE_OPTION, QUANT_CHOICE

if TYPE_CHECKING:
    from release.fidelity import FidelityReport
    from release.safetensors_check import ModelFolderReport

_existing_dir = click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)


@click.group(name="release")
def group() -> None:
    """Build, verify, publish and manage releases."""


def _folder_lines(report: ModelFolderReport) -> list[str]:
    lines = [f"{report.root}: valid ({report.model_type or 'unknown model_type'})"]
    for file in report.files:
        lines.append(
            f"  {file.file}: {file.tensor_count} tensors, {file.size} bytes, "
            f"dtypes {', '.join(file.dtypes) or '-'}"
        )
    if report.index_file:
        lines.append(f"  shard index {report.index_file}: consistent with the shards")
    lines.append(f"  total: {report.tensor_count} tensors in {len(report.files)} file(s)")
    lines.extend(f"warning: {w}" for w in report.warnings)
    return lines


@group.command()
@click.argument("model_dir", type=_existing_dir)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate(model_dir: Path, as_json: bool) -> None:
    """Check MODEL_DIR: config.json, every safetensors file, the shard index, the tokenizer,
    and that the weights store every tensor config.json declares."""
    from release.declared import check_declared_weights
    from release.safetensors_check import validate_model_folder

    report = validate_model_folder(model_dir)
    check_declared_weights(report)
    if as_json:
        doc = {
            "model_dir": str(report.root),
            "model_type": report.model_type,
            "index_file": report.index_file,
            "files": [
                {"file": f.file, "size": f.size, "tensors": f.tensor_count, "dtypes": f.dtypes}
                for f in report.files
            ],
            "tensor_count": report.tensor_count,
            "warnings": list(report.warnings),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    for line in _folder_lines(report):
        click.echo(line, err=line.startswith("warning:"))


def _fidelity_lines(fidelity: FidelityReport) -> list[str]:
    return [
        f"method:            {fidelity.method}",
        f"size:              {fidelity.optimized_weights_bytes} / {fidelity.open_weights_bytes}"
        f" bytes = {fidelity.size_ratio:.3f}x",
        f"top-1 agreement:   {fidelity.top1_agreement:.2%} over {fidelity.probe_positions}"
        " probe positions",
        f"mean KL:           {fidelity.mean_kl:.3g} nats",
        f"tensor rel. error: max {fidelity.max_tensor_error:.3g}, "
        f"mean {fidelity.mean_tensor_error:.3g}",
        f"perplexity:        {fidelity.perplexity_optimized:.4g} / {fidelity.perplexity_open:.4g}"
        f" = {fidelity.perplexity_ratio:.4f}x (held-out text, {fidelity.engine})",
    ]


@group.command()
@click.argument("model_dir", type=_existing_dir)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the optimized tier (must be absent or empty).",
)
@click.option(
    "--method",
    type=QUANT_CHOICE,
    default="int8",
    show_default=True,
    help="int8 (compressed-tensors W8A8), int4 (compressed-tensors W4A16), bf16, "
    "gguf-q8_0 or gguf-q4_0 (GGUF for llama.cpp), gguf-q4_k_m, gguf-q5_k_m or gguf-q6_k "
    "(k-quants by llama.cpp's quantizer; need the [llamacpp] extra: make llamacpp).",
)
@click.option(
    "--group-size",
    type=click.Choice(["32", "64", "128"]),
    default=None,
    help="int4 group size [default: 128].",
)
@click.option(
    "--calibration",
    type=click.Choice(CALIBRATION_NAMES),
    default=None,
    help="int8/int4 calibration [default: smoothquant+gptq for int8, gptq for int4].",
)
@click.option(
    "--calibration-text",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="UTF-8 calibration text [default: the Python language reference, pydoc_data].",
)
@MAX_SHARD_SIZE_OPTION
@click.option("--no-progress", is_flag=True, help="Never show progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the fidelity report as JSON.")
def quantize(
    model_dir: Path,
    out_dir: Path,
    method: str,
    group_size: str | None,
    calibration: str | None,
    calibration_text: Path | None,
    max_shard_size: int,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Write the optimized tier of MODEL_DIR to --out and measure it against MODEL_DIR."""
    from release.calibration import read_calibration_text
    from release.fidelity import build_optimized_tier
    from release.safetensors_check import validate_model_folder

    report = validate_model_folder(model_dir)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    tier = build_optimized_tier(
        model_dir,
        out_dir,
        method=method,
        group_size=int(group_size) if group_size else None,
        max_shard_size=max_shard_size,
        calibration=calibration,  # type: ignore[arg-type]
        calibration_text=read_calibration_text(calibration_text) if calibration_text else None,
        show_progress=False if no_progress else None,
    )
    if as_json:
        doc = tier.fidelity.to_dict(include_tensor_errors=True)
        doc["out_dir"] = str(tier.quantized.out_dir)
        doc["quantized_modules"] = len(tier.quantized.modules)
        doc["weight_files"] = list(tier.quantized.weight_files)
        doc["calibration"] = dict(tier.quantized.calibration)
        click.echo(json.dumps(doc, indent=2))
        return
    files = len(tier.quantized.weight_files)
    click.echo(
        f"wrote {tier.quantized.out_dir} ({len(tier.quantized.modules)} modules quantized, "
        f"{files} weight file{'s' if files > 1 else ''})"
    )
    for line in _fidelity_lines(tier.fidelity):
        click.echo(line)


def _attach_publishing_commands() -> None:
    from gateway.cli.release_card import COMMANDS as CARDS
    from gateway.cli.release_publish import COMMANDS as PUBLISHING
    from gateway.cli.release_rebuild import COMMANDS as REBUILDING

    for command in (*PUBLISHING, *REBUILDING, *CARDS):
        group.add_command(command)


_attach_publishing_commands()
