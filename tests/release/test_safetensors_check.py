from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file

from release.errors import ReleaseError, SafetensorsInvalidError
from release.safetensors_check import validate_safetensors_file
from tests.release.conftest import make_safetensors

F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


def _valid_bytes() -> bytes:
    return save(
        {
            "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "b": torch.ones(4, dtype=torch.bfloat16),
            "c": torch.zeros(0, dtype=torch.int64),
            "d": torch.tensor([1, 2, 3], dtype=torch.int8),
        },
        metadata={"format": "pt"},
    )


def test_valid_file_reports_tensors(write_file: Callable[..., Path]) -> None:
    report = validate_safetensors_file(write_file(_valid_bytes()), label="m.safetensors")
    assert report.file == "m.safetensors"
    assert report.tensor_count == 4
    assert report.dtypes == ("BF16", "F32", "I64", "I8")
    assert report.metadata == (("format", "pt"),)
    assert {t.name: t.shape for t in report.tensors}["a"] == (2, 3)


def test_file_written_by_save_file_passes(tmp_path: Path) -> None:
    save_file({"w": torch.randn(3, 5)}, str(tmp_path / "x.safetensors"))
    assert validate_safetensors_file(tmp_path / "x.safetensors").tensor_count == 1


BAD_CASES: list[tuple[str, bytes, str]] = [
    ("short", b"\x01\x02", "shorter than 8"),
    ("header_over_limit", struct.pack("<Q", 2**63) + b"{}", "exceeds the limit"),
    ("header_past_eof", struct.pack("<Q", 1000) + b"{}", "past the end"),
    ("header_too_small", struct.pack("<Q", 1) + b"{", "too small"),
    ("not_brace", struct.pack("<Q", 4) + b"[1] ", "start with '{'"),
    ("not_json", struct.pack("<Q", 4) + b"{,} ", "not valid JSON"),
    ("not_utf8", struct.pack("<Q", 4) + b"{\xff} ", "not valid JSON"),
    ("nan", struct.pack("<Q", 10) + b'{"a":NaN} ', "not valid JSON"),
    ("dup_key", struct.pack("<Q", 16) + b'{"a":{},"a":{}} ', "duplicate key"),
    (
        "unknown_dtype",
        make_safetensors(
            {"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)
        ),
        "unknown dtype",
    ),
    (
        "negative_dim",
        make_safetensors({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
        "negative",
    ),
    (
        "bool_dim",
        make_safetensors(
            {"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4)
        ),
        "non-integer",
    ),
    (
        "float_dim",
        make_safetensors({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, bytes(4)),
        "non-integer",
    ),
    ("extra_field", make_safetensors({"a": {**F32_2x2, "x": 1}}, bytes(16)), "unexpected ['x']"),
    (
        "missing_field",
        make_safetensors({"a": {"dtype": "F32", "shape": [4]}}, bytes(16)),
        "missing ['data_offsets']",
    ),
    (
        "span_mismatch",
        make_safetensors(
            {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, bytes(12)
        ),
        "span 12",
    ),
    (
        "outside",
        make_safetensors(
            {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [4, 20]}}, bytes(16)
        ),
        "outside the data section",
    ),
    (
        "reversed",
        make_safetensors({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}, bytes(4)),
        "begin <= end",
    ),
    (
        "overlap",
        make_safetensors(
            {"a": F32_2x2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16)
        ),
        "overlap",
    ),
    (
        "gap",
        make_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16)),
        "unaccounted",
    ),
    ("trailing", make_safetensors({"a": F32_2x2}, bytes(20)), "trailing bytes"),
    (
        "metadata_int",
        make_safetensors({"a": F32_2x2}, bytes(16), metadata={"k": 1}),
        "__metadata__",
    ),
    ("metadata_list", make_safetensors({"a": F32_2x2}, bytes(16), metadata=["x"]), "__metadata__"),  # type: ignore[arg-type]
    ("entry_not_object", make_safetensors({"a": [1]}, b""), "not a JSON object"),
    ("empty_name", make_safetensors({"": F32_2x2}, bytes(16)), "empty tensor name"),
    (
        "sub_byte",
        make_safetensors({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}, bytes(1)),
        "whole bytes",
    ),
    (
        "rank",
        make_safetensors(
            {"a": {"dtype": "U8", "shape": [1] * 40, "data_offsets": [0, 1]}}, bytes(1)
        ),
        "dimensions",
    ),
]


@pytest.mark.parametrize(("case", "content", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_malformed_files_raise_typed_error(
    write_file: Callable[..., Path], case: str, content: bytes, reason: str
) -> None:
    path = write_file(content)
    with pytest.raises(SafetensorsInvalidError) as info:
        validate_safetensors_file(path, label="w.safetensors")
    assert reason in info.value.reason
    assert info.value.file == "w.safetensors"
    assert info.value.code == "safetensors_invalid"


def test_error_names_the_tensor(write_file: Callable[..., Path]) -> None:
    content = make_safetensors(
        {"good": F32_2x2, "bad": {"dtype": "Q7", "shape": [1], "data_offsets": [16, 17]}},
        bytes(17),
    )
    with pytest.raises(SafetensorsInvalidError) as info:
        validate_safetensors_file(write_file(content))
    assert info.value.tensor == "bad"
    assert "'bad'" in str(info.value)


def test_header_limit_is_configurable(write_file: Callable[..., Path]) -> None:
    path = write_file(_valid_bytes())
    with pytest.raises(SafetensorsInvalidError, match="exceeds the limit"):
        validate_safetensors_file(path, max_header_bytes=16)


def test_header_padding_with_spaces_is_accepted(write_file: Callable[..., Path]) -> None:
    content = make_safetensors({"a": F32_2x2}, bytes(16), pad_to=64)
    assert validate_safetensors_file(write_file(content)).tensor_count == 1


def test_deeply_nested_json_is_a_typed_error(write_file: Callable[..., Path]) -> None:
    nested = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(SafetensorsInvalidError):
        validate_safetensors_file(write_file(struct.pack("<Q", len(nested)) + nested))


def test_huge_integer_is_a_typed_error(write_file: Callable[..., Path]) -> None:
    header = b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}'
    with pytest.raises(SafetensorsInvalidError):
        validate_safetensors_file(write_file(struct.pack("<Q", len(header)) + header + bytes(4)))


def _accepted_or_typed_error(path: Path) -> None:
    try:
        report = validate_safetensors_file(path)
    except SafetensorsInvalidError:
        return
    # What we accept, the reference implementation must load: our checks are not looser.
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as reader:
        names = reader.keys()
        assert sorted(names) == sorted(t.name for t in report.tensors)
        for name in names:
            reader.get_tensor(name)


_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_SETTINGS
@given(data=st.data())
def test_mutated_valid_file_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    content = bytearray(_valid_bytes())
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "length"]))
    if kind == "flip":
        index = data.draw(st.integers(0, len(content) - 1))
        content[index] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        content = content[: data.draw(st.integers(0, len(content) - 1))]
    elif kind == "insert":
        index = data.draw(st.integers(0, len(content)))
        content[index:index] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        content[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    path = tmp_path / "m.safetensors"
    path.write_bytes(bytes(content))
    _accepted_or_typed_error(path)


_json_scalar = st.one_of(
    st.integers(-(2**70), 2**70), st.booleans(), st.none(), st.text(max_size=4), st.floats()
)
_entry = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "I8", "U8", "BOOL", "F4", "X"]),
        "shape": st.lists(st.one_of(st.integers(-1, 6), _json_scalar), max_size=3),
        "data_offsets": st.lists(st.integers(-1, 40), min_size=0, max_size=3),
    },
    optional={"extra": _json_scalar},
)


@_SETTINGS
@given(
    header=st.dictionaries(st.text(max_size=3), st.one_of(_entry, _json_scalar), max_size=4),
    data_size=st.integers(0, 48),
)
def test_random_headers_never_crash(tmp_path: Path, header: dict[str, Any], data_size: int) -> None:
    raw = json.dumps(header).encode()
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data_size))
    try:
        _accepted_or_typed_error(path)
    except ReleaseError:
        pytest.fail("only SafetensorsInvalidError is expected")
