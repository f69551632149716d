"""Issue 18: the tokenizer round trip measured at publish, warned about loudly, signed in.

Sampling is seeded (``check_tokenization(seed=0)``): each figure is a fixed outcome.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from licensing.dsse import Envelope
from licensing.keys import PrivateKey
from licensing.statements import parse_release_statement
from release.tokenization_check import check_tokenization
from watermark.tokenization import RELIABLE_TOKEN_RATE


@pytest.fixture(scope="module")
def lowercasing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from release.testing import build_lowercasing_model

    return build_lowercasing_model(tmp_path_factory.mktemp("lower") / "model", train_steps=40)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "publisher.pem"
    path.write_bytes(PrivateKey.generate().to_pem())
    return path


def test_a_trained_bpe_model_round_trips(tmp_path: Path) -> None:
    from release.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "m", train_steps=30)  # as the generation tests use
    report = check_tokenization(model)
    assert report is not None
    assert report.corpus.sequences > 10
    assert report.samples.sequences == 6
    assert report.reliable, report
    assert report.rate >= RELIABLE_TOKEN_RATE
    assert report.warning() is None
    assert report.to_statement()["text_detection"] == "reliable"


def test_the_lowercasing_model_is_unreliable(lowercasing_model: Path) -> None:
    report = check_tokenization(lowercasing_model)
    assert report is not None
    assert report.corpus.token_rate == 1.0  # its own encodings are lower case already
    assert report.samples.token_rate < 0.5  # what it samples is not
    assert not report.reliable
    assert report.text_detection == "unreliable"
    warning = report.warning()
    assert warning is not None
    assert "--allow-unreliable-text-detection" in warning
    overridden = check_tokenization(lowercasing_model, override=True)
    assert overridden is not None
    assert overridden.text_detection == "override"
    assert overridden.samples == report.samples  # seeded: the same samples


def test_a_folder_without_tokenizer_is_not_measured(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert check_tokenization(tmp_path) is None


def _statement(out: Path) -> dict[str, str]:
    envelope = Envelope.from_json((out / "release.dsse.json").read_bytes())
    return dict(parse_release_statement(envelope.payload).tokenization)


@pytest.mark.parametrize("override", [False, True])
def test_cli_build_warns_loudly_and_signs_the_override(
    lowercasing_model: Path, key_file: Path, tmp_path: Path, override: bool
) -> None:
    out = tmp_path / "release"
    args = ["release", "build", str(lowercasing_model), "--out", str(out)]
    args += ["--repo", "acme/shouty", "--version", "1.0.0", "--key", str(key_file)]
    if override:
        args.append("--allow-unreliable-text-detection")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "DETECTION FROM TEXT IS UNRELIABLE" in result.stderr
    assert "warning: the tokenizer round-trips only" in result.stderr
    expected = "override" if override else "unreliable"
    assert f"text detection {expected}" in result.stderr
    record = _statement(out)
    assert record["text_detection"] == expected
    assert json.loads(json.dumps(record))["threshold"] == "0.900000"
    card = (out / "open" / "README.md").read_text("utf-8")
    assert "### Tokenizer round trip" in card
