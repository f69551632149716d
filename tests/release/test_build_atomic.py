"""`build_release` writes a release whole or not at all."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from licensing.keys import PrivateKey
from release.build import BuildOptions, OutputExistsError, build_release
from release.errors import BuildOptionsInvalidError, QuantizationError


def _build(model: Path, out: Path, **kw: object) -> object:
    options = BuildOptions(repo_id=str(kw.pop("repo_id", "acme/tiny")), version="1.0.0")
    return build_release(
        model, out, key=PrivateKey.generate(), options=options, now=datetime.now(UTC),
        show_progress=False, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_failure_half_way_leaves_no_folder(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import release.fidelity

    def broken(*args: object, **kwargs: object) -> object:
        raise QuantizationError("disk full, say")

    monkeypatch.setattr(release.fidelity, "build_optimized_tier", broken)
    out = tmp_path / "release"
    with pytest.raises(QuantizationError):
        _build(tiny_llama, out)  # the open tier was already copied when this failed
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_a_release_only_once_the_new_one_is_whole(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "release"
    _build(tiny_llama, out)
    first = (out / "release.dsse.json").read_bytes()
    with pytest.raises(OutputExistsError):
        _build(tiny_llama, out)
    import release.fidelity

    def broken(*args: object, **kwargs: object) -> object:
        raise QuantizationError("interrupted")

    with monkeypatch.context() as patch:
        patch.setattr(release.fidelity, "build_optimized_tier", broken)
        with pytest.raises(QuantizationError):
            _build(tiny_llama, out, force=True)
    assert (out / "release.dsse.json").read_bytes() == first  # the old one is intact
    _build(tiny_llama, out, force=True)
    assert (out / "release.dsse.json").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "acme/", " acme/tiny"])
def test_a_bad_repo_id_is_refused_before_any_work(
    tiny_llama: Path, tmp_path: Path, repo_id: str
) -> None:
    with pytest.raises(BuildOptionsInvalidError):
        _build(tiny_llama, tmp_path / "release", repo_id=repo_id)
    assert list(tmp_path.iterdir()) == []
