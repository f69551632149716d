"""One vocabulary for the release layout: one constant, one type, one rule each."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from gateway.errors import ValidationFailed
from gateway.generation.models import parse_model_name
from gateway.services.releases import split_repo_id
from licensing.layout import SIGNATURE_FILE, TierFile, is_repo_id
from licensing.sigstore_bundle import DEFAULT_IGNORE_PATHS
from release.manifest import TierManifest

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("release", "licensing", "watermark", "gateway")


def _package_trees() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(encoding="utf-8"))
        for part in PARTS
        for path in sorted((REPO_ROOT / part).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def trees() -> dict[Path, ast.Module]:
    return _package_trees()


def test_layout_types_are_defined_once(trees: dict[Path, ast.Module]) -> None:
    """Regression: TierFile was defined three times (two field orders), FileDigest and
    TierManifest twice."""
    defined = Counter(
        node.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    )
    for name in ("TierFile", "FileDigest", "TierManifest", "TierRecord"):
        assert defined[name] == 1, name


def test_signature_file_name_is_one_constant(trees: dict[Path, ast.Module]) -> None:
    """Regression: "model.sig" was defined five times and written as a literal three more."""
    literal = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value == "model.sig"
    ]
    assert len(literal) == 1, literal
    assert literal[0].startswith("licensing/layout.py:")
    assert SIGNATURE_FILE in DEFAULT_IGNORE_PATHS


@pytest.mark.parametrize(
    ("repo_id", "valid"),
    [
        ("acme/tiny-llama", True),
        ("Acme.AI/model_v2.1", True),
        ("a" * 96 + "/" + "b" * 96, True),
        ("o" * 65 + "/x", True),  # generation used to cap the org at 64
        ("a" * 97 + "/x", False),
        (".hidden/x", False),  # the gateway used to accept anything non-empty
        ("acme/-x", False),
        ("acme/a b", False),
        ("acme/x/y", False),
        ("acme", False),
        ("/x", False),
    ],
)
def test_repo_id_rule_is_one_rule(repo_id: str, valid: bool) -> None:
    assert is_repo_id(repo_id) is valid
    if valid:
        assert split_repo_id(repo_id) == tuple(repo_id.split("/"))
        assert parse_model_name(repo_id)[0] == repo_id
    else:
        with pytest.raises(ValidationFailed):
            split_repo_id(repo_id)
        with pytest.raises(ValidationFailed):
            parse_model_name(repo_id)


def test_one_tier_file_for_manifest_statement_and_bundle() -> None:
    digest = "ab" * 32
    entry = TierFile("weights/model.safetensors", digest, 12)
    manifest = TierManifest((entry,))
    assert TierManifest.from_json(manifest.to_json()).files == (entry,)
    from licensing.statements import tier_record

    assert tier_record("open", manifest.files, gated=False).files == (entry,)
