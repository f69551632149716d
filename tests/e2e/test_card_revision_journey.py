"""Evaluations onto the card through a real server: build and publish with the CLI, attest,
`tiergate release card`, then `ModelCard.load`, `snapshot_download` + `model_signing verify`
and `tiergate pull` on the revised tier."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from licensing.dsse import Envelope
from licensing.keys import PrivateKey, load_private_key
from licensing.statements import ReleaseStatement, parse_release_statement, release_digest
from tests.conftest import Account, LiveServer
from tests.e2e.test_publisher_journey import ok, tiergate
from tests.gateway.test_hub import clean_env, run_client
from tests.model_signing_cli import model_signing_verify
from tests.release.card_revision_fixtures import eval_envelope

# Building quantizes and measures the model (minutes on a shared 2-core machine).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HUB_SCRIPT = r"""
import json, sys
from pathlib import Path
from huggingface_hub import ModelCard, snapshot_download
out = Path(sys.argv[1])
card = ModelCard.load("acme/tiny")
results = [(r.task_name, r.metric_type, r.metric_value) for r in card.data.eval_results or []]
main = snapshot_download("acme/tiny", local_dir=out / "main")
print(json.dumps({"model_name": card.data.model_name, "results": results, "main": str(main)}))
"""


def build_small_release(model_dir: Path, out: Path, key: PrivateKey) -> None:
    """A small untrained Llama built and signed in two tiers (open; int8, gated) in-process:
    the build itself is tested elsewhere (tests/e2e/test_publisher_journey.py)."""
    from datetime import UTC, datetime

    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model

    model = build_tiny_model(model_dir, train_steps=0, hidden_size=64, num_layers=2)
    options = BuildOptions(
        repo_id="acme/tiny",
        version="1.0.0",
        license="apache-2.0",
        terms="Be kind.\n",
        approval=ApprovalPolicy(),
        allow_unreliable_text_detection=True,
    )
    build_release(
        model,
        out,
        key=key,
        options=options,
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )


@dataclass(frozen=True)
class Published:
    statement: ReleaseStatement
    digest: str


def test_attested_scores_reach_the_card_and_every_verifier_accepts_it(
    tmp_path: Path,
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    alice = make_account("alice", "publisher", org="acme")
    env = {"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": alice.token}
    key_path = tmp_path / "publisher.pem"
    ok(tiergate("keys", "generate", "--out", str(key_path)))
    pub = tmp_path / "publisher.pub.pem"
    registered = httpx.post(
        f"{live_server.url}/api/keys", json={"pem": pub.read_text()}, headers=alice.headers
    )
    assert registered.status_code == 201, registered.text
    out = tmp_path / "release"
    build_small_release(tmp_path / "model", out, load_private_key(key_path))
    ok(tiergate("release", "publish", str(out), env=env))
    envelope = Envelope.from_json((out / "release.dsse.json").read_bytes())
    release = Published(parse_release_statement(envelope.payload), release_digest(envelope.payload))

    # The publisher's own attestations for both tiers (a signed eval/v1 statement each).
    key = load_private_key(key_path)
    base = f"{live_server.url}/api/releases/acme/tiny/1.0.0"
    for tier, value, lower, upper in (
        ("open", "0.800000", "0.600000", "0.920000"),
        ("optimized", "0.750000", "0.550000", "0.880000"),
    ):
        data = eval_envelope(key, release, tier=tier, value=value, lower=lower, upper=upper)
        sent = httpx.post(
            f"{base}/evaluations",
            content=data,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert sent.status_code == 201, sent.text

    dry = ok(
        tiergate("release", "card", "acme/tiny@1.0.0", "--key", str(key_path), "--dry-run", env=env)
    )
    assert "model-index:" in dry
    assert "| tiny-mc@1 | optimized | 0.750000 | 0.800000 | -0.050000 |" in dry
    assert httpx.get(f"{base}/card-revisions").json() == []  # a dry run signs nothing
    done = ok(tiergate("release", "card", "acme/tiny@1.0.0", "--key", str(key_path), env=env))
    assert "card revision 1 published" in done
    revisions = httpx.get(f"{base}/card-revisions").json()
    assert [r["revision"] for r in revisions] == [1]

    hub_env = clean_env(tmp_path)
    hub_env["HF_ENDPOINT"] = live_server.url
    result = run_client(HUB_SCRIPT, [str(tmp_path / "hub")], hub_env)
    assert result["model_name"] == "acme/tiny@1.0.0"
    assert sorted(result["results"]) == [  # type: ignore[arg-type]
        ["tiny-mc@1 (open tier)", "accuracy", 0.8],
        ["tiny-mc@1 (optimized tier)", "accuracy", 0.75],
    ]
    main = Path(str(result["main"]))
    checked = model_signing_verify(main, pub)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    revised = (main / "README.md").read_bytes()
    assert revised != (out / "open" / "README.md").read_bytes()

    pulled = ok(
        tiergate("pull", "acme/tiny@1.0.0", "--out", str(tmp_path / "pulled"), "--json", env=env)
    )
    assert json.loads(pulled)["verified"] is True
    assert (tmp_path / "pulled" / "README.md").read_bytes() == revised
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "pulled" / name).read_bytes() == (out / "open" / name).read_bytes()
    ok(tiergate("pull", "acme/tiny@1.0.0", "--out", str(tmp_path / "first"), "--original-card",
                "-q", env=env))  # fmt: skip
    original = (out / "open" / "README.md").read_bytes()
    assert (tmp_path / "first" / "README.md").read_bytes() == original
