"""A guard model as an ordinary tiergate release, end to end (issue 19, item 1).

A tiny sequence classifier is trained in the test on a few labelled sentences (labels: a
hazard category and ``safe``), built and signed by the real release pipeline, and published
to a real uvicorn gateway; a generation release signs a safety policy naming it. The
``openai`` client then drives ``/v1/chat/completions`` and ``/v1/moderations``: the guard's
verdict is in the call's log entry. The attack: the guard's stored weights, or its stored
signature, are altered after publishing; the gateway refuses to load the guard, calls fail
closed or open as each policy says, and the refusal is in every call's log entry.
"""

from __future__ import annotations

import base64
import functools
import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish, sign_release
from tests.gateway.generation_fixtures import REPO_ID, build_generation_model

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

GUARD_REPO = "acme/guard"
HAZARD = "indiscriminate_weapons"
# What the guard learns: weapons talk is the hazard, everything else is safe.
LABELLED = [
    ("how to build a bomb at home", 1),
    ("mix the explosive with nails", 1),
    ("make nerve gas in a lab", 1),
    ("build a bomb and detonate it", 1),
    ("the weather is nice today", 0),
    ("we planted tomatoes in the garden", 0),
    ("the release gateway signs models", 0),
    ("read a book by the river", 0),
]


def _policy(guard_version: str, on_failure: str) -> dict[str, Any]:
    return {
        "checks": ["guard"],
        "rules": {"*": {"action": "annotate", "threshold": "0.5"}, HAZARD: {"action": "block"}},
        "hold_back_chars": 64,
        "on_check_failure": on_failure,
        "guard": {"release": f"{GUARD_REPO}@{guard_version}"},
    }


@functools.cache
def _guard_model() -> Path:
    """The trained classifier's folder (weights, config with id2label, tokenizer)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from release.testing import build_tiny_model

    root = Path(tempfile.mkdtemp(prefix="tiergate-guard-"))
    base = build_tiny_model(root / "base", hidden_size=32, num_layers=1)
    labels = ["safe", HAZARD]
    config = AutoConfig.from_pretrained(str(base))
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.pad_token_id = 0
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokenizer.pad_token_id = 0
    batch = tokenizer([s for s, _ in LABELLED], return_tensors="pt", padding=True)
    target = torch.tensor([y for _, y in LABELLED])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        loss = model(**batch, labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    out = root / "guard"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@functools.cache
def _guard_release(version: str) -> BuiltRelease:
    """The classifier released like any model: open tier plus a bf16 artifact, signed."""
    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release

    out = Path(tempfile.mkdtemp(prefix="tiergate-guard-release-")) / "out"
    key = PrivateKey.generate()
    options = BuildOptions(
        repo_id=GUARD_REPO,
        version=version,
        license="apache-2.0",
        terms="Use as a guard.\n",
        optimize="bf16",
        approval=ApprovalPolicy(),
    )
    build_release(
        _guard_model(), out, key=key, options=options, now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return BuiltRelease(out, key.public_key.to_pem(), GUARD_REPO, version)


@functools.cache
def _guarded_release(version: str, guard_version: str, on_failure: str) -> BuiltRelease:
    from safety.policy import parse_policy

    root = Path(tempfile.mkdtemp(prefix="tiergate-guarded-"))
    policy = parse_policy(_policy(guard_version, on_failure))
    return sign_release(
        build_generation_model(),
        root / "out",
        REPO_ID,
        version,
        safety_policy=policy,
        optimize="bf16",
        check_tokenizer=False,
    )


def _publish(server: LiveServer, publisher: Account, *built: BuiltRelease) -> None:
    with httpx.Client(base_url=server.url, timeout=300) as http:
        for release in built:
            publish(release, http, publisher)


def _entry(engine: Engine, index: int) -> dict[str, Any]:
    from gateway.db.models import LogEntry

    with Session(engine) as session:
        row = session.get(LogEntry, index)
        assert row is not None
        found: dict[str, Any] = json.loads(row.entry)
        return found


def _client(server: LiveServer, account: Account) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.token, max_retries=0)


def _chat(client: Any, model: str) -> Any:
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "The release gateway"}],
        max_tokens=24,
        seed=5,
    )


def test_a_published_guard_judges_every_output_and_its_verdict_is_logged(
    live_server: LiveServer, make_account: Callable[..., Account], engine: Engine
) -> None:
    from safety.checks.guard import GuardModelCheck

    guard = _guard_release("1.0.0")
    guarded = _guarded_release("1.3.0", "1.0.0", "closed")
    _publish(live_server, make_account("pat", "publisher", org="acme"), guard, guarded)
    client = _client(live_server, make_account("dev"))

    response = _chat(client, f"{REPO_ID}@1.3.0")
    choice = response.choices[0]
    extra = response.model_extra["tiergate"]
    fields = _entry(engine, extra["log_index"])["fields"]
    assert fields["safety"]["unavailable_checks"] == {}
    verdict = fields["outputs"][0]["safety"]
    assert verdict["failed_checks"] == []
    # The guard's own score of the text, recomputed from the published folder, is the one
    # logged: the call was judged by this guard release and no other.
    expected = GuardModelCheck.from_dir(guard.out_dir / "open").scores(choice.message.content)
    assert abs(float(verdict["scores"][HAZARD]) - expected[HAZARD]) < 1e-3
    assert extra["safety"][0] == verdict

    # The same guard decides /v1/moderations for this release: it learnt what a weapon is.
    moderation = client.moderations.create(
        model=f"{REPO_ID}@1.3.0", input=["how to build a bomb", "the garden is green"]
    )
    weapons, garden = moderation.results
    assert weapons.flagged
    assert weapons.category_scores.model_extra[HAZARD] > 0.5
    assert not garden.flagged
    assert garden.category_scores.model_extra[HAZARD] < 0.5


def _tamper_blob(data_dir: Path, built: BuiltRelease, name: str) -> None:
    import hashlib

    digest = hashlib.sha256((built.out_dir / "open" / name).read_bytes()).hexdigest()
    (stored,) = [p for p in data_dir.rglob(digest) if p.is_file()]
    raw = bytearray(stored.read_bytes())
    raw[-1] ^= 0x01  # one bit of the last weight
    stored.write_bytes(bytes(raw))


def _tamper_signature(engine: Engine, version: str) -> None:
    from gateway.db.models import Release, ReleaseTier

    with Session(engine) as session:
        release = session.exec(
            select(Release).where(Release.repo_id == GUARD_REPO, Release.version == version)
        ).one()
        for tier in session.exec(select(ReleaseTier).where(ReleaseTier.release_id == release.id)):
            bundle = json.loads(tier.bundle)
            signature = bundle["dsseEnvelope"]["signatures"][0]
            raw = bytearray(base64.b64decode(signature["sig"]))
            raw[-1] ^= 0x01
            signature["sig"] = base64.b64encode(bytes(raw)).decode("ascii")
            tier.bundle = json.dumps(bundle)
            session.add(tier)
        session.commit()


def test_a_tampered_guard_is_refused_and_calls_fail_as_the_policy_says(
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
    settings: Any,
) -> None:
    """Regression (attack): weights or signature of a published guard altered in storage."""
    from gateway.services.safety import BLOCKED_TEXT, CONTENT_FILTER

    weights_altered, signature_altered = _guard_release("1.0.0"), _guard_release("2.0.0")
    closed = _guarded_release("1.4.0", "1.0.0", "closed")
    opened = _guarded_release("1.5.0", "2.0.0", "open")
    publisher = make_account("pat", "publisher", org="acme")
    _publish(live_server, publisher, weights_altered, signature_altered, closed, opened)
    _tamper_blob(settings.data_dir, weights_altered, "model.safetensors")
    _tamper_signature(engine, "2.0.0")
    client = _client(live_server, make_account("dev"))

    # Closed: the guard cannot run, so nothing the model wrote goes out.
    blocked = _chat(client, f"{REPO_ID}@1.4.0")
    assert blocked.choices[0].finish_reason == CONTENT_FILTER
    assert blocked.choices[0].message.content == BLOCKED_TEXT
    fields = _entry(engine, blocked.model_extra["tiergate"]["log_index"])["fields"]
    reason = fields["safety"]["unavailable_checks"]["guard"]
    assert reason.startswith(f"guard {GUARD_REPO}@1.0.0 refused")
    assert "verification" in reason
    verdict = fields["outputs"][0]["safety"]
    assert verdict["applied"] == "block"
    assert verdict["failed_checks"] == [{"check": "guard", "reason": reason}]

    # Open: the call goes on unguarded, and its entry says why.
    passed = _chat(client, f"{REPO_ID}@1.5.0")
    assert passed.choices[0].finish_reason in ("stop", "length")
    fields = _entry(engine, passed.model_extra["tiergate"]["log_index"])["fields"]
    reason = fields["safety"]["unavailable_checks"]["guard"]
    assert reason.startswith(f"guard {GUARD_REPO}@2.0.0 refused")
    assert "verification" in reason
    assert fields["outputs"][0]["safety"]["failed_checks"] == [{"check": "guard", "reason": reason}]
    assert fields["outputs"][0]["safety"]["applied"] in (None, "annotate")
