"""`tiergate watermark detect --scheme vllm-gumbel`: vLLM-made ids, a key file, typed errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli, main

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vllm_gumbel_vectors.json").read_text(encoding="utf-8")
)
MARKED = next(s for s in VECTORS["samples"] if s["watermarked"] and s["context_width"] == 2)


def _key_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "vllm.key"
    path.write_text(key + "\n")
    return path


def _args(key_file: Path, ids: list[int], *extra: str) -> list[str]:
    return [
        "watermark", "detect", "--scheme", "vllm-gumbel", "--key-file", str(key_file),
        "--context-width", str(MARKED["context_width"]),
        "--token-ids", ",".join(map(str, ids)), *extra,
    ]  # fmt: skip


def test_vllm_watermarked_ids_detected_and_the_key_not_printed(tmp_path: Path) -> None:
    key_file = _key_file(tmp_path, MARKED["key"])
    result = CliRunner().invoke(cli, _args(key_file, MARKED["token_ids"]))
    assert result.exit_code == 0, result.output
    assert "verdict:        watermarked" in result.output
    assert "vllm-gumbel (philox), context_width=2" in result.output
    assert MARKED["key"] not in result.output
    as_json = CliRunner().invoke(cli, [*_args(key_file, MARKED["token_ids"]), "--json"])
    data = json.loads(as_json.output)
    assert data["watermarked"] is True
    assert data["p_value"] < 1e-10
    assert data["tokens_scored"] == MARKED["vllm_detection"]["num_scored_tokens"]
    assert data["score"] == pytest.approx(MARKED["vllm_detection"]["score"], rel=1e-12)
    assert MARKED["key"] not in as_json.output

    wrong = CliRunner().invoke(
        cli, [*_args(_key_file(tmp_path, VECTORS["wrong_key"]), MARKED["token_ids"]), "--json"]
    )
    assert json.loads(wrong.output)["watermarked"] is False


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0), capsys.readouterr().err


def test_bad_input_is_one_line_without_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_key = _key_file(tmp_path, MARKED["key"] + "z")
    code, err = _run_main(_args(bad_key, [1, 2, 3]), capsys)
    assert code == 1
    assert "error [watermark_key_invalid]" in err
    assert MARKED["key"] not in err
    good = _key_file(tmp_path, MARKED["key"])
    code, err = _run_main(_args(good, [1, -2]), capsys)
    assert (code, "error [watermark_invalid_tokens]" in err) == (1, True)
    code, err = _run_main([*_args(good, [1, 2]), "--config", str(good)], capsys)
    assert code == 2
    assert "tg-kgw-v1 options" in err
    code, err = _run_main(
        ["watermark", "detect", "--key-file", str(good), "--token-ids", "1"], capsys
    )
    assert code == 2
    assert "needs --config" in err


def test_file_is_read_with_the_tokenizer(tmp_path: Path) -> None:
    """vLLM-made ids written as words of a word-level tokenizer: `--file` + `--tokenizer`."""
    from tests.watermark.test_cli import _word_tokenizer

    tok_dir = tmp_path / "tok"
    _word_tokenizer(tok_dir, VECTORS["vocab_size"])
    (tmp_path / "text.txt").write_text(" ".join(f"w{i}" for i in MARKED["token_ids"]))
    args = [
        "watermark", "detect", "--scheme", "vllm-gumbel",
        "--key-file", str(_key_file(tmp_path, MARKED["key"])), "--context-width", "2",
        "--file", str(tmp_path / "text.txt"), "--tokenizer", str(tok_dir), "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["watermarked"] is True
    assert data["tokens_total"] == len(MARKED["token_ids"])


def test_detector_only_install_needs_no_torch(tmp_path: Path) -> None:
    """The detector imports and runs with torch, transformers and the web stack unimportable."""
    code = (
        "import importlib.abc, sys\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'transformers', 'numba', 'fastapi', "
        "'pydantic', 'sqlalchemy', 'click'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "from watermark.vllm_gumbel import GumbelConfig, GumbelKey, detect\n"
        f"r = detect({MARKED['token_ids']!r}, GumbelConfig(context_width=2), "
        f"GumbelKey({MARKED['key']}))\n"
        "print(r.watermarked, r.p_value < 1e-10)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(root)}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True True"
