from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.errors import ManifestInvalidError, TierMismatchError, UnsafePathError
from release.hashing import hash_file, hash_files
from release.manifest import TierFile, TierManifest, build_tier_manifest, verify_tier_folder


@pytest.fixture
def tier(tmp_path: Path) -> Path:
    root = tmp_path / "tier"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (root / "sub" / "deeper" / "c").write_bytes(b"")
    (root / "model.sig").write_bytes(b"signature, not listed")
    return root


def test_manifest_lists_sorted_posix_paths_with_digests(tier: Path) -> None:
    manifest = build_tier_manifest(tier, show_progress=False)
    assert [f.path for f in manifest.files] == ["a.txt", "sub/b.bin", "sub/deeper/c"]
    for entry in manifest.files:
        content = (tier / entry.path).read_bytes()
        assert entry.size == len(content)
        assert entry.sha256 == hashlib.sha256(content).hexdigest()
    assert manifest.total_size == sum(f.size for f in manifest.files)
    assert manifest.get("a.txt") == manifest.files[0]
    assert manifest.get("model.sig") is None


def test_manifest_json_is_canonical_and_round_trips(tier: Path) -> None:
    manifest = build_tier_manifest(tier, show_progress=False)
    raw = manifest.to_json()
    assert TierManifest.from_json(raw) == manifest
    assert (
        raw
        == json.dumps(
            json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )
    assert TierManifest.from_json(raw.decode()).to_json() == raw


@pytest.mark.parametrize(
    "doc",
    [
        "[]",
        "{",
        '{"version": 1}',
        '{"version": 2, "files": []}',
        '{"version": true, "files": []}',
        '{"version": 1, "files": {}}',
        '{"version": 1, "files": [{"path": "a", "size": 1}]}',
        '{"version": 1, "files": [{"path": "a", "size": -1, "sha256": "' + "0" * 64 + '"}]}',
        '{"version": 1, "files": [{"path": "a", "size": 1, "sha256": "' + "A" * 64 + '"}]}',
        '{"version": 1, "files": [{"path": "../a", "size": 1, "sha256": "' + "0" * 64 + '"}]}',
        '{"version": 1, "files": [{"path": "/a", "size": 1, "sha256": "' + "0" * 64 + '"}]}',
        '{"version": 1, "files": [{"path": "a//b", "size": 1, "sha256": "' + "0" * 64 + '"}]}',
        '{"version": 1, "version": 1, "files": []}',
    ],
)
def test_malformed_manifest_json(doc: str) -> None:
    with pytest.raises(ManifestInvalidError):
        TierManifest.from_json(doc)


def test_manifest_rejects_unsorted_or_duplicate_files() -> None:
    digest = "0" * 64
    with pytest.raises(ManifestInvalidError, match="sorted"):
        TierManifest((TierFile("b", digest, 1), TierFile("a", digest, 1)))
    with pytest.raises(ManifestInvalidError, match="duplicate"):
        TierManifest((TierFile("a", digest, 1), TierFile("a", digest, 1)))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_manifest_text_is_typed_error_or_manifest(doc: str) -> None:
    with contextlib.suppress(ManifestInvalidError):
        TierManifest.from_json(doc)


def test_verify_passes_on_identical_folder(tier: Path) -> None:
    manifest = build_tier_manifest(tier, show_progress=False)
    verify_tier_folder(tier, manifest, show_progress=False)


def test_verify_reports_missing_extra_and_mismatched(tier: Path) -> None:
    manifest = build_tier_manifest(tier, show_progress=False)
    (tier / "a.txt").write_bytes(b"ALPHA")  # same size, other content
    (tier / "sub" / "deeper" / "c").unlink()
    (tier / "new.txt").write_bytes(b"x")
    with pytest.raises(TierMismatchError) as info:
        verify_tier_folder(tier, manifest, show_progress=False)
    assert info.value.missing == ("sub/deeper/c",)
    assert info.value.extra == ("new.txt",)
    assert info.value.mismatched == ("a.txt",)
    assert info.value.code == "tier_mismatch"


def test_verify_truncated_file_is_mismatched(tier: Path) -> None:
    manifest = build_tier_manifest(tier, show_progress=False)
    with open(tier / "sub" / "b.bin", "r+b") as fileobj:
        fileobj.truncate(10)
    with pytest.raises(TierMismatchError) as info:
        verify_tier_folder(tier, manifest, show_progress=False)
    assert info.value.mismatched == ("sub/b.bin",)


def test_symlink_inside_is_listed_outside_is_refused(tier: Path, tmp_path: Path) -> None:
    (tier / "link.txt").symlink_to(tier / "a.txt")
    manifest = build_tier_manifest(tier, show_progress=False)
    assert manifest.get("link.txt") == TierFile("link.txt", hashlib.sha256(b"alpha").hexdigest(), 5)
    (tmp_path / "secret").write_bytes(b"s")
    (tier / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="outside"):
        build_tier_manifest(tier, show_progress=False)


def test_symlinked_directory_is_refused(tier: Path) -> None:
    (tier / "dirlink").symlink_to(tier / "sub", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="directories"):
        build_tier_manifest(tier, show_progress=False)


def test_special_files_are_refused(tier: Path) -> None:
    os.mkfifo(tier / "fifo")
    with pytest.raises(UnsafePathError, match="regular"):
        build_tier_manifest(tier, show_progress=False)


def test_hash_file_matches_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "f"
    content = os.urandom(100_003)
    path.write_bytes(content)
    for chunk in (1, 7, 4096, 100_003, 1 << 20):
        digest = hash_file(path, chunk_size=chunk)
        assert digest.size == len(content)
        assert digest.sha256 == hashlib.sha256(content).hexdigest()


def test_parallel_hashing_equals_sequential_and_reports_progress(tier: Path) -> None:
    files = [(p.name, p) for p in sorted(tier.rglob("*")) if p.is_file()]
    calls: list[tuple[int, int]] = []
    parallel = hash_files(
        files, max_workers=4, show_progress=False, on_progress=lambda d, t: calls.append((d, t))
    )
    sequential = hash_files(files, max_workers=1, show_progress=False)
    assert parallel == sequential
    total = sum(p.stat().st_size for _, p in files)
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_manifest_of_a_model_folder(tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_llama, folder)
    manifest = build_tier_manifest(folder, show_progress=False)
    assert "model.safetensors" in [f.path for f in manifest.files]
    verify_tier_folder(folder, TierManifest.from_json(manifest.to_json()), show_progress=False)
