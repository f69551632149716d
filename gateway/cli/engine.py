"""`tiergate engine`: run a verified release tier on vLLM with tiergate's watermark plugin."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli._client import api_client, gateway_options

__all__ = ["group"]


@click.group(name="engine")
def group() -> None:
    """Run release tiers on vLLM for the gateway to route generation to.

    \b
    The gateway keeps auth, grants, quotas, call tags and the log; the engine samples, with
    tiergate's logits-processor plugin applying the tier's watermark key to each call.
    See docs/deploy.md ("Engines") for the whole topology.
    """


def _default_cache() -> Path:
    return Path.home() / ".cache" / "tiergate" / "engines"


@group.command("serve", context_settings={"ignore_unknown_options": False})
@click.argument("model", metavar="ORG/NAME@VERSION[:TIER]")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="vLLM's port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="vLLM's bind address.")
@click.option(
    "--engine-python",
    envvar="TIERGATE_ENGINE_PYTHON",
    default="python3",
    show_default=True,
    help="The python of vLLM's own environment (or $TIERGATE_ENGINE_PYTHON).",
)
@click.option(
    "--engine-pythonpath",
    envvar="TIERGATE_ENGINE_PYTHONPATH",
    default=None,
    help="Put this on the engine's PYTHONPATH (tiergate-watermark installed with --target).",
)
@click.option("--served-model-name", default=None, help="vLLM's model name [default: MODEL].")
@click.option(
    "--dtype",
    type=click.Choice(["auto", "bfloat16", "float16", "float32"]),
    default=None,
    help="[default: bfloat16 for compressed-tensors tiers, else auto]",
)
@click.option("--max-model-len", type=click.IntRange(min=1), default=None)
@click.option("--tensor-parallel-size", type=click.IntRange(min=1), default=None)
@click.option("--pipeline-parallel-size", type=click.IntRange(min=1), default=None)
@click.option(
    "--api-key-env",
    default=None,
    metavar="VAR",
    help="Protect the engine with the API key held in $VAR (the gateway reads the same var).",
)
@click.option(
    "--cache-dir",
    envvar="TIERGATE_ENGINE_CACHE",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where verified tiers and key sets live [default: ~/.cache/tiergate/engines].",
)
@click.option(
    "--keyset-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the key set here (a secret mount) instead of under --cache-dir/keys.",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Pin the publisher's public key (PEM) instead of fetching it from the gateway.",
)
@click.option("--dry-run", is_flag=True, help="Pull, verify and key, print the command; no start.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON line.")
@click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- VLLM_ARGS...]")
@gateway_options
def serve(
    model: str,
    port: int,
    host: str,
    engine_python: str,
    engine_pythonpath: str | None,
    served_model_name: str | None,
    dtype: str | None,
    max_model_len: int | None,
    tensor_parallel_size: int | None,
    pipeline_parallel_size: int | None,
    api_key_env: str | None,
    cache_dir: Path | None,
    keyset_file: Path | None,
    key_path: Path | None,
    dry_run: bool,
    as_json: bool,
    vllm_args: tuple[str, ...],
    gateway: str,
    token: str | None,
) -> None:
    """Pull and verify MODEL's tier, fetch its watermark key, and start vLLM with the plugin.

    \b
    Needs a token that may export the tier's key (its org's publisher, or an admin); the
    export is logged. Once vLLM answers /health, prints the [[engine]] entry to add to the
    gateway's engines file (TIERGATE_ENGINES_FILE). Runs until stopped (Ctrl-C, SIGTERM).

    \b
    Examples:
      tiergate engine serve acme/tiny@1.0.0:optimized --port 8100 \\
          --engine-python /opt/vllm/bin/python
      tiergate engine serve acme/big@2.1.0 --port 8100 --host 0.0.0.0 \\
          --tensor-parallel-size 4 -- --gpu-memory-utilization 0.9
      tiergate engine serve acme/tiny@1.0.0 --port 8100 --dry-run --json
    """
    from gateway.cli._engine import (
        EngineSettings,
        describe_command,
        prepare_engine,
        run_engine,
    )

    settings = EngineSettings(
        port=port,
        host=host,
        engine_python=engine_python,
        engine_pythonpath=engine_pythonpath,
        served_model_name=served_model_name,
        dtype=dtype,
        max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        api_key_env=api_key_env,
        extra_args=vllm_args,
    )
    with api_client(gateway, token, timeout=300.0) as http:
        plan = prepare_engine(
            http,
            model,
            settings,
            cache_dir=cache_dir or _default_cache(),
            keyset_file=keyset_file,
            key_path=key_path,
        )

    def report() -> None:
        if as_json:
            click.echo(json.dumps({**plan.to_json(), "started": not dry_run}), nl=True)
            return
        click.echo(
            f"# {plan.model}: signature and every sha256 verified ({plan.model_dir}); "
            f"key {plan.key_id} -> {plan.keyset_file} (0600; export logged at index "
            f"{plan.key_log_index})"
        )
        if dry_run:
            click.echo(f"# command (not started):\n{describe_command(plan)}")
        else:
            click.echo(f"# vLLM {plan.vllm_version} is serving at {plan.url}")
        click.echo("# add to the gateway's engines file (TIERGATE_ENGINES_FILE):")
        click.echo(plan.engines_toml(), nl=False)

    if dry_run:
        report()
        return
    click.echo(f"starting vLLM for {plan.model} on {plan.url} ...", err=True)
    code = run_engine(plan, host=host, on_ready=report)
    if code not in (0, -15, 143):
        raise click.exceptions.Exit(code)


@group.command("keyset")
@click.argument("model", metavar="ORG/NAME@VERSION[:TIER]")
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key set file to write (mode 0600): the engine's secret.",
)
@click.option("--force", is_flag=True, help="Replace an existing key set file.")
@gateway_options
def keyset(model: str, out_file: Path, force: bool, gateway: str, token: str | None) -> None:
    """Write MODEL's watermark key set for an engine started elsewhere (a Secret, a mount).

    \b
    For Kubernetes or compose, where the engine pod pulls and verifies the tier itself:
      tiergate engine keyset acme/tiny@1.0.0:optimized --out engine-keys.json
      kubectl -n tiergate create secret generic tiergate-engine-keys \\
          --from-file=keys.json=engine-keys.json && rm engine-keys.json
    Admins and the releasing org's publishers only; the export is logged.
    """
    from gateway.cli._engine import EngineSetupError, write_engine_keyset

    if out_file.exists() and not force:
        raise EngineSetupError(f"{out_file} exists; pass --force to replace it")
    with api_client(gateway, token) as http:
        key_id, index = write_engine_keyset(http, model, out_file)
    click.echo(f"{model}: key {key_id} -> {out_file} (0600; export logged at index {index})")
