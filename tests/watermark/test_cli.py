"""`tiergate watermark detect`: offline detection for key holders."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gateway.cli.main import cli, main
from watermark.config import WatermarkConfig
from watermark.keys import WatermarkKey


@pytest.fixture
def files(tmp_path: Path, config: WatermarkConfig, key: WatermarkKey) -> tuple[Path, Path]:
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())
    key_path = tmp_path / "key.hex"
    key_path.write_text(key.to_hex())
    return config_path, key_path


def test_detect_token_ids(
    files: tuple[Path, Path],
    config: WatermarkConfig,
    key: WatermarkKey,
    sampler: Callable[..., np.ndarray],
) -> None:
    ids = ",".join(str(i) for i in sampler(config, key, length=150)[0])
    args = ["watermark", "detect", "--token-ids", ids, "--config", str(files[0])]
    args += ["--key-file", str(files[1])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "verdict:        watermarked" in result.output
    assert "tokens scored:" in result.output
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    data = json.loads(as_json.output)
    assert data["watermarked"] is True
    assert data["config"]["key_id"] == key.key_id


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0), capsys.readouterr().err


def test_bad_input_is_one_line(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["watermark", "detect", "--config", str(files[0]), "--key-file", str(files[1])]
    code, err = _run_main([*base, "--token-ids", "1,2,999999"], capsys)
    assert code == 1
    assert "error [watermark_invalid_tokens]" in err
    assert len(err.strip().splitlines()) == 1
    code, err = _run_main([*base, "--token-ids", "1,x"], capsys)
    assert "watermark_invalid_tokens" in err
    code, err = _run_main([*base, "--token-ids", "5"], capsys)
    assert "watermark_text_too_short" in err
    code, err = _run_main([*base, "--text", "hello"], capsys)
    assert code == 2
    assert "--tokenizer" in err
    code, err = _run_main([*base, "--text", "a", "--token-ids", "1"], capsys)
    assert "exactly one" in err


def test_wrong_key_file(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.hex"
    other.write_text(WatermarkKey(b"z" * 32).to_hex())
    argv = ["watermark", "detect", "--token-ids", "1,2,3", "--config", str(files[0])]
    code, err = _run_main([*argv, "--key-file", str(other)], capsys)
    assert code == 1
    assert "watermark_key_invalid" in err


def test_cli_module_imports_no_torch() -> None:
    code = (
        "import sys, gateway.cli.watermark; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_watermark_package_imports_no_other_part() -> None:
    code = (
        "import sys, watermark, watermark.processor, watermark.payload; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('gateway', 'release', 'licensing', 'fastapi', 'sqlmodel', 'torch', 'transformers')]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _word_tokenizer(directory: Path, size: int) -> object:
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {f"w{i}": i for i in range(size)}
    model = tokenizers.models.WordLevel(vocab=vocab, unk_token="w0")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0")
    fast.save_pretrained(str(directory))
    return fast


def test_detect_file_with_tokenizer(
    tmp_path: Path,
    key: WatermarkKey,
    sampler: Callable[..., np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tok_dir = tmp_path / "tok"
    tokenizer = _word_tokenizer(tok_dir, 1009)
    config = WatermarkConfig.create(key, 1009, tokenizer=tokenizer)
    (tmp_path / "config.json").write_text(config.to_json())
    (tmp_path / "key.hex").write_text(key.to_hex())
    ids = sampler(config, key, length=120)[0]
    (tmp_path / "text.txt").write_text(" ".join(f"w{i}" for i in ids))
    args = ["watermark", "detect", "--file", str(tmp_path / "text.txt"), "--tokenizer"]
    args += [str(tok_dir), "--config", str(tmp_path / "config.json")]
    args += ["--key-file", str(tmp_path / "key.hex"), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["watermarked"] is True
    other_dir = tmp_path / "other"
    _word_tokenizer(other_dir, 1000)
    args[5] = str(other_dir)
    code, err = _run_main(args, capsys)
    assert code == 1
    assert "watermark_tokenizer_mismatch" in err


def test_detect_text_from_a_non_round_tripping_tokenizer(tmp_path: Path, key: WatermarkKey) -> None:
    """Issue 18: `--text` reads the text every candidate way and says so (seeded sample)."""
    from release.testing import build_lowercasing_tokenizer
    from tests.watermark.test_tokenization import watermarked_upper_case_ids

    tokenizer = build_lowercasing_tokenizer(tmp_path / "tok")
    config = WatermarkConfig.create(key, len(tokenizer), tokenizer=tokenizer, gamma=0.25, delta=2.0)
    (tmp_path / "config.json").write_text(config.to_json())
    (tmp_path / "key.hex").write_text(key.to_hex())
    text = tokenizer.decode(watermarked_upper_case_ids(config, key, length=400, seed=18))
    args = ["watermark", "detect", "--text", text, "--tokenizer", str(tmp_path / "tok")]
    args += ["--config", str(tmp_path / "config.json"), "--key-file", str(tmp_path / "key.hex")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "verdict:        watermarked" in result.output
    assert "scored as 'unnormalized', best of 2 candidate" in result.output
    assert "p-value corrected x2" in result.output
    assert "text trust:     LOW" in result.output
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    assert data["tokenization"]["scored_with"] == "unnormalized"
    assert data["tokenization"]["corrected_for_candidates"] == 2
    assert data["watermarked"] is True
