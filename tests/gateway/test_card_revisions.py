"""Signed card revisions through the gateway: what it accepts, what it refuses, and what Hub
clients see (`ModelCard.load`, `snapshot_download` + `model_signing verify`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.engine import session_scope
from gateway.db.models import LogEntry
from gateway.db.timeutil import utcnow
from gateway.services import accounts, releases
from licensing.card_revision import CardRevision, sign_card_revision
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import compute_manifest_digest, sign_model_bundle
from release.card_revision import (
    AttestedRelease,
    SignedCardRevision,
    build_card_revision,
    revised_tier_files,
)
from tests.conftest import Account, LiveServer
from tests.gateway.test_hub import clean_env, run_client
from tests.model_signing_cli import model_signing_verify
from tests.release.card_revision_fixtures import (
    SignedRelease,
    eval_envelope,
    payload_digest,
    signed_release,
)

BASE = "/api/releases/acme/tiny/1.0.0"


@dataclass
class Setup:
    client: TestClient
    publisher: Account
    release: SignedRelease


def publish_signed(app: Any, engine: Engine, publisher: Account, release: SignedRelease) -> None:
    """Register, upload and publish ``release`` straight through the services."""
    now = utcnow()
    with session_scope(engine) as session:
        principal = accounts.authenticate(session, publisher.token, now=now)
        releases.create_release(
            session,
            principal,
            statement_envelope=release.envelope,
            bundles=release.bundles,
            model_card=release.card,
            terms=None,
            now=now,
        )
        for files in release.files.values():
            for data in files.values():
                info = app.state.gateway.blobs.put_stream([data], hashlib.sha256(data).hexdigest())
                releases.record_blob(session, info.sha256, info.size, now, org_id=principal.org_id)
        version = release.statement.version
        releases.publish_release(session, principal, "acme/tiny", version, now=now)


def register_key(client: TestClient, account: Account, key: PrivateKey) -> None:
    got = client.post(
        "/api/keys",
        json={"pem": key.public_key.to_pem().decode(), "name": f"k-{key.key_id[:8]}"},
        headers=account.headers,
    )
    assert got.status_code == 201, got.text


def attest(client: TestClient, account: Account, envelope: bytes, base: str = BASE) -> Any:
    got = client.post(
        f"{base}/evaluations",
        content=envelope,
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert got.status_code == 201, got.text
    return got.json()


def body_of(built: SignedCardRevision) -> dict[str, Any]:
    return {
        "statement": json.loads(built.envelope),
        "card": built.card.decode("utf-8"),
        "bundles": {tier: json.loads(b) for tier, b in built.bundles.items()},
    }


def post(client: TestClient, account: Account, body: dict[str, Any], base: str = BASE) -> Any:
    return client.post(f"{base}/card-revisions", json=body, headers=account.headers)


def revise(
    release: SignedRelease,
    envelopes: tuple[bytes, ...],
    *,
    revision: int = 1,
    key: PrivateKey | None = None,
    others: tuple[AttestedRelease, ...] = (),
) -> SignedCardRevision:
    return build_card_revision(
        original_card=release.card,
        release=AttestedRelease(release.statement, release.digest, envelopes),
        others=others,
        revision=revision,
        key=key or release.key,
        now=utcnow(),
    )


def forged(
    release: SignedRelease, card: bytes, digests: tuple[str, ...], key: PrivateKey
) -> dict[str, Any]:
    """A correctly signed revision of an arbitrary card: what a publisher could send."""
    sha = hashlib.sha256(card).hexdigest()
    files = revised_tier_files(release.statement, sha, len(card))
    bundles = {
        t: sign_model_bundle(t, [(f.path, f.sha256, f.size) for f in e], key)
        for t, e in files.items()
    }
    statement = CardRevision(
        repo_id="acme/tiny",
        version=release.statement.version,
        release_digest=release.digest,
        revision=1,
        card_sha256=sha,
        original_card_sha256=hashlib.sha256(release.card.encode()).hexdigest(),
        tiers={t: compute_manifest_digest((f.path, f.sha256) for f in e) for t, e in files.items()},
        attestations=digests,
        created_at=utcnow(),
    )
    return {
        "statement": json.loads(sign_card_revision(statement, key).to_json()),
        "card": card.decode("utf-8"),
        "bundles": {t: json.loads(b) for t, b in bundles.items()},
    }


@pytest.fixture
def setup(
    app: Any, client: TestClient, engine: Engine, make_account: Callable[..., Account]
) -> Setup:
    publisher = make_account("pat", "publisher", org="acme")
    key = PrivateKey.generate("ecdsa-p256")
    register_key(client, publisher, key)
    release = signed_release(key)
    publish_signed(app, engine, publisher, release)
    return Setup(client, publisher, release)


def test_a_revision_is_checked_stored_logged_and_numbered(setup: Setup, engine: Engine) -> None:
    client, publisher, release = setup.client, setup.publisher, setup.release
    envelope = eval_envelope(release.key, release)
    assert attest(client, publisher, envelope)["status"] == "publisher"
    built = revise(release, (envelope,))
    got = post(client, publisher, body_of(built))
    assert got.status_code == 201, got.text
    assert got.json()["revision"] == 1
    assert got.json()["attestations"] == [payload_digest(envelope)]
    listed = client.get(f"{BASE}/card-revisions").json()
    assert [r["revision"] for r in listed] == [1]
    one = client.get(f"{BASE}/card-revisions/1").json()
    assert one["card"] == built.card.decode()
    assert client.get(f"{BASE}/card-revisions/2").status_code == 404

    # The same number again, or one that skips ahead: 409 with the number to use.
    for number in (1, 3):
        again = post(client, publisher, body_of(revise(release, (envelope,), revision=number)))
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "card_revision_stale"
        assert again.json()["next_revision"] == 2
    second = post(client, publisher, body_of(revise(release, (envelope,), revision=2)))
    assert second.status_code == 201, second.text
    with Session(engine) as session:
        actions = [r.action for r in session.exec(select(LogEntry))]
    assert actions.count("release.card_revised") == 2

    # Hub: main serves the latest revision under its own commit; the version tag the original.
    main = client.get("/acme/tiny/resolve/main/README.md")
    assert main.content == built.card
    pinned = client.get("/acme/tiny/resolve/1.0.0/README.md")
    assert pinned.text == release.card
    assert main.headers["X-Repo-Commit"] != pinned.headers["X-Repo-Commit"]
    assert main.headers["X-Repo-Commit"] == second.json()["commits"]["open"]
    info = client.get("/api/models/acme/tiny").json()
    assert info["cardData"]["model-index"][0]["name"] == "acme/tiny@1.0.0"
    assert (
        "model-index" not in client.get("/api/models/acme/tiny/revision/1.0.0").json()["cardData"]
    )
    # The release page names the revision and links its signed statement.
    page = client.get("/models/acme/tiny/v/1.0.0").text
    assert "Card revision 2" in page
    assert 'href="/api/releases/acme/tiny/1.0.0/card-revisions/2"' in page
    # The revision's commit keeps resolving (clients cache by commit).
    commit = got.json()["commits"]["open"]
    assert client.get(f"/acme/tiny/resolve/{commit}/README.md").content == built.card


def test_refusals_each_with_its_own_code(
    setup: Setup, make_account: Callable[..., Account]
) -> None:
    client, publisher, release = setup.client, setup.publisher, setup.release
    mine = eval_envelope(release.key, release)
    attest(client, publisher, mine)

    # A key the org never registered.
    stranger = PrivateKey.generate("ecdsa-p256")
    got = post(client, publisher, body_of(revise(release, (mine,), key=stranger)))
    assert got.status_code == 422
    assert got.json()["code"] == "card_revision_signature_invalid"

    # A bundle that swaps the weights' digest, honestly signed by the publisher's key.
    body = body_of(revise(release, (mine,)))
    card = body["card"].encode()
    sha = hashlib.sha256(card).hexdigest()
    entries = [
        (
            f.path,
            sha
            if f.path == "README.md"
            else ("ee" * 32 if f.path.endswith(".safetensors") else f.sha256),
            f.size,
        )
        for f in release.statement.tier("open").files
    ]
    body["bundles"]["open"] = json.loads(sign_model_bundle("open", entries, release.key))
    got = post(client, publisher, body)
    assert got.status_code == 422
    assert got.json()["code"] == "card_revision_mismatch"
    assert "model.safetensors" in got.json()["detail"]

    # A community attestation nobody accepted yet.
    dev = make_account("dev")
    dev_key = PrivateKey.generate("ecdsa-p256")
    register_key(client, dev, dev_key)
    community = eval_envelope(dev_key, release, role="third_party", run_id="run-community-00001")
    assert attest(client, dev, community)["status"] == "community"
    got = post(client, publisher, body_of(revise(release, (mine, community))))
    assert got.status_code == 422
    assert got.json()["code"] == "card_revision_attestation_not_endorsed"
    assert got.json()["attestation_status"] == "community"
    # One never submitted at all.
    unknown = eval_envelope(release.key, release, run_id="run-never-submitted1")
    got = post(client, publisher, body_of(revise(release, (mine, unknown))))
    assert got.json()["code"] == "card_revision_attestation_not_endorsed"

    # A card whose model-index says more than the attestation it names.
    honest = revise(release, (mine,)).card
    inflated = honest.replace(b"value: 0.8\n", b"value: 0.95\n")
    assert inflated != honest
    got = post(client, publisher, forged(release, inflated, (payload_digest(mine),), release.key))
    assert got.status_code == 422
    assert got.json()["code"] == "card_revision_mismatch"
    assert "model-index" in got.json()["detail"]

    # Not the publisher of the org.
    got = post(client, dev, body_of(revise(release, (mine,))))
    assert got.status_code == 403

    # Nothing was stored by any of these.
    assert client.get(f"{BASE}/card-revisions").json() == []

    # A yanked release takes no revision.
    yanked = client.post(f"{BASE}/yank", json={"reason": "bad"}, headers=publisher.headers)
    assert yanked.status_code == 200, yanked.text
    got = post(client, publisher, body_of(revise(release, (mine,))))
    assert got.status_code == 410
    assert got.json()["code"] == "release_yanked"


def test_an_accepted_community_attestation_and_an_earlier_version_join_the_card(
    app: Any, setup: Setup, engine: Engine, make_account: Callable[..., Account]
) -> None:
    client, publisher, v1 = setup.client, setup.publisher, setup.release
    old = eval_envelope(v1.key, v1, value="0.500000", lower="0.300000", upper="0.700000")
    attest(client, publisher, old)
    v2 = signed_release(v1.key, version="2.0.0")
    publish_signed(app, engine, publisher, v2)
    base2 = "/api/releases/acme/tiny/2.0.0"
    dev = make_account("dev")
    dev_key = PrivateKey.generate("ecdsa-p256")
    register_key(client, dev, dev_key)
    community = eval_envelope(dev_key, v2, tier="optimized", role="third_party")
    row = attest(client, dev, community, base2)
    decided = client.post(
        f"{base2}/evaluations/{row['id']}/decision",
        json={"decision": "accept"},
        headers=publisher.headers,
    )
    assert decided.status_code == 200, decided.text
    previous = AttestedRelease(v1.statement, v1.digest, (old,))
    built = revise(v2, (community,), others=(previous,))
    got = post(client, publisher, body_of(built), base2)
    assert got.status_code == 201, got.text
    card = client.get("/acme/tiny/resolve/main/README.md").text
    assert "## Comparison across versions: evaluations" in card
    assert "| 1.0.0 | tiny-mc@1 | open | 0.500000 |" in card
    # A later version's attestation cannot appear on an earlier version's card.
    later = revise(v1, (old,), others=(AttestedRelease(v2.statement, v2.digest, (community,)),))
    got = post(client, publisher, body_of(later))
    assert got.status_code == 422
    assert got.json()["code"] == "card_revision_attestation_not_endorsed"


CARD_SCRIPT = r"""
import json, sys
from pathlib import Path
from huggingface_hub import ModelCard, snapshot_download
out = Path(sys.argv[1])
card = ModelCard.load("acme/tiny")
results = [(r.task_name, r.dataset_name, r.metric_type, r.metric_value)
           for r in card.data.eval_results or []]
main = snapshot_download("acme/tiny", local_dir=out / "main")
pinned = snapshot_download("acme/tiny", revision="1.0.0", local_dir=out / "pinned")
gated = snapshot_download("acme/tiny", revision="optimized", token=sys.argv[2],
                          local_dir=out / "optimized")
print(json.dumps({"model_name": card.data.model_name, "results": results,
                  "main": str(main), "pinned": str(pinned), "optimized": str(gated)}))
"""


@pytest.mark.slow
def test_hub_clients_read_the_revised_card_and_model_signing_verifies_it(
    app: Any,
    live_server: LiveServer,
    engine: Engine,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    import httpx

    publisher = make_account("pat", "publisher", org="acme")
    key = PrivateKey.generate("ecdsa-p256")
    release = signed_release(key)
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        register_key(http, publisher, key)  # type: ignore[arg-type]
        publish_signed(app, engine, publisher, release)
        score = eval_envelope(key, release)
        int8 = eval_envelope(
            key, release, tier="optimized", value="0.750000", lower="0.55", upper="0.88"
        )
        for envelope in (score, int8):
            attest(http, publisher, envelope)  # type: ignore[arg-type]
        got = post(http, publisher, body_of(revise(release, (score, int8))))  # type: ignore[arg-type]
        assert got.status_code == 201, got.text
    from tests.gateway.download_fixtures import grant_access

    dev = make_account("dev")
    grant_access(engine, "dev")
    env = clean_env(tmp_path)
    env["HF_ENDPOINT"] = live_server.url
    result = run_client(CARD_SCRIPT, [str(tmp_path), dev.token], env)
    assert result["model_name"] == "acme/tiny@1.0.0"
    assert sorted(result["results"]) == [  # type: ignore[arg-type]
        ["tiny-mc@1 (open tier)", "tiny-mc@1", "accuracy", 0.8],
        ["tiny-mc@1 (optimized tier)", "tiny-mc@1", "accuracy", 0.75],
    ]
    pub = tmp_path / "pub.pem"
    pub.write_bytes(key.public_key.to_pem())
    for name in ("main", "pinned", "optimized"):
        done = model_signing_verify(Path(str(result[name])), pub)
        assert done.returncode == 0, done.stdout + done.stderr
    main_card = (Path(str(result["main"])) / "README.md").read_text()
    assert "model-index" in main_card
    assert (Path(str(result["pinned"])) / "README.md").read_text() == release.card
    assert (Path(str(result["optimized"])) / "README.md").read_text() == main_card


def test_two_publishers_racing_for_the_same_revision_number_store_one(
    setup: Setup, engine: Engine
) -> None:
    """The race replayed step by step (tests/gateway/test_decision_races.py): one submit is
    paused just before it reads the latest revision while a rival submits the same number."""
    from gateway.errors import Conflict
    from gateway.services import card_revisions
    from tests.gateway.test_decision_races import paused_at

    client, publisher, release = setup.client, setup.publisher, setup.release
    envelope = eval_envelope(release.key, release)
    attest(client, publisher, envelope)
    body = body_of(revise(release, (envelope,)))

    def submit() -> Any:
        with session_scope(engine) as session:
            principal = accounts.authenticate(session, publisher.token, now=utcnow())
            return card_revisions.submit_revision(
                session,
                principal,
                "acme/tiny",
                "1.0.0",
                envelope=json.dumps(body["statement"]).encode(),
                card=body["card"],
                bundles={t: json.dumps(b).encode() for t, b in body["bundles"].items()},
                now=utcnow(),
            )

    outcomes: list[Any] = []
    with paused_at(engine, "FROM card_revisions", submit) as rival:
        try:
            outcomes.append(submit())
        except Conflict as exc:
            outcomes.append(exc)
    rival.join()
    outcomes.append(rival.error or rival.result)
    stored = [o for o in outcomes if isinstance(o, card_revisions.CardRevisionView)]
    refused = [o for o in outcomes if isinstance(o, card_revisions.CardRevisionStale)]
    assert len(stored) == 1, outcomes
    assert len(refused) == 1, outcomes
    assert refused[0].extra["next_revision"] == 2
    with Session(engine) as session:
        logged = [r for r in session.exec(select(LogEntry)) if r.action == "release.card_revised"]
    assert len(logged) == 1


def test_a_logged_evaluation_run_reaches_the_built_card(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    """A real run through the gateway (every sample a logged call), attested by a key of
    the org, on the card a real build signed (generated block, fidelity, usage)."""
    from huggingface_hub import ModelCard

    from licensing.dsse import Envelope
    from licensing.statements import parse_release_statement
    from tests.gateway.eval_fixtures import run_as, small_task
    from tests.gateway.test_evaluation_attestations import envelope as attestation_of

    dev = make_account("dev")
    task, docs = small_task(tmp_path / "task")
    outcome = run_as(client, dev, task, docs, tmp_path / "journal.jsonl")
    assert outcome is not None
    key = PrivateKey.generate("ecdsa-p256")  # a second key of the org (rotation allows it)
    register_key(client, published, key)
    signed = attestation_of(outcome, task, key, "publisher")
    base = "/api/releases/acme/chatty/1.0.0"
    assert attest(client, published, signed, base)["status"] == "publisher"
    body = client.get(base).json()
    statement = parse_release_statement(Envelope.from_dict(body["statement"]).payload)
    built = build_card_revision(
        original_card=body["model_card"],
        release=AttestedRelease(statement, body["statement_digest"], (signed,)),
        revision=1,
        key=key,
        now=utcnow(),
    )
    got = post(client, published, body_of(built), base)
    assert got.status_code == 201, got.text
    served = client.get("/acme/chatty/resolve/main/README.md").text
    card = ModelCard(served)
    [result] = card.data.eval_results or []
    assert result.metric_value == float(outcome.result.value)
    assert result.source_url == f"urn:sha256:{payload_digest(signed)}"
    # The signed card's body is all there, word for word, around the new block.
    from release.card_revision import EVALUATIONS_BEGIN, EVALUATIONS_END
    from release.card_sections import split_front_matter

    served_body = split_front_matter(served)[1]
    start = served_body.index(EVALUATIONS_BEGIN)
    end = served_body.index(EVALUATIONS_END) + len(EVALUATIONS_END)
    rest = served_body[:start] + served_body[end:]
    assert rest.split() == split_front_matter(body["model_card"])[1].split()
