from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.keys import group
from licensing.errors import KeyExistsError
from licensing.keys import load_private_key, load_public_key


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "ed25519"])
def test_generate_writes_key_pair_and_prints_key_id(tmp_path: Path, key_type: str) -> None:
    out = tmp_path / "publisher.pem"
    result = CliRunner().invoke(group, ["generate", "--out", str(out), "--type", key_type])
    assert result.exit_code == 0, result.output
    key = load_private_key(out)
    assert key.key_type == key_type
    assert load_public_key(tmp_path / "publisher.pub.pem") == key.public_key
    assert result.stdout.strip().splitlines()[-1] == key.key_id
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_generate_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    runner = CliRunner()
    assert runner.invoke(group, ["generate", "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    result = runner.invoke(group, ["generate", "--out", str(out)])
    assert isinstance(result.exception, KeyExistsError)
    assert out.read_bytes() == before
    assert runner.invoke(group, ["generate", "--out", str(out), "--force"]).exit_code == 0
    assert out.read_bytes() != before


def test_existing_public_key_also_blocks(tmp_path: Path) -> None:
    (tmp_path / "k.pub.pem").write_text("keep me")
    result = CliRunner().invoke(group, ["generate", "--out", str(tmp_path / "k.pem")])
    assert isinstance(result.exception, KeyExistsError)
    assert not (tmp_path / "k.pem").exists()


def test_root_cli_reports_error_code(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    out.write_text("x")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gateway.cli.main import main; main()",
            "keys",
            "generate",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error [key_exists]" in result.stderr


def test_module_import_is_light() -> None:
    code = "import sys, gateway.cli.keys; assert 'cryptography' not in sys.modules, 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
