"""`tiergate watermark`: offline watermark detection for key holders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from watermark.detector import DetectionResult

_MAX_INPUT_BYTES = 16 * 1024 * 1024
_MAX_CONFIG_BYTES = 64 * 1024


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        # A path the user typed: their mistake, said plainly (not an internal error).
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise click.UsageError(f"{what} {path} is larger than {limit} bytes")
    return data


def _parse_token_ids(text: str) -> list[int]:
    from watermark.errors import InvalidTokensError

    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        return [int(p, 10) for p in parts]
    except ValueError:
        raise InvalidTokensError("--token-ids must be integers separated by commas") from None


def _load_tokenizer(directory: Path) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise click.UsageError("reading text needs transformers installed") from None
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot load a tokenizer from {directory}: {exc}") from None


def _render(result: DetectionResult) -> str:
    config = result.config
    verdict = "watermarked" if result.watermarked else "not watermarked"
    lines = [
        f"verdict:        {verdict} (threshold p <= {result.alpha:g})",
        f"z-score:        {result.z_score:.3f}",
        f"p-value:        {result.p_value:.3e} (log10 {result.log10_p_value:.2f})",
        f"tokens scored:  {result.tokens_scored} of {result.tokens_total}",
        f"green:          {result.green_count} ({result.green_fraction:.3f})",
        f"scheme:         {config.scheme}, key id {config.key_id}",
        f"parameters:     gamma={config.gamma:g} delta={config.delta:g} "
        f"context_width={config.context_width} self_seeded={config.self_seeded} "
        f"vocab_size={config.vocab_size}",
    ]
    decoding = result.payload
    if decoding is not None:
        if decoding.valid:
            lines.append(f"payload:        {decoding.payload} (check code valid)")
        else:
            lines.append("payload:        none (check code does not match)")
    return "\n".join(lines)


@click.group(name="watermark")
def group() -> None:
    """Detect watermarks in text or token ids (offline; needs the secret key)."""


@group.command("detect")
@click.option("--file", "file_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--text", "text", type=str, help="Text to test.")
@click.option("--token-ids", "token_ids", type=str, help="Comma-separated token ids.")
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Local tokenizer directory (for --file and --text).",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Watermark config JSON recorded with the generation.",
)
@click.option(
    "--key-file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Hex key."
)
@click.option("--prompt-length", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--alpha",
    default=1e-6,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def detect(
    file_path: Path | None,
    text: str | None,
    token_ids: str | None,
    tokenizer_dir: Path | None,
    config_path: Path,
    key_file: Path,
    prompt_length: int,
    alpha: float,
    as_json: bool,
) -> None:
    """Print verdict, z-score, exact p-value, tokens scored and the parameters used."""
    given = [
        name
        for name, v in (("--file", file_path), ("--text", text), ("--token-ids", token_ids))
        if v is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --file, --text or --token-ids")
    from watermark.config import WatermarkConfig
    from watermark.detector import detect as detect_ids
    from watermark.detector import detect_text
    from watermark.keys import load_key_file

    config = WatermarkConfig.from_json(_read_bounded(config_path, _MAX_CONFIG_BYTES, "config"))
    key = load_key_file(key_file)
    if token_ids is not None:
        result = detect_ids(
            _parse_token_ids(token_ids), config, key, prompt_length=prompt_length, alpha=alpha
        )
    else:
        if tokenizer_dir is None:
            raise click.UsageError("--file and --text need --tokenizer")
        if file_path is not None:
            try:
                text = _read_bounded(file_path, _MAX_INPUT_BYTES, "input").decode("utf-8")
            except UnicodeDecodeError:
                raise click.UsageError(f"{file_path} is not UTF-8 text") from None
        assert text is not None
        tokenizer = _load_tokenizer(tokenizer_dir)
        result = detect_text(text, tokenizer, config, key, prompt_length=prompt_length, alpha=alpha)
    if as_json:
        click.echo(json.dumps(result.to_dict(include_flags=False), sort_keys=True))
    else:
        click.echo(_render(result))
