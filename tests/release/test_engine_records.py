"""Per-artifact speed and engine-fidelity records: their schema in the signed statement and
on the card. Figures are never asserted (they are wall-clock facts of one machine); shapes,
statuses, reasons and where the records are listed are."""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from licensing.keys import PrivateKey
from licensing.statements import ReleaseStatementError, release_from_statement
from release.build import BuildOptions, BuiltRelease, build_release
from release.card_records import artifact_record_lines
from release.engine_measure import EngineSettings, measure_artifacts, vllm_fidelity_from_rows
from release.engine_records import (
    EngineFidelity,
    SpeedPoint,
    SpeedRecord,
    measurement_entries,
    measurements_by_tier,
)
from release.errors import BuildOptionsInvalidError
from release.formats import OPTIMIZATIONS

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
SPEED_FIELDS = {
    "status",
    "engine",
    "engine_version",
    "open_dtype",
    "batch_sizes",
    "ceiling_ratio",
    "hardware",
    "cores",
    "measured_on",
    "decode_tokens",
    "repetitions",
}
POINT_FIELDS = {"tokens_per_s", "open_tokens_per_s", "ratio", "ratio_to_ceiling"}


def _speed() -> SpeedRecord:
    return SpeedRecord(
        "measured",
        engine="vllm",
        engine_version="0.32.0",
        open_dtype="bfloat16",
        points=(SpeedPoint(1, 30.0, 20.0), SpeedPoint(8, 200.0, 160.0)),
        ceiling_ratio=2.0,
        hardware="Some CPU",
        cores=2,
        measured_on="2026-12-03",
        decode_tokens=32,
        repetitions=2,
    )


def _build(model: Path, out: Path, **options: object) -> BuiltRelease:
    return build_release(
        model,
        out,
        key=PrivateKey.generate(),
        options=BuildOptions(repo_id="acme/tiny", version="1.0.0", **options),  # type: ignore[arg-type]
        now=NOW,
        show_progress=False,
    )


def test_a_measured_speed_record_has_every_field_and_one_entry_set_per_batch() -> None:
    entries = measurement_entries("optimized", _speed(), None)
    by_tier = measurements_by_tier(entries)
    speed = by_tier["optimized"]["speed"]
    expected = SPEED_FIELDS | {f"b{b}.{f}" for b in (1, 8) for f in POINT_FIELDS}
    assert set(speed) == expected
    assert speed["status"] == "measured"
    assert speed["batch_sizes"] == "1,8"
    assert speed["b1.ratio"] == "1.5000"
    assert speed["b1.ratio_to_ceiling"] == "0.7500"


def test_a_record_not_measured_says_why_on_one_short_line() -> None:
    record = SpeedRecord.not_measured("no\nengine " + "x" * 400, engine="llama.cpp")
    entries = record.to_entries()
    assert set(entries) == {"status", "engine", "reason"}
    assert entries["status"] == "not_measured"
    reason = str(entries["reason"])
    assert "\n" not in reason
    assert len(reason) <= 256
    assert EngineFidelity.not_measured("no vLLM").fidelity_entries() == {}


def test_vllm_figures_sit_next_to_the_transformers_fidelity() -> None:
    record = EngineFidelity(
        "measured", engine_version="0.32.0", dtype="bfloat16", positions=504,
        top1_agreement=0.99, mean_kl=0.001, perplexity_open=10.0, perplexity_optimized=10.1,
        top_logprobs=20, hardware="Some CPU",
    )  # fmt: skip
    figures = record.fidelity_entries()
    assert set(figures) == {
        "vllm_top1_agreement",
        "vllm_mean_kl",
        "vllm_perplexity_ratio",
        "vllm_probe_positions",
    }
    provenance = measurements_by_tier(measurement_entries("optimized", None, record))
    assert provenance["optimized"]["vllm_fidelity"]["engine_version"] == "0.32.0"


def test_identical_vllm_rows_agree_fully() -> None:
    rows = [[{5: -0.1, 7: -2.5, -1: -0.1}, {3: -0.2, 5: -1.9, -1: -1.9}]]
    positions, top1, kl, ppl_open, ppl_opt = vllm_fidelity_from_rows(rows, rows)
    assert (positions, top1, kl) == (2, 1.0, 0.0)
    assert ppl_open == ppl_opt


@pytest.mark.parametrize(
    ("key", "value"),
    [("Optimized.speed.status", "measured"), ("optimized.speed.reason", "x" * 300)],
)
def test_the_statement_refuses_malformed_measurements(key: str, value: str) -> None:
    from licensing.statements import ApprovalPolicy, ReleaseStatement

    with pytest.raises(ReleaseStatementError):
        ReleaseStatement(
            repo_id="acme/tiny", version="1.0.0", tiers=(), license="mit", terms_digest=None,
            approval=ApprovalPolicy(), created_at=NOW, measurements={key: value},
        )  # fmt: skip


def test_a_build_without_speed_signs_why_and_lists_every_artifact_on_the_card(
    tiny_llama: Path, tmp_path: Path
) -> None:
    built = _build(tiny_llama, tmp_path / "rel", optimize=("int8", "gguf-q8_0"))
    statement = release_from_statement(built.statement.to_statement())  # survives a round trip
    records = measurements_by_tier(statement.measurements)
    assert set(records) == {"optimized", "optimized_gguf_q8_0"}
    for tier in records:
        assert records[tier]["speed"]["status"] == "not_measured"
        assert "--no-measure-speed" in records[tier]["speed"]["reason"]
    # int8 is compressed-tensors: its vLLM fidelity is recorded as not measured, with why.
    assert records["optimized"]["vllm_fidelity"]["status"] == "not_measured"
    assert "vLLM" in records["optimized"]["vllm_fidelity"]["reason"]
    assert "vllm_fidelity" not in records["optimized_gguf_q8_0"]
    card = (tmp_path / "rel" / "open" / "README.md").read_text()
    assert "## Speed and engine fidelity" in card
    assert "| `optimized` (int8) |" in card
    assert "| `optimized_gguf_q8_0` (gguf-q8_0) |" in card


def test_a_measured_build_signs_a_speed_record_of_the_right_shape(
    tiny_llama: Path, tmp_path: Path
) -> None:
    built = _build(tiny_llama, tmp_path / "rel", optimize=("int8",), measure_speed=True,
                   speed_tokens=2)  # fmt: skip
    speed = measurements_by_tier(built.statement.measurements)["optimized"]["speed"]
    assert speed["status"] == "measured"
    assert speed["engine"] == "transformers"
    assert speed["open_dtype"] == "bfloat16"
    assert set(speed) == SPEED_FIELDS | {f"b{b}.{f}" for b in (1, 8) for f in POINT_FIELDS}
    assert speed["measured_on"] == date(2026, 12, 3).isoformat()
    assert speed["decode_tokens"] == "2"
    assert int(speed["cores"]) >= 1
    assert speed["hardware"]
    record = built.measurements["optimized"].speed
    assert all(p.tokens_per_s > 0 and p.open_tokens_per_s > 0 for p in record.points)
    card = (tmp_path / "rel" / "optimized" / "README.md").read_text()
    assert "transformers" in card.split("## Speed and engine fidelity", 1)[1].split("##", 1)[0]


def test_a_vllm_that_cannot_run_is_recorded_as_failed(tiny_llama: Path, tmp_path: Path) -> None:
    from release.fidelity import write_optimized_artifact

    write_optimized_artifact(tiny_llama, tmp_path / "int8", method="int8", show_progress=False)
    # This interpreter has no vLLM: the child fails, and the record says so.
    settings = EngineSettings(measure_speed=False, vllm_python=sys.executable)
    measured = measure_artifacts(
        tiny_llama, {"optimized": (OPTIMIZATIONS["int8"], tmp_path / "int8")},
        settings=settings, now=NOW,
    )  # fmt: skip
    engine = measured["optimized"].engine_fidelity
    assert engine is not None
    assert engine.status == "failed"
    assert "vllm" in engine.reason.lower()
    assert measured["optimized"].speed.status == "not_measured"


@pytest.mark.parametrize(
    "options",
    [{"speed_tokens": 0}, {"speed_tokens": 5000}, {"vllm_python": "/nonexistent/bin/python"}],
)
def test_bad_engine_options_are_refused_before_any_work(
    tiny_llama: Path, tmp_path: Path, options: dict[str, object]
) -> None:
    with pytest.raises(BuildOptionsInvalidError):
        _build(tiny_llama, tmp_path / "rel", **options)
    assert not (tmp_path / "rel").exists()


def test_the_card_table_shows_engine_ratio_and_ceiling() -> None:
    from release.manifest import TierManifest
    from release.model_card import TierCard

    card = TierCard(
        "optimized", TierManifest(files=()), gated=True, artifact="int8", speed=_speed(),
        engine_fidelity=EngineFidelity.failed("vLLM exited with 1"),
    )  # fmt: skip
    text = "\n".join(artifact_record_lines([card]))
    assert "vllm 0.32.0 (open tier bfloat16)" in text
    assert "**1.50x** (75% of ceiling)" in text
    assert "byte ceiling 2.00x" in text
    assert "vLLM fidelity failed: vLLM exited with 1" in text


def test_the_cli_signs_why_speed_was_skipped(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from gateway.cli.main import cli
    from licensing.keys import save_private_key

    monkeypatch.delenv("TIERGATE_VLLM_ENV", raising=False)
    key = save_private_key(PrivateKey.generate(), tmp_path / "publisher.pem")
    out = tmp_path / "rel"
    args = ["release", "build", str(tiny_llama), "--out", str(out), "--repo", "acme/tiny"]
    args += ["--version", "1.0.0", "--key", str(key), "--optimize", "int8"]
    result = CliRunner().invoke(cli, [*args, "--no-measure-speed"])
    assert result.exit_code == 0, result.output
    assert "speed of optimized: not_measured" in result.output
    assert "vLLM fidelity of optimized: not_measured" in result.output
    envelope = json.loads((out / "release.dsse.json").read_text())
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    assert predicate["measurements"]["optimized.speed.status"] == "not_measured"
    # `tiergate release show` lists the records of the statement the gateway serves.
    from gateway.cli._release_run import statement_record_lines

    lines = statement_record_lines(envelope)
    assert any(line.startswith("speed of optimized: not_measured") for line in lines)
    assert statement_record_lines({"payload": "not base64"}) == []


@pytest.mark.parametrize("bad", [["--speed-tokens", "0"], ["--vllm-env", "/nonexistent/venv"]])
def test_the_cli_refuses_bad_engine_options(tmp_path: Path, bad: list[str]) -> None:
    from click.testing import CliRunner

    from gateway.cli.main import cli

    args = ["release", "build", str(tmp_path), "--out", str(tmp_path / "o"), "--repo", "a/b"]
    args += ["--version", "1", "--key", __file__]
    result = CliRunner().invoke(cli, [*args, *bad])
    assert result.exit_code == 2  # a usage error, before any work
