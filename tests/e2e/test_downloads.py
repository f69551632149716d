"""The downstream developer's journey through a real server: `tiergate pull` and transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    BuiltRelease,
    built_release,
    grant_access,
    publish,
)

pytestmark = pytest.mark.e2e


def tiergate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


def test_pull_open_and_gated_tiers_resume_and_verify(
    tmp_path: Path,
    built_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        publish(built_release, http, make_account("pat", "publisher", org="acme"))
    env = {"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": ""}
    opened = built_release.tier_files("open")

    # Resume: half a weights file already there from an interrupted run.
    out = tmp_path / "open"
    partial = tmp_path / "open.partial"
    partial.mkdir()
    weights = opened["model.safetensors"]
    (partial / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    done = tiergate("pull", "acme/tiny", "--out", str(out), "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert not partial.exists()
    for name, data in opened.items():
        assert (out / name).read_bytes() == data

    # A corrupted partial file fails loudly, leaves no DIR, and a rerun repairs it.
    bad_out = tmp_path / "again"
    bad_partial = tmp_path / "again.partial"
    bad_partial.mkdir()
    (bad_partial / "config.json").write_bytes(b"x" * len(opened["config.json"]))
    failed = tiergate("pull", "acme/tiny@1.0.0", "--out", str(bad_out), "-q", env=env)
    assert failed.returncode == 1
    assert "tier_verification_failed" in failed.stderr
    assert "config.json" in failed.stderr
    assert not bad_out.exists()
    repaired = tiergate("pull", "acme/tiny@1.0.0", "--out", str(bad_out), "-q", env=env)
    assert repaired.returncode == 0, repaired.stderr

    # Gated tier: refused without a grant, then downloaded through links, key pinned.
    dev = make_account("dev")
    gated_env = {**env, "TIERGATE_TOKEN": dev.token}
    gated_out = tmp_path / "optimized"
    refused = tiergate("pull", "acme/tiny", "--tier", "optimized", "--out", str(gated_out),
                       "-q", env=gated_env)  # fmt: skip
    assert refused.returncode == 1
    assert "grant_required" in refused.stderr
    assert "tiergate access request acme/tiny@1.0.0" in refused.stderr  # what to do next
    assert not gated_out.exists()
    # Regression: the refusal used to leave an empty DIR.partial behind.
    assert not (tmp_path / "optimized.partial").exists()
    grant_access(engine, "dev")
    pub = tmp_path / "pub.pem"
    pub.write_bytes(built_release.public_pem)
    pulled = tiergate("pull", "acme/tiny", "--tier", "optimized", "--out", str(gated_out),
                      "--key", str(pub), env=gated_env)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    for name, data in built_release.tier_files("optimized").items():
        assert (gated_out / name).read_bytes() == data
    # The progress bar counts bytes and shows a speed.
    assert "B/s" in pulled.stderr

    # Pulling into a non-empty folder needs --force, which replaces it only once verified.
    again = tiergate("pull", "acme/tiny", "--out", str(out), "-q", env=env)
    assert again.returncode == 1
    assert "--force" in again.stderr
    (out / "stale.txt").write_text("from an older pull")
    forced = tiergate("pull", "acme/tiny", "--out", str(out), "--force", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    summary = json.loads(forced.stdout)
    assert (summary["repo_id"], summary["tier"], summary["verified"]) == ("acme/tiny", "open", True)
    assert summary["bytes"] == sum(len(d) for n, d in opened.items() if n != "model.sig")
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if ".old-" in p.name) == []

    # `tiergate access link` (gateway/cli/links.py): one file, straight to curl-able URL.
    from click.testing import CliRunner

    from gateway.cli.links import command as link_command

    issued = CliRunner().invoke(
        link_command,
        ["acme/tiny@1.0.0", "--file", "model.safetensors", "--gateway", live_server.url,
         "--token", dev.token],
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    url = issued.stdout.strip().splitlines()[0]
    fetched = httpx.get(url)
    assert fetched.status_code == 200
    assert fetched.content == built_release.tier_files("optimized")["model.safetensors"]

    # A pinned key that did not sign the release fails verification.
    from licensing.keys import PrivateKey

    other = tmp_path / "other.pem"
    other.write_bytes(PrivateKey.generate().public_key.to_pem())
    wrong = tiergate("pull", "acme/tiny", "--out", str(tmp_path / "x"), "--key", str(other),
                     "-q", env=env)  # fmt: skip
    assert wrong.returncode == 1
    assert not (tmp_path / "x").exists()
