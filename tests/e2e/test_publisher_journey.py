"""The publisher's journey through a real server, driven through the `tiergate` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Account, LiveServer
from tests.model_signing_cli import model_signing_verify

pytestmark = pytest.mark.e2e


def tiergate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_build_verify_publish_list_yank(
    tmp_path: Path,
    tiny_model_dir: Path,
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    alice = make_account("alice", "publisher", org="acme")
    env = {"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": alice.token}
    key = tmp_path / "publisher.pem"
    ok(tiergate("keys", "generate", "--out", str(key)))
    pub = tmp_path / "publisher.pub.pem"
    registered = httpx.post(
        f"{live_server.url}/api/keys", json={"pem": pub.read_text()}, headers=alice.headers
    )
    assert registered.status_code == 201, registered.text
    terms = tmp_path / "terms.md"
    terms.write_text("Use it kindly.\n")
    out = tmp_path / "release"
    built = ok(
        tiergate(
            "release",
            "build",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--repo",
            "acme/tiny",
            "--version",
            "1.0.0",
            "--key",
            str(key),
            "--license",
            "apache-2.0",
            "--terms",
            str(terms),
            "--approval",
            "auto",
            "--field",
            "org:text:Organisation",
            # A tiny model's ~1 MB int8 tier, cut into Hub-style shards with an index, so
            # signing, both verifiers and the upload below see a sharded optimized tier.
            "--max-shard-size",
            "400KB",
        )
    )
    assert "top-1 agreement" in built
    shards = sorted(p.name for p in (out / "optimized").glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    assert (out / "optimized" / "model.safetensors.index.json").is_file()
    for tier in ("open", "optimized"):
        assert "OK" in ok(tiergate("release", "verify", str(out / tier), "--key", str(pub)))
        # The tool people already trust accepts our signature unchanged.
        checked = model_signing_verify(out / tier, pub)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    statement = json.loads((out / "release.dsse.json").read_text())
    fidelity_payload = statement["payload"]
    assert fidelity_payload  # signed, opaque here; the gateway checks it

    published = ok(tiergate("release", "publish", str(out), env=env))
    assert "acme/tiny@1.0.0 published" in published
    again = ok(tiergate("release", "publish", str(out), env=env))
    assert "uploaded 0 blob(s)" in again

    listing = ok(tiergate("release", "list", env={"TIERGATE_GATEWAY": live_server.url}))
    assert "acme/tiny@1.0.0" in listing
    shown = ok(tiergate("release", "show", "acme/tiny@1.0.0", "--json", env=env))
    detail = json.loads(shown)
    assert detail["status"] == "published"
    assert {t["name"]: t["gated"] for t in detail["tiers"]} == {"open": False, "optimized": True}
    sizes = {t["name"]: t["total_size"] for t in detail["tiers"]}
    assert sizes["optimized"] < sizes["open"] * 0.5
    optimized = next(t for t in detail["tiers"] if t["name"] == "optimized")
    assert {*shards, "model.safetensors.index.json"} <= {f["path"] for f in optimized["files"]}
    assert "extra_gated_fields" in detail["model_card"]

    yanked = ok(
        tiergate("release", "yank", "acme/tiny@1.0.0", "--reason", "bad tokenizer", env=env)
    )
    assert "yanked" in yanked
    shown = json.loads(ok(tiergate("release", "show", "acme/tiny@1.0.0", "--json", env=env)))
    assert (shown["status"], shown["yank_reason"]) == ("yanked", "bad tokenizer")


def test_publish_refuses_unregistered_key_and_leaves_nothing(
    tmp_path: Path,
    tiny_model_dir: Path,
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    bob = make_account("bob", "publisher", org="acme")
    env = {"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": bob.token}
    registered_key, rogue_key = tmp_path / "good.pem", tmp_path / "rogue.pem"
    ok(tiergate("keys", "generate", "--out", str(registered_key)))
    ok(tiergate("keys", "generate", "--out", str(rogue_key)))
    httpx.post(
        f"{live_server.url}/api/keys",
        json={"pem": (tmp_path / "good.pub.pem").read_text()},
        headers=bob.headers,
    ).raise_for_status()
    out = tmp_path / "release"
    ok(
        tiergate(
            "release",
            "build",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--repo",
            "acme/x",
            "--version",
            "1.0.0",
            "--key",
            str(rogue_key),
        )
    )
    refused = tiergate("release", "publish", str(out), env=env)
    assert refused.returncode == 1
    assert "release_rejected" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert httpx.get(f"{live_server.url}/api/releases").json() == []

    # Another org's publisher cannot publish into acme.
    eve = make_account("eve", "publisher", org="evil")
    denied = tiergate(
        "release",
        "publish",
        str(out),
        env={"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": eve.token},
    )
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr


def test_build_refuses_bad_options_first_and_leaves_no_half_built_folder(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Issue #15: a bad --repo failed only after the whole build; a failed build left a
    half-built folder; transformers' "Loading weights" bar leaked into the output."""
    key = tmp_path / "publisher.pem"
    ok(tiergate("keys", "generate", "--out", str(key)))
    out = tmp_path / "release"

    def build(*extra: str) -> subprocess.CompletedProcess[str]:
        return tiergate(
            "release", "build", str(tiny_model_dir), "--out", str(out), "--version", "1.0.0",
            "--key", str(key), *extra,
        )  # fmt: skip

    bad = build("--repo", "not a repo")
    assert bad.returncode == 1
    assert "build_options_invalid" in bad.stderr
    assert "validating" not in bad.stdout + bad.stderr  # refused before any work
    assert not out.exists()

    unknown = build("--repo", "acme/tiny", "--optimize", "gguf-q3_k_s")
    assert unknown.returncode == 2  # a usage error, named with the choices that exist
    assert "gguf-q4_0" in unknown.stderr
    assert not out.exists()

    built = build("--repo", "acme/tiny")
    assert built.returncode == 0, built.stderr
    assert "Loading weights" not in built.stdout + built.stderr
    assert (out / "release.dsse.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".release")] == []
