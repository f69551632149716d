"""Issue #16: per-artifact grant policy.

By default the grant on ``optimized`` opens every further optimized artifact of a release
(``optimized_<name>``: the same weights in other formats). A publisher can give an artifact
its own grant at build time (``--own-grant gguf-q4_0``); the signed release statement records
it and the gateway's one grant rule honours it: the ``optimized`` grant then does NOT open
that artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, grant_access, publish

REPO_ID = "acme/multi"
VERSION = "1.0.0"
OPTIMIZE = ("bf16", "gguf-q8_0", "gguf-q4_0")
FILES = {
    "optimized": "model.safetensors",
    "optimized_gguf_q8_0": "model-q8_0.gguf",
    "optimized_gguf_q4_0": "model-q4_0.gguf",
}


def _build(root: Path, own_grant: tuple[str, ...]) -> BuiltRelease:
    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model

    model = build_tiny_model(root / "model", hidden_size=64, num_layers=2)
    key = PrivateKey.generate()
    build_release(
        model,
        root / "out",
        key=key,
        options=BuildOptions(
            repo_id=REPO_ID,
            version=VERSION,
            license="apache-2.0",
            terms="Be kind.\n",
            optimize=OPTIMIZE,
            own_grant=own_grant,
            approval=ApprovalPolicy(),
        ),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    return BuiltRelease(root / "out", key.public_key.to_pem(), REPO_ID, VERSION)


@pytest.fixture(scope="module")
def own_grant_release(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    return _build(tmp_path_factory.mktemp("own-grant"), ("gguf-q4_0",))


@pytest.fixture(scope="module")
def shared_grant_release(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    return _build(tmp_path_factory.mktemp("shared-grant"), ())


def _download(client: TestClient, account: Account, tier: str) -> Any:
    url = f"/{REPO_ID}/resolve/{tier}/{FILES[tier]}"
    return client.get(url, headers=account.headers, follow_redirects=False)


def _opens(client: TestClient, account: Account) -> dict[str, bool]:
    out = {}
    for tier in FILES:
        response = _download(client, account, tier)
        assert response.status_code in (302, 403), response.text
        if response.status_code == 403:
            assert response.json()["code"] == "grant_required"
        out[tier] = response.status_code == 302
    return out


def test_the_statement_and_card_record_an_artifact_with_its_own_grant(
    own_grant_release: BuiltRelease,
) -> None:
    from licensing.dsse import Envelope
    from licensing.statements import parse_release_statement

    envelope = Envelope.from_json((own_grant_release.out_dir / "release.dsse.json").read_bytes())
    statement = parse_release_statement(envelope.payload)
    assert statement.optimization["own_grant"] == "optimized_gguf_q4_0"
    card = (own_grant_release.out_dir / "open" / "README.md").read_text()
    assert "| optimized_gguf_q4_0 | gated: its own grant" in card
    assert "| optimized_gguf_q8_0 | gated: the grant on `optimized` opens it" in card


def test_a_grant_on_optimized_does_not_open_a_separately_granted_artifact(
    own_grant_release: BuiltRelease,
    client: TestClient,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    """Regression: the `optimized` grant used to open every `optimized_*` tier."""
    publish(own_grant_release, client, make_account("pat", "publisher", org="acme"))  # type: ignore[arg-type]
    dev = make_account("dev")
    assert _opens(client, dev) == dict.fromkeys(FILES, False)
    grant_access(engine, "dev", REPO_ID, VERSION, tier="optimized")
    assert _opens(client, dev) == {
        "optimized": True,
        "optimized_gguf_q8_0": True,
        "optimized_gguf_q4_0": False,
    }
    grant_access(engine, "dev", REPO_ID, VERSION, tier="optimized_gguf_q4_0")
    assert _opens(client, dev) == dict.fromkeys(FILES, True)
    # Its own grant opens only itself.
    other = make_account("other")
    grant_access(engine, "other", REPO_ID, VERSION, tier="optimized_gguf_q4_0")
    assert _opens(client, other) == {
        "optimized": False,
        "optimized_gguf_q8_0": False,
        "optimized_gguf_q4_0": True,
    }
    page = client.get(f"/models/{REPO_ID}/v/{VERSION}")
    assert page.status_code == 200, page.text
    assert page.text.count("needs its own grant") == 2  # optimized and optimized_gguf_q4_0
    assert page.text.count("opened by the grant on optimized") == 1


def test_by_default_one_grant_on_optimized_opens_every_artifact(
    shared_grant_release: BuiltRelease,
    client: TestClient,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    publish(shared_grant_release, client, make_account("pat", "publisher", org="acme"))  # type: ignore[arg-type]
    dev = make_account("dev")
    assert _opens(client, dev) == dict.fromkeys(FILES, False)
    grant_access(engine, "dev", REPO_ID, VERSION, tier="optimized")
    assert _opens(client, dev) == dict.fromkeys(FILES, True)


@pytest.mark.parametrize(
    ("own_grant", "message"),
    [(("int4",), "not an artifact of this release"), (("bf16",), "always has its own grant")],
)
def test_own_grant_must_name_a_further_artifact(
    own_grant: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    from release.errors import BuildOptionsInvalidError

    with pytest.raises(BuildOptionsInvalidError, match=message) as caught:
        _build(tmp_path, own_grant)
    assert caught.value.code == "build_options_invalid"
    assert not (tmp_path / "out").exists()


def test_build_cli_records_own_grant_and_calibration_text(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli.main import cli
    from licensing.dsse import Envelope
    from licensing.keys import PrivateKey, save_private_key
    from licensing.statements import parse_release_statement
    from release.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "model", hidden_size=64, num_layers=2)
    key = save_private_key(PrivateKey.generate(), tmp_path / "k.pem")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["Weights are released in tiers, each one signed."] * 60))
    args = ["release", "build", str(model), "--out", str(tmp_path / "out"), "--repo", REPO_ID]
    args += ["--version", VERSION, "--key", str(key), "--optimize", "int8"]
    args += ["--optimize", "gguf-q8_0", "--own-grant", "gguf-q8_0"]
    args += ["--calibration", "gptq", "--calibration-text", str(corpus)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    envelope = Envelope.from_json((tmp_path / "out" / "release.dsse.json").read_bytes())
    recipe = parse_release_statement(envelope.payload).optimization
    assert recipe["own_grant"] == "optimized_gguf_q8_0"
    assert recipe["calibration"] == "gptq"
    assert recipe["calibration_text"] == "file: corpus.txt"
