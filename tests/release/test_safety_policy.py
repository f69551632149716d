"""The output-safety policy in a release: read from a file, refused at build when it names
an unknown check, signed into the statement, named by digest on the card and in the AI BOM."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from licensing.errors import ReleaseStatementError
from licensing.statements import parse_release_statement
from release.safety_policy import load_policy_file
from safety.errors import SafetyPolicyError, UnknownCheckError
from safety.policy import parse_policy

POLICY = {
    "checks": ["langid", "wordlist"],
    "rules": {"*": {"action": "annotate", "threshold": 0.5}, "hate": {"action": "redact"}},
    "hold_back_chars": 64,
    "on_check_failure": "open",
}
TOML = """checks = ["langid", "wordlist"]
hold_back_chars = 64
on_check_failure = "open"
[rules."*"]
action = "annotate"
threshold = 0.5
[rules.hate]
action = "redact"
"""
YAML = """checks: [langid, wordlist]
hold_back_chars: 64
on_check_failure: open
rules:
  "*": {action: annotate, threshold: "0.5"}
  hate: {action: redact}
"""


def test_json_toml_and_yaml_files_give_the_same_policy(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(POLICY))
    (tmp_path / "p.toml").write_text(TOML)
    (tmp_path / "p.yaml").write_text(YAML)
    policies = [load_policy_file(tmp_path / name) for name in ("p.json", "p.toml", "p.yaml")]
    assert len({p.digest for p in policies}) == 1


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("p.json", json.dumps({**POLICY, "checks": ["wordlist", "vibes"]}), UnknownCheckError),
        ("p.json", "{not json", SafetyPolicyError),
        ("p.ini", "[x]", SafetyPolicyError),
        ("p.yaml", "a: [", SafetyPolicyError),
        ("p.json", " " * (65 * 1024), SafetyPolicyError),
    ],
)
def test_a_bad_policy_file_is_a_typed_error(
    tmp_path: Path, name: str, text: str, error: type[Exception]
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(error):
        load_policy_file(tmp_path / name)


def test_build_refuses_an_unknown_check_before_any_work(tiny_llama: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({**POLICY, "checks": ["wordlist", "vibes"]}))
    key = tmp_path / "key.pem"
    assert CliRunner().invoke(cli, ["keys", "generate", "--out", str(key)]).exit_code == 0
    out = tmp_path / "out"
    args = ["release", "build", str(tiny_llama), "--out", str(out), "--repo", "acme/tiny",
            "--version", "1.0.0", "--key", str(key), "--optimize", "bf16",
            "--safety-policy", str(policy)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, UnknownCheckError)  # main() prints it as one line
    assert "unknown safety checks ['vibes']" in str(result.exception)
    assert not out.exists()


def test_the_policy_is_signed_in_the_statement_and_named_on_the_card(
    tiny_llama: Path, tmp_path: Path
) -> None:
    from licensing.keys import PrivateKey
    from release.aibom import render_cyclonedx_aibom
    from release.build import BuildOptions, build_release

    policy = parse_policy(POLICY)
    built = build_release(
        tiny_llama,
        tmp_path / "out",
        key=PrivateKey.generate(),
        options=BuildOptions(
            repo_id="acme/tiny", version="1.0.0", optimize="bf16", safety_policy=policy
        ),
        now=datetime.now(UTC),
        show_progress=False,
    )
    envelope = json.loads((built.out_dir / "release.dsse.json").read_text())
    import base64

    signed = parse_release_statement(base64.b64decode(envelope["payload"]))
    assert signed.safety_policy is not None
    assert parse_policy(signed.safety_policy) == policy
    card = (built.out_dir / "open" / "README.md").read_text("utf-8")
    assert "## Output safety" in card
    assert policy.digest in card
    bom = render_cyclonedx_aibom(signed, statement_digest=built.release_digest, model_card=card)
    props = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert props["tiergate:safety_policy"] == policy.digest


def test_the_statement_refuses_a_policy_it_cannot_sign_canonically() -> None:
    from tests.licensing._builders import make_release

    with pytest.raises(ReleaseStatementError, match="canonical JSON"):
        make_release(safety_policy={"rules": {"*": {"threshold": 0.5}}})
    signed = make_release(safety_policy=parse_policy(POLICY).to_dict())
    assert parse_release_statement(signed.to_payload()) == signed
    assert "safety_policy" not in make_release().to_statement().predicate
