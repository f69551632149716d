"""Keys, key files, the serialized config and the tokenizer digest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.watermark.conftest import FakeTokenizer
from watermark.config import PayloadSettings, WatermarkConfig, tokenizer_digest
from watermark.errors import (
    UnsupportedSchemeError,
    WatermarkConfigError,
    WatermarkError,
    WatermarkKeyError,
)
from watermark.keys import WatermarkKey, compute_key_id, load_key_file


def test_key_id_and_repr_hide_the_secret(key: WatermarkKey) -> None:
    assert key.key_id == compute_key_id(bytes(range(32)))
    assert len(key.key_id) == 16
    assert key.to_hex() not in repr(key)
    assert key == WatermarkKey.from_hex(key.to_hex())
    assert key != WatermarkKey.generate()


def test_generate_is_injectable() -> None:
    made = WatermarkKey.generate(lambda n: b"\x01" * n)
    assert made == WatermarkKey(b"\x01" * 32)


@pytest.mark.parametrize("secret", [b"short", b"x" * 2000])
def test_key_length_bounds(secret: bytes) -> None:
    with pytest.raises(WatermarkKeyError):
        WatermarkKey(secret)


def test_key_files(tmp_path: Path, key: WatermarkKey) -> None:
    good = tmp_path / "k.hex"
    good.write_text(key.to_hex() + "\n")
    assert load_key_file(good) == key
    for name, content in (("bad.hex", b"zz"), ("bin.hex", b"\xff\xfe"), ("big.hex", b"0" * 5000)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(WatermarkKeyError):
            load_key_file(path)
    with pytest.raises(WatermarkKeyError):
        load_key_file(tmp_path / "missing")


def test_config_round_trip(key: WatermarkKey, tokenizer: FakeTokenizer) -> None:
    config = WatermarkConfig.create(
        key, 1009, tokenizer=tokenizer, delta=3, context_width=2, self_seeded=True
    )
    assert WatermarkConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["scheme"] == "tg-kgw-v1"
    assert config.delta == 3.0
    with_payload = WatermarkConfig.create(key, 1009, payload=PayloadSettings(payload_bits=24))
    assert with_payload.gamma == 0.25
    assert WatermarkConfig.from_json(with_payload.to_json()) == with_payload


@pytest.mark.parametrize(
    "change",
    [
        {"gamma": 0.0},
        {"gamma": 1.0},
        {"gamma": float("nan")},
        {"gamma": "0.25"},
        {"delta": -1},
        {"delta": float("inf")},
        {"context_width": 0},
        {"context_width": 9},
        {"context_width": True},
        {"vocab_size": 1},
        {"vocab_size": 2**40},
        {"key_id": "XYZ"},
        {"tokenizer_digest": "md5:abc"},
        {"self_seeded": 1},
        {"payload": {"payload_bits": 0}},
        {"payload": {"nope": 1}},
        {"payload": [1]},
        {"extra": 1},
    ],
)
def test_invalid_configs(key: WatermarkKey, change: dict[str, object]) -> None:
    data = WatermarkConfig.create(key, 1009).to_dict()
    data.update(change)
    with pytest.raises(WatermarkConfigError):
        WatermarkConfig.from_dict(data)


def test_unknown_scheme_and_bad_json(key: WatermarkKey) -> None:
    data = WatermarkConfig.create(key, 1009).to_dict()
    data["scheme"] = "tg-kgw-v0"
    with pytest.raises(UnsupportedSchemeError):
        WatermarkConfig.from_dict(data)
    for text in ("{", "[]", "null", '{"key_id": "00"}', "x" * 70000):
        with pytest.raises(WatermarkConfigError):
            WatermarkConfig.from_json(text)


def test_tokenizer_digest_is_canonical() -> None:
    a, b = FakeTokenizer(), FakeTokenizer()
    assert tokenizer_digest(a) == tokenizer_digest(b)
    assert tokenizer_digest(a).startswith("sha256:")
    assert tokenizer_digest(a) != tokenizer_digest(FakeTokenizer(size=1008))
    with pytest.raises(WatermarkError):
        tokenizer_digest(object())


def test_error_codes_are_stable() -> None:
    import watermark.errors as errors

    codes = [getattr(errors, name).code for name in errors.__all__]
    assert len(codes) == len(set(codes))
    assert all(issubclass(getattr(errors, n), errors.WatermarkError) for n in errors.__all__)


def test_find_key_for_rotation(key: WatermarkKey, other_key: WatermarkKey) -> None:
    from watermark.keys import find_key

    assert find_key([other_key, key], key.key_id) is key
    with pytest.raises(WatermarkKeyError):
        find_key([other_key], key.key_id)
