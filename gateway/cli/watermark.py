"""`tiergate watermark`: offline watermark detection for key holders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli._client import api_client, call, gateway_options

if TYPE_CHECKING:
    from watermark.detector import DetectionResult
    from watermark.text_detection import TextDetection

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


def _render_tokenization(reading: TextDetection, result: DetectionResult) -> str:
    """Which reading of the text was scored, the correction, and whether to trust a miss."""
    count = len(reading.candidates)
    lines = [
        f"tokenization:   scored as {reading.tokenization!r}, best of {count} candidate "
        f"tokenization(s) ({', '.join(reading.candidates)}); p-value corrected x{count} "
        f"(raw log10 {reading.raw_log10_p_value:.2f})",
    ]
    trust = reading.trust
    if trust.trusted:
        lines.append("text trust:     the tokenizer reads this text back as its own")
    else:
        lines.append("text trust:     LOW: the text's tokenization looks foreign")
        lines += [f"                - {reason}" for reason in trust.reasons]
        if not result.watermarked:
            lines.append(
                "                a miss proves little here: pass --token-ids if you have them"
            )
    return "\n".join(lines)


@click.group(name="watermark")
def group() -> None:
    """Detect watermarks in text or token ids (offline; needs the secret key).

    \b
    Publishers get their model's key and config with `export-key`, then:
      tiergate watermark export-key acme/tiny@1.0.0:open --out wm/
      tiergate watermark detect --text "..." --tokenizer ./tiny \\
          --config wm/<key_id>.config.json --key-file wm/<key_id>.key
    vLLM's own watermark (`--watermark-config '{"key": N, ...}'`), N written to a file:
      tiergate watermark detect --scheme vllm-gumbel --key-file vllm.key \\
          --context-width 4 --text "..." --tokenizer ./tiny
    """


@group.command("export-key")
@click.argument("model", metavar="ORG/NAME[@VERSION][:TIER]")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for <key_id>.key (mode 0600) and <key_id>.config.json.",
)
@click.option("--force", is_flag=True, help="Overwrite key files that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@gateway_options
def export_key(
    model: str, out_dir: Path, force: bool, as_json: bool, gateway: str, token: str | None
) -> None:
    """Write the watermark key(s) MODEL was served with, for offline `watermark detect`.

    Admins and publishers of the releasing org only; every export is a log entry. The key
    exposes this model tier's watermark and nothing else (keys are derived per tier).
    """
    with api_client(gateway, token) as http:
        answer = call(
            http,
            "POST",
            "/api/watermark/keys/export",
            what="exporting the watermark key",
            json={"model": model},
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for item in answer["keys"]:
        key_path = out_dir / f"{item['key_id']}.key"
        config_path = out_dir / f"{item['key_id']}.config.json"
        _write_private(key_path, item["key"] + "\n", force=force)
        config_path.write_text(item["config"] + "\n", encoding="utf-8")
        written.append(
            {
                "model": item["model"],
                "key_id": item["key_id"],
                "key_file": str(key_path),
                "config": str(config_path),
                "log_index": item["log_index"],
            }
        )
    if as_json:
        click.echo(json.dumps(written, indent=2))
        return
    for row in written:
        click.echo(
            f"{row['model']}: key {row['key_id']} -> {row['key_file']}, {row['config']} "
            f"(logged at index {row['log_index']})"
        )


@group.command("register-vllm-key")
@click.argument("model", metavar="ORG/NAME[@VERSION][:TIER]")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the `key` of the model's vLLM --watermark-config (decimal or 0x hex).",
)
@click.option("--context-width", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--deduplicate/--no-deduplicate", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the registration as JSON.")
@gateway_options
def register_vllm_key(
    model: str,
    key_file: Path,
    context_width: int,
    deduplicate: bool,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Register the key of vLLM's own watermark for MODEL, so the gateway's detector (API,
    web page) checks text against it without the checker holding the key.

    Admins and publishers of the releasing org only; the registration is a log entry (without
    the key); the gateway stores the key sealed and never returns it.
    """
    from watermark.vllm_gumbel import load_gumbel_key_file

    key = load_gumbel_key_file(key_file)  # fails here, before anything is sent
    with api_client(gateway, token) as http:
        answer = call(
            http,
            "POST",
            "/api/watermark/keys/vllm",
            what="registering the vLLM watermark key",
            json={
                "model": model,
                "key": str(key.value),
                "context_width": context_width,
                "deduplicate_contexts": deduplicate,
            },
        )
    if as_json:
        click.echo(json.dumps(answer, sort_keys=True))
        return
    click.echo(
        f"{answer['model']}: vLLM watermark key registered (id {answer['id']}, "
        f"context_width={answer['context_width']}, logged at index {answer['log_index']})"
    )


def _write_private(path: Path, text: str, *, force: bool) -> None:
    """Create ``path`` with mode 0600 from the start, so the secret is never world-readable."""
    import os

    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{path} exists; pass --force to overwrite it") from None
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


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
    "--scheme",
    type=click.Choice(["tg-kgw-v1", "vllm-gumbel"]),
    default="tg-kgw-v1",
    show_default=True,
    help="tg-kgw-v1 (tiergate's, with --config and --key-file) or vLLM's built-in "
    "Gumbel-max watermark (with --key-file holding the integer key vLLM was started with).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="tg-kgw-v1: watermark config JSON recorded with the generation.",
)
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="tg-kgw-v1: hex key; vllm-gumbel: the decimal (or 0x hex) `key` of vLLM's "
    "--watermark-config (a file, so the key is never on a command line).",
)
@click.option(
    "--context-width",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="vllm-gumbel: vLLM's context_width.",
)
@click.option(
    "--deduplicate/--no-deduplicate",
    default=True,
    show_default=True,
    help="vllm-gumbel: score each context once (vLLM's detector default).",
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
    scheme: str,
    config_path: Path | None,
    key_file: Path,
    context_width: int,
    deduplicate: bool,
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
    if scheme == "vllm-gumbel":
        if config_path is not None or prompt_length:
            raise click.UsageError(
                "--config and --prompt-length are tg-kgw-v1 options (vLLM's contexts never "
                "include the prompt: pass the generated text only)"
            )
        _detect_gumbel(
            _read_input(file_path, text, token_ids, tokenizer_dir),
            key_file,
            context_width,
            deduplicate,
            alpha,
            as_json,
        )
        return
    if config_path is None:
        raise click.UsageError("--scheme tg-kgw-v1 needs --config")
    from watermark.config import WatermarkConfig
    from watermark.detector import detect as detect_ids
    from watermark.keys import load_key_file
    from watermark.text_detection import detect_text_robust

    config = WatermarkConfig.from_json(_read_bounded(config_path, _MAX_CONFIG_BYTES, "config"))
    key = load_key_file(key_file)
    reading: TextDetection | None = None
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
        reading = detect_text_robust(
            text, tokenizer, config, key, prompt_length=prompt_length, alpha=alpha
        )
        result = reading.result
    if as_json:
        data = result.to_dict(include_flags=False)
        if reading is not None:
            data["tokenization"] = reading.to_dict()
        click.echo(json.dumps(data, sort_keys=True))
    else:
        click.echo(_render(result))
        if reading is not None:
            click.echo(_render_tokenization(reading, result))


def _read_input(
    file_path: Path | None, text: str | None, token_ids: str | None, tokenizer_dir: Path | None
) -> list[int]:
    """Token ids from --token-ids, or --text/--file read with --tokenizer."""
    if token_ids is not None:
        return _parse_token_ids(token_ids)
    if tokenizer_dir is None:
        raise click.UsageError("--file and --text need --tokenizer")
    if file_path is not None:
        try:
            text = _read_bounded(file_path, _MAX_INPUT_BYTES, "input").decode("utf-8")
        except UnicodeDecodeError:
            raise click.UsageError(f"{file_path} is not UTF-8 text") from None
    assert text is not None
    from watermark.detector import tokenize

    return tokenize(text, _load_tokenizer(tokenizer_dir))[0]


def _detect_gumbel(
    ids: list[int], key_file: Path, context_width: int, deduplicate: bool, alpha: float,
    as_json: bool,
) -> None:  # fmt: skip
    from watermark.vllm_gumbel import GumbelConfig, detect, load_gumbel_key_file

    config = GumbelConfig(context_width=context_width, deduplicate_contexts=deduplicate)
    result = detect(ids, config, load_gumbel_key_file(key_file), alpha=alpha)
    if as_json:
        click.echo(json.dumps(result.to_dict(include_flags=False), sort_keys=True))
        return
    verdict = "watermarked" if result.watermarked else "not watermarked"
    click.echo(
        "\n".join(
            [
                f"verdict:        {verdict} (threshold p <= {result.alpha:g})",
                f"score:          {result.score:.3f} (Gamma({result.tokens_scored}, 1) by chance)",
                f"z-score:        {result.z_score:.3f}",
                f"p-value:        {result.p_value:.3e} (log10 {result.log10_p_value:.2f})",
                f"tokens scored:  {result.tokens_scored} of {result.tokens_total}",
                f"r >= 1/2:       {result.green_count} ({result.green_fraction:.3f})",
                f"scheme:         vllm-gumbel (philox), context_width={context_width} "
                f"deduplicate_contexts={deduplicate}",
                "payload:        none (vLLM's watermark carries no payload)",
            ]
        )
    )
