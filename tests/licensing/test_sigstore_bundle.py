from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import (
    LicensingError,
    ModelBundleError,
    ModelBundleFormatError,
    ModelBundleSignatureError,
    ModelManifestMismatchError,
    UnsupportedKeyError,
)
from licensing.keys import PrivateKey, save_private_key, save_public_key
from licensing.layout import TierFile
from licensing.sigstore_bundle import (
    BUNDLE_MEDIA_TYPE,
    ResourceDigest,
    check_files_match,
    compute_manifest_digest,
    public_key_hint,
    sign_model_bundle,
    verify_model_bundle,
    verify_model_bundle_manifest,
)
from tests.licensing._strategies import json_values
from tests.model_signing_cli import model_signing_verify

FILES = {
    "config.json": b'{"model_type": "tiny"}',
    "model.safetensors": b"\x00" * 1000,
    "a.txt": b"a",
    "a/b.txt": b"nested",  # "a.txt" < "a/b.txt" as strings, but a/b.txt sorts first by parts
    "tokenizer/vocab.json": b"{}",
}


def _file_digests(root: Path) -> list[TierFile]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "model.sig":
            data = path.read_bytes()
            out.append(
                TierFile(
                    path.relative_to(root).as_posix(), hashlib.sha256(data).hexdigest(), len(data)
                )
            )
    return out


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-model"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate("ecdsa-p256")


@pytest.fixture
def signed(model_dir: Path, key: PrivateKey, tmp_path: Path) -> tuple[Path, Path]:
    bundle = sign_model_bundle(model_dir.name, _file_digests(model_dir), key)
    (model_dir / "model.sig").write_bytes(bundle)
    pub = save_public_key(key.public_key, tmp_path / "pub.pem")
    return model_dir, pub


def _cli_verify(model: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return model_signing_verify(model, pub)


def _api_verify(model: Path, pub: Path) -> None:
    from model_signing import verifying

    (
        verifying.Config()  # type: ignore[no-untyped-call]
        .use_elliptic_key_verifier(public_key=pub)
        .set_ignore_unsigned_files(True)
        .verify(model, model / "model.sig")
    )


def test_our_bundle_passes_our_verifier(signed: tuple[Path, Path], key: PrivateKey) -> None:
    model, _ = signed
    resources = verify_model_bundle((model / "model.sig").read_bytes(), key.public_key)
    expected = sorted(
        (ResourceDigest(f.path, f.sha256) for f in _file_digests(model)),
        key=lambda r: r.name.split("/"),
    )
    assert resources == expected
    assert resources[0].name == "a/b.txt"


def test_bundle_format(signed: tuple[Path, Path], key: PrivateKey) -> None:
    model, _ = signed
    bundle = json.loads((model / "model.sig").read_bytes())
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == public_key_hint(key.public_key)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["subject"][0]["name"] == "tiny-model"
    manifest = verify_model_bundle_manifest((model / "model.sig").read_bytes(), key.public_key)
    assert statement["subject"][0]["digest"]["sha256"] == manifest.manifest_digest
    assert manifest.manifest_digest == compute_manifest_digest(
        (f.path, f.sha256) for f in _file_digests(model)
    )


def test_real_model_signing_cli_accepts_our_bundle(signed: tuple[Path, Path]) -> None:
    model, pub = signed
    result = _cli_verify(model, pub)
    assert result.returncode == 0, result.stdout + result.stderr


def test_real_model_signing_api_accepts_our_bundle(signed: tuple[Path, Path]) -> None:
    model, pub = signed
    _api_verify(model, pub)


def test_real_model_signing_api_rejects_tampered_file(signed: tuple[Path, Path]) -> None:
    model, pub = signed
    (model / "config.json").write_bytes(b'{"model_type": "evil"}')
    with pytest.raises(ValueError):
        _api_verify(model, pub)


def test_real_model_signing_cli_rejects_tampered_file_and_wrong_key(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    model, pub = signed
    other = save_public_key(PrivateKey.generate().public_key, tmp_path / "other.pem")
    assert _cli_verify(model, other).returncode != 0
    (model / "a/b.txt").write_bytes(b"changed")
    assert _cli_verify(model, pub).returncode != 0


def test_our_verifier_accepts_a_bundle_made_by_model_signing(
    model_dir: Path, key: PrivateKey, tmp_path: Path
) -> None:
    from model_signing import signing

    private = save_private_key(key, tmp_path / "k.pem")
    signing.Config().use_elliptic_key_signer(  # type: ignore[no-untyped-call]
        private_key=private
    ).sign(model_dir, model_dir / "model.sig")
    resources = verify_model_bundle((model_dir / "model.sig").read_bytes(), key.public_key)
    assert {r.name: r.sha256 for r in resources} == {
        f.path: f.sha256 for f in _file_digests(model_dir)
    }


def test_wrong_key_fails(signed: tuple[Path, Path]) -> None:
    model, _ = signed
    with pytest.raises(ModelBundleSignatureError):
        verify_model_bundle((model / "model.sig").read_bytes(), PrivateKey.generate().public_key)


def test_wrong_key_without_hint_fails(signed: tuple[Path, Path]) -> None:
    model, _ = signed
    bundle = json.loads((model / "model.sig").read_bytes())
    del bundle["verificationMaterial"]["publicKey"]
    with pytest.raises(ModelBundleSignatureError):
        verify_model_bundle(json.dumps(bundle).encode(), PrivateKey.generate().public_key)


def _edit_statement(bundle_bytes: bytes, edit: object) -> bytes:
    bundle = json.loads(bundle_bytes)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    edit(statement)  # type: ignore[operator]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(bundle).encode()


def test_edited_statement_fails_signature(signed: tuple[Path, Path], key: PrivateKey) -> None:
    model, _ = signed

    def edit(statement: dict) -> None:  # type: ignore[type-arg]
        statement["predicate"]["resources"][0]["digest"] = "0" * 64

    with pytest.raises(ModelBundleSignatureError):
        verify_model_bundle(
            _edit_statement((model / "model.sig").read_bytes(), edit), key.public_key
        )


def test_subject_digest_must_match_resources(model_dir: Path, key: PrivateKey) -> None:
    # A correctly signed statement whose subject digest disagrees with its resources.
    from licensing.dsse import sign_envelope
    from licensing.intoto import PAYLOAD_TYPE, Statement, Subject

    statement = Statement(
        (Subject.sha256("m", "0" * 64),),
        "https://model_signing/signature/v1.0",
        {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False},
            "resources": [{"name": "a", "algorithm": "sha256", "digest": "1" * 64}],
        },
    )
    envelope = sign_envelope(PAYLOAD_TYPE, statement.to_json(), key)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": public_key_hint(key.public_key)}},
        "dsseEnvelope": envelope.to_dict(),
    }
    with pytest.raises(ModelManifestMismatchError):
        verify_model_bundle(json.dumps(bundle).encode(), key.public_key)


@pytest.mark.parametrize(
    "files",
    [
        [],
        [("../x", "0" * 64, 1)],
        [("/abs", "0" * 64, 1)],
        [("a//b", "0" * 64, 1)],
        [("a\\b", "0" * 64, 1)],
        [("model.sig", "0" * 64, 1)],
        [(".git/config", "0" * 64, 1)],
        [("a", "0" * 63, 1)],
        [("a", "A" * 64, 1)],
        [("a", "0" * 64, 1), ("a", "1" * 64, 1)],
    ],
)
def test_sign_rejects_bad_file_lists(files: list[tuple[str, str, int]], key: PrivateKey) -> None:
    with pytest.raises(ModelBundleFormatError):
        sign_model_bundle("m", files, key)


def test_sign_needs_p256() -> None:
    with pytest.raises(UnsupportedKeyError):
        sign_model_bundle("m", [("a", "0" * 64, 1)], PrivateKey.generate("ed25519"))


@settings(max_examples=50)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_our_errors(data: bytes) -> None:
    try:
        verify_model_bundle(data, _KEY.public_key)
    except ModelBundleError:
        pass
    except LicensingError as exc:  # pragma: no cover - would be a bug: wrong family
        raise AssertionError(f"unexpected error family {type(exc).__name__}") from exc


_KEY = PrivateKey.generate()


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(obj, dict):
        for name, value in obj.items():
            found += _paths(value, (*prefix, name))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += _paths(value, (*prefix, index))
    return found


def _statement_obj() -> Any:
    bundle = json.loads(sign_model_bundle("m", [("a", "1" * 64, 1), ("b/c", "2" * 64, 2)], _KEY))
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


_STATEMENT = _statement_obj()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_paths(_STATEMENT)), json_values)
def test_any_signed_statement_shape_raises_only_bundle_errors(path: Any, value: Any) -> None:
    from licensing.dsse import sign_envelope
    from licensing.intoto import PAYLOAD_TYPE

    obj = json.loads(json.dumps(_STATEMENT))
    if path:
        cursor = obj
        for part in path[:-1]:
            cursor = cursor[part]
        cursor[path[-1]] = value
    else:
        obj = value
    envelope = sign_envelope(PAYLOAD_TYPE, json.dumps(obj).encode(), _KEY)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": public_key_hint(_KEY.public_key)}},
        "dsseEnvelope": envelope.to_dict(),
    }
    with contextlib.suppress(ModelBundleError):
        verify_model_bundle(json.dumps(bundle).encode(), _KEY.public_key)


def test_check_files_match(signed: tuple[Path, Path], key: PrivateKey) -> None:
    model, _ = signed
    resources = verify_model_bundle((model / "model.sig").read_bytes(), key.public_key)
    files = _file_digests(model)
    check_files_match(resources, files)
    extra = [*files, TierFile("README.md", "0" * 64, 1)]
    check_files_match(resources, extra, allow_unsigned=True)
    with pytest.raises(ModelManifestMismatchError, match=r"unsigned: README\.md"):
        check_files_match(resources, extra)
    with pytest.raises(ModelManifestMismatchError, match=r"missing: a\.txt"):
        check_files_match(resources, [f for f in files if f.path != "a.txt"])
    tampered = [TierFile(f.path, "0" * 64, f.size) if f.path == "a/b.txt" else f for f in files]
    with pytest.raises(ModelManifestMismatchError, match=r"changed: a/b\.txt"):
        check_files_match(resources, tampered)
