"""Issue #16 migration: `tiergate release rebuild-optimized` against a real gateway.

A release published with its optimized tier in the old ``quant_method: tiergate`` format is
rebuilt as a NEW version with a standard compressed-tensors tier, signed and published like
any release; the old version, its folder and its signature are left exactly as they were,
and its tier keeps loading through ``release.loader``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from tests.conftest import Account, LiveServer

pytestmark = pytest.mark.e2e


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _cli(args: list[str], env: dict[str, str]) -> Result:
    from gateway.cli.main import cli

    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture(scope="module")
def legacy_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(release folder, publisher key file): version 1.0.0 with a tiergate-format int4 tier."""
    from licensing.keys import PrivateKey, save_private_key
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model

    root = tmp_path_factory.mktemp("legacy")
    model = build_tiny_model(root / "model", hidden_size=64, num_layers=2, train_steps=20)
    key = PrivateKey.generate()
    key_file = save_private_key(key, root / "publisher.pem")
    build_release(
        model,
        root / "release",
        key=key,
        options=BuildOptions(
            repo_id="acme/tiny",
            version="1.0.0",
            license="apache-2.0",
            terms="Be kind.\n",
            optimize="int4",
            tier_format="tiergate",
            approval=ApprovalPolicy(mode="auto"),
        ),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    return root / "release", key_file


def test_rebuild_publishes_a_new_standard_version_and_leaves_the_old_one_alone(
    legacy_release: tuple[Path, Path],
    tmp_path: Path,
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    from licensing.keys import load_private_key
    from release.loader import load_model, tier_format
    from release.migrate import read_signed_release

    old, key_file = legacy_release
    assert tier_format(old / "optimized") == "tiergate"
    before = _digests(old)
    publisher = make_account("pat", "publisher", org="acme")
    env = {"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": publisher.token}
    pem = load_private_key(key_file).public_key.to_pem().decode()
    registered = httpx.post(
        f"{live_server.url}/api/keys", json={"pem": pem}, headers=publisher.headers
    )
    assert registered.status_code == 201, registered.text
    published = _cli(["release", "publish", str(old)], env)
    assert published.exit_code == 0, published.output
    old_detail = httpx.get(f"{live_server.url}/api/releases/acme/tiny/1.0.0").json()

    new = tmp_path / "tiny-1.0.1"
    rebuilt = _cli(
        [
            "release",
            "rebuild-optimized",
            str(old),
            "--out",
            str(new),
            "--version",
            "1.0.1",
            "--key",
            str(key_file),
            "--calibration",
            "none",
            "--publish",
        ],
        env,
    )
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "acme/tiny@1.0.1 published" in rebuilt.output

    # The new version: standard format, same terms and policy, signed by the publisher.
    assert tier_format(new / "optimized") == "compressed-tensors"
    config = json.loads((new / "optimized" / "config.json").read_text())
    assert config["quantization_config"]["format"] == "pack-quantized"
    key = load_private_key(key_file)
    statement = read_signed_release(new, [key.public_key])
    assert statement.version == "1.0.1"
    assert statement.optimization["method"] == "int4"
    assert statement.optimization["format"] == "compressed-tensors"
    assert statement.approval.mode == "auto"
    assert (new / "terms.md").read_text() == "Be kind.\n"
    detail = httpx.get(f"{live_server.url}/api/releases/acme/tiny/1.0.1").json()
    assert detail["status"] == "published"

    # The old version: untouched on disk and on the gateway, and it still loads.
    assert _digests(old) == before
    again = httpx.get(f"{live_server.url}/api/releases/acme/tiny/1.0.0").json()
    assert again["status"] == "published"
    assert again["statement_digest"] == old_detail["statement_digest"]
    assert load_model(old / "optimized") is not None


def test_rebuild_refuses_what_it_must_not_do(
    legacy_release: tuple[Path, Path], tmp_path: Path
) -> None:
    from release.errors import RebuildRefusedError

    old, key_file = legacy_release
    base = ["release", "rebuild-optimized", "--key", str(key_file), "--calibration", "none"]

    def refused(source: Path, version: str) -> str:
        out = tmp_path / version
        result = _cli([*base, str(source), "--out", str(out), "--version", version], {})
        assert isinstance(result.exception, RebuildRefusedError), result.output
        assert result.exception.code == "rebuild_refused"
        assert not out.exists()
        return result.exception.message

    # Never the signed version itself.
    assert "never rewritten" in refused(old, "1.0.0")
    # A release already in the standard formats has nothing to migrate.
    standard = tmp_path / "standard"
    ok = _cli([*base, str(old), "--out", str(standard), "--version", "1.0.1"], {})
    assert ok.exit_code == 0, ok.output
    assert "nothing to migrate" in refused(standard, "1.0.2")
    # Open weights that differ from what the statement signed are not rebuilt.
    tampered = tmp_path / "tampered"
    shutil.copytree(old, tampered)
    (tampered / "open" / "config.json").write_text(
        (old / "open" / "config.json").read_text().replace("{", '{"x": 1, ', 1)
    )
    assert "differ from the signed release statement" in refused(tampered, "1.0.3")
