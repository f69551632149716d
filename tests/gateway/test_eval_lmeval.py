"""Evaluations scored from prompt logprobs, and lm-evaluation-harness driven through a real
gateway: every request a logged call of the run, the result a signed attestation that
``tiergate eval verify`` recomputes; an altered logprob or output is detected.

The lm-eval tests skip when ``lm-eval`` is not installed, unless ``TIERGATE_REQUIRE_LMEVAL=1``
(CI installs it through the ``eval`` extra), which makes them fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from licensing.keys import PrivateKey
from release.errors import EvalEvidenceError, EvalHarnessUnavailableError
from tests.conftest import Account, LiveServer
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401
from tests.gateway.test_evaluation_attestations import register

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

REQUIRED = os.environ.get("TIERGATE_REQUIRE_LMEVAL") == "1"
HAVE_LMEVAL = importlib.util.find_spec("lm_eval") is not None


def _needs_lmeval() -> None:
    if HAVE_LMEVAL:
        return
    if REQUIRED:
        pytest.fail("TIERGATE_REQUIRE_LMEVAL=1 but lm_eval does not import")
    pytest.skip("lm-eval is not installed (pip install 'tiergate[eval]')")


def _run_and_verify(
    client: TestClient,
    live_server: LiveServer,
    dev: Account,
    tmp_path: Path,
    *,
    task: str,
    harness: str,
    limit: int,
) -> tuple[dict[str, Any], list[str], Path]:
    from gateway.cli.main import cli

    key = PrivateKey.generate()
    key_file = tmp_path / "dev.pem"
    key_file.write_bytes(key.to_pem())
    pub_file = tmp_path / "dev.pub.pem"
    pub_file.write_bytes(key.public_key.to_pem())
    register(client, dev, key)
    out = tmp_path / "run"
    where = ["--gateway", live_server.url, "--token", dev.token]
    ran = CliRunner().invoke(
        cli,
        ["eval", "run", "--task", task, "--model", MODEL, "--out", str(out), "--key",
         str(key_file), "--harness", harness, "--limit", str(limit), "--concurrency", "2",
         "--json", *where],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["total"] == limit

    vkey = client.get("/log/vkey").text.strip()
    args = ["eval", "verify", str(out / "attestation.dsse.json"), "--bundle",
            str(out / "bundle.json"), "--task", task, "--limit", str(limit), "--vkey", vkey,
            "--key", str(pub_file)]  # fmt: skip
    verified = CliRunner().invoke(cli, args)
    assert verified.exit_code == 0, verified.output
    assert f"score {summary['score']}" in verified.output
    return summary, args, out


def _tampered(args: list[str]) -> EvalEvidenceError:
    from gateway.cli.main import cli

    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, EvalEvidenceError), result.output
    return result.exception


def _alter_one_logprob(out: Path) -> None:
    bundle = json.loads((out / "bundle.json").read_text())
    index = next(iter(bundle["logprobs"]))
    wire = bundle["logprobs"][index][0]
    wire["token_logprobs"][-1] = wire["token_logprobs"][-1] + 1e-9
    (out / "bundle.json").write_text(json.dumps(bundle))


@SQLITE
def test_multiple_choice_from_logprobs_runs_verifies_and_detects_an_altered_logprob(
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    client: TestClient,
    tmp_path: Path,
) -> None:
    """The built-in runner with the loglikelihood task: no harness needed."""
    dev = make_account("dev")
    _, args, out = _run_and_verify(
        client, live_server, dev, tmp_path, task="pydoc-topics-mc-ll", harness="builtin", limit=4
    )
    entries = json.loads((out / "bundle.json").read_text())["entries"]
    actions = {json.loads(e["entry"])["action"] for e in entries.values()}
    assert "generation.scored" in actions
    _alter_one_logprob(out)
    assert _tampered(args).reason == "logprobs"


@SQLITE
def test_lm_eval_multiple_choice_through_the_gateway_verifies_and_detects_an_altered_logprob(
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    client: TestClient,
    tmp_path: Path,
) -> None:
    _needs_lmeval()
    dev = make_account("dev")
    summary, args, out = _run_and_verify(
        client, live_server, dev, tmp_path, task="pydoc-topics-mc-ll", harness="lm-eval", limit=8
    )
    report = summary["harness"]
    assert report["harness"] == "lm-eval"
    # lm-eval's own acc is the attested score: the same choice picked from the same numbers.
    assert f"{report['metrics']['acc,none']:.6f}" == summary["score"]
    statement = json.loads((out / "attestation.dsse.json").read_text())
    import base64

    predicate = json.loads(base64.b64decode(statement["payload"]))["predicate"]
    names = [c["name"] for c in predicate["configuration"]]
    assert names[1] == f"harness:lm-eval@{report['version']}"
    _alter_one_logprob(out)
    assert _tampered(args).reason == "logprobs"


@SQLITE
def test_lm_eval_generation_through_the_gateway_verifies_and_detects_an_altered_output(
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    client: TestClient,
    tmp_path: Path,
) -> None:
    _needs_lmeval()
    dev = make_account("dev")
    summary, args, out = _run_and_verify(
        client, live_server, dev, tmp_path, task="pydoc-topics-next-word", harness="lm-eval",
        limit=4,
    )  # fmt: skip
    assert summary["harness"]["task"] == "tiergate_pydoc_topics_next_word"
    bundle = json.loads((out / "bundle.json").read_text())
    index = next(iter(bundle["outputs"]))
    bundle["outputs"][index] = bundle["outputs"][index] + " (edited)"
    (out / "bundle.json").write_text(json.dumps(bundle))
    assert _tampered(args).reason == "output"


def test_a_missing_harness_is_a_clear_error_before_any_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib import metadata

    from release.evals import lmeval

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(EvalHarnessUnavailableError, match="not installed"):
        lmeval.harness_version()
