"""Gateway keys: generated once with mode 0600, reused after, refused when exposed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.keyring import LINK_KEY_FILE, LOG_KEY_FILE, load_keyring


def test_keys_generated_private_and_reused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    first = load_keyring(keys_dir)
    assert (keys_dir.stat().st_mode & 0o777) == 0o700
    for path in keys_dir.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o600, path
    contents = {p.name: p.read_bytes() for p in keys_dir.iterdir()}
    second = load_keyring(keys_dir)
    assert {p.name: p.read_bytes() for p in keys_dir.iterdir()} == contents
    assert first.watermark_master_key == second.watermark_master_key
    assert first.link_keys == second.link_keys
    assert "secret" not in repr(first).lower()
    assert first.watermark_master_key.hex() not in repr(first)


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    load_keyring(tmp_path)
    os.chmod(tmp_path / LOG_KEY_FILE, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keyring(tmp_path)


def test_corrupt_key_is_a_clear_error(tmp_path: Path) -> None:
    load_keyring(tmp_path)
    (tmp_path / LOG_KEY_FILE).write_bytes(b"garbage")
    with pytest.raises(ConfigurationError, match="corrupt"):
        load_keyring(tmp_path)


def test_short_link_key_is_refused(tmp_path: Path) -> None:
    load_keyring(tmp_path)
    (tmp_path / LINK_KEY_FILE).write_bytes(b"short")
    with pytest.raises(ConfigurationError, match="shorter than 32 bytes"):
        load_keyring(tmp_path)


def test_newest_link_key_signs(tmp_path: Path) -> None:
    load_keyring(tmp_path)
    path = tmp_path / "link-hmac-2.key"
    path.write_bytes(b"k" * 32)
    path.chmod(0o600)
    keyring = load_keyring(tmp_path)
    assert keyring.current_link_key_id == "2"
    assert set(keyring.link_keys) == {"1", "2"}
