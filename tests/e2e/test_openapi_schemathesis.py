"""Schemathesis over `/openapi.json` of a live gateway: zero 5xx and zero schema mismatches.

Issue #14 item 7. The gateway serves a published two-tier release, so the fuzzed routes reach
real data (schemathesis dictionaries draw the real repo, version, tier and file names part of
the time), and runs as an anonymous caller, a developer holding a grant, and an admin. Seeded
and bounded, so a run is a fixed outcome that takes a minute or two.

Reproduce by hand (same checks, any role's token):
    st --config-file schemathesis.toml run http://127.0.0.1:PORT/openapi.json \\
        -H "Authorization: Bearer tg_..." -n 25 --seed 1 --workers 1
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Account, LiveServer, write_test_watermark_key
from tests.gateway.download_fixtures import REPO_ID, VERSION, grant_access, publish, sign_release

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SEED = 1
MAX_EXAMPLES = 10
ROLES = ("anonymous", "developer", "admin")  # admin last: it may yank the release

# A request the schema accepts can still be refused for what it *means*, which no schema can
# express: a PEM that does not parse, a signature that does not verify, a cursor this gateway
# did not issue, a log size past the latest checkpoint, a form body sent as JSON to OAuth.
# Those answer a documented, typed 400 or 422 (status and content type are still checked by
# status_code_conformance and content_type_conformance); everything else a schema-valid
# request may get is what schemathesis expects by default.
POSITIVE_EXPECTED = ["2XX", "3XX", 400, 401, 403, 404, 409, 410, 416, 422, 429]

# Invalid data may also be refused by the body limit (413) before validation runs: a
# megabyte of generated text is rejected for its size first, which is still a rejection.
NEGATIVE_EXPECTED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

# Routes that revoke the caller's own credential: one hit early in a run turns every later
# request into a 401 and the rest of the run tests nothing. Revocation has its own tests.
# (By label: `include-path` + `include-method` also matched every other DELETE.)
SELF_REVOKING = [
    {"include-name": "DELETE /api/tokens/{token_id}", "enabled": False},
    {"include-name": "DELETE /api/admin/tokens/{token_id}", "enabled": False},
]


def _dictionary(*values: str) -> dict[str, list[str]]:
    return {"values": list(values)}


def _real_data() -> tuple[dict[str, Any], dict[str, Any]]:
    """Dictionaries of the published release's names, drawn instead of random text 60% of
    the time, so resolve, tree, download and generation routes see real objects too."""
    org, name = REPO_ID.split("/")
    dictionaries = {
        "org": _dictionary(org),
        "name": _dictionary(name),
        "repo_id": _dictionary(REPO_ID),
        "version": _dictionary(VERSION),
        "revision": _dictionary("main", VERSION, f"{VERSION}-open", f"{VERSION}-optimized"),
        "tier": _dictionary("open", "optimized"),
        "path": _dictionary("config.json", "model.safetensors", "README.md", "tokenizer.json"),
        "model": _dictionary(REPO_ID, f"{REPO_ID}@{VERSION}", f"{REPO_ID}@{VERSION}:optimized"),
    }
    bind = {
        "path.org": "org",
        "path.name": "name",
        "path.version": "version",
        "path.revision": "revision",
        "path.tier": "tier",
        "path.path": "path",
        "body.repo_id": "repo_id",
        "body.version": "version",
        "body.tier": "tier",
        "body.path": "path",
        "body.model": "model",
    }
    parameters = {key: {"dictionary": value, "probability": 0.6} for key, value in bind.items()}
    return dictionaries, parameters


@dataclass
class Outcome:
    """What one schemathesis run saw."""

    cases: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


def run_schemathesis(url: str, token: str | None) -> Outcome:
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema

    dictionaries, parameters = _real_data()
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {
                "positive_data_acceptance": {"expected-statuses": POSITIVE_EXPECTED},
                "negative_data_rejection": {"expected-statuses": NEGATIVE_EXPECTED},
            },
            "dictionaries": dictionaries,
            "parameters": parameters,
            "operations": SELF_REVOKING,
            "request-timeout": 60,
        }
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    outcome = Outcome()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            outcome.cases += len(recorder.cases)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    outcome.statuses[interaction.response.status_code] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        # Bodies can be megabytes: the first lines say what to replay.
                        sample = check.failure_info.code_sample[:400]
                        outcome.failures.append(
                            f"{failure.code} {failure.operation}: {failure.title}\n"
                            f"{failure.message[:400]}\n{sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            outcome.errors.append(f"fatal: {event.exception!r}")
    return outcome


@dataclass(frozen=True)
class Gateway:
    url: str
    tokens: dict[str, str | None]


@contextlib.contextmanager
def serve_gateway(root: Path, database_url: str | None) -> Iterator[Gateway]:
    """A live gateway with the tiny release published and one token per role."""
    from gateway.app import create_app
    from gateway.config import Settings
    from gateway.db.engine import make_engine, session_scope
    from gateway.db.models import Role
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts
    from release.testing import build_tiny_model

    # Limits high enough that a fuzzing run is not throttled into testing 429s only; the
    # limits themselves have their own tests.
    high = 1_000_000
    settings = Settings(
        data_dir=root / "data",
        database_url=database_url,
        log_level="warning",
        rate_limit_tokens_per_account=high,
        rate_limit_tokens_per_address=high,
        rate_limit_attestations_per_account=high,
        rate_limit_attestations_per_address=high,
        rate_limit_detections_per_account=high,
        rate_limit_links_per_account=high,
        generation_max_tokens=8,
        generation_tokens_per_minute=high,
    )
    write_test_watermark_key(settings.resolved_keys_dir)
    engine = make_engine(settings.resolved_database_url)
    server = LiveServer(create_app(settings, engine=engine))
    server.start()
    try:

        def make(username: str, role: str, org: str | None = None) -> Account:
            with session_scope(engine) as session:
                user = accounts.create_user(session, username, Role(role), org)
                issued = accounts.issue_token(session, user, name="schemathesis", now=utcnow())
            return Account(username, role, org, issued.plaintext)

        model = build_tiny_model(root / "model", hidden_size=64, num_layers=2)
        built = sign_release(model, root / "out", REPO_ID, VERSION)
        publisher = make("pat", "publisher", "acme")
        with httpx.Client(base_url=server.url, timeout=60) as client:
            publish(built, client, publisher)
        developer = make("dana", "developer")
        grant_access(engine, developer.username)
        admin = make("root", "admin")
        yield Gateway(
            server.url, {"anonymous": None, "developer": developer.token, "admin": admin.token}
        )
    finally:
        server.stop()
        engine.dispose()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("schemathesis")
    with serve_gateway(root, None) as served:
        yield served
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The same on a database of its own on PostgreSQL, where the id overflow answered 503."""
    import sqlalchemy as sa

    from tests.conftest import PG_ADMIN_URL, PG_AVAILABLE, PG_REQUIRED

    if not PG_AVAILABLE:
        if PG_REQUIRED:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required but unreachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    name = f"tiergate_schemathesis_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    root = tmp_path_factory.mktemp("schemathesis-pg")
    try:
        with serve_gateway(root, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}") as served:
            yield served
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    gateway: Gateway, role: str
) -> None:
    outcome = run_schemathesis(gateway.url, gateway.tokens[role])
    print(f"{role}: {outcome.cases} cases, statuses {sorted(outcome.statuses.items())}")
    assert outcome.cases > 500, outcome  # the run reached the API, not only the schema
    assert outcome.errors == []
    assert outcome.server_errors == 0, outcome.statuses
    assert outcome.failures == [], "\n\n".join(outcome.failures)


@pytest.mark.postgres
def test_schemathesis_on_postgres_finds_no_server_error(pg_gateway: Gateway) -> None:
    """Regression: ids past 2**31 overflowed PostgreSQL's int4 columns (503 "database
    unavailable") while SQLite answered 404; the developer run found them."""
    outcome = run_schemathesis(pg_gateway.url, pg_gateway.tokens["developer"])
    assert outcome.errors == []
    assert outcome.server_errors == 0, outcome.statuses
    assert outcome.failures == [], "\n\n".join(outcome.failures)
