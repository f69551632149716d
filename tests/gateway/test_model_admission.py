"""What the model cache admits: declared tensors all stored, sizes within the memory budget.

The attack releases here are signed by hand (no ``build_release``), as a hostile publisher
would: the gateway's load-time checks must hold on their own.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.generation.models import (
    ModelCache,
    ModelCacheBusy,
    ModelInvalid,
    ModelRef,
    ModelTooLarge,
    TierFile,
)
from gateway.storage.local import LocalBlobStore
from licensing.keys import PrivateKey
from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.release.declared_fixtures import write_tiny_release_declaring_huge_model


def folder_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def signed_ref(blobs: LocalBlobStore, files: dict[str, bytes], name: str) -> ModelRef:
    """A tier as the database would describe it, its blobs stored, signed by a fresh key."""
    from licensing.sigstore_bundle import sign_model_bundle

    key = PrivateKey.generate()
    entries = [(path, hashlib.sha256(data).hexdigest(), len(data)) for path, data in files.items()]
    for data in files.values():
        blobs.put_stream([data], hashlib.sha256(data).hexdigest())
    bundle = sign_model_bundle("open", entries, key).decode()
    return ModelRef(
        release_id=1,
        repo_id=f"evil/{name}",
        version="1.0.0",
        tier="open",
        manifest_digest=hashlib.sha256(repr(entries).encode()).hexdigest(),
        statement_digest="0" * 64,
        bundle=bundle,
        files=tuple(TierFile(*entry) for entry in entries),
        public_key_pem=key.public_key.to_pem().decode(),
    )


class SpyLoader:
    """The cache's loader, recording what the cache held each time it was called."""

    def __init__(self, cache: Callable[[], ModelCache] | None = None) -> None:
        self.calls: list[int] = []
        self._cache = cache

    def __call__(self, directory: Path) -> Any:
        from release.loader import load_model

        cache = self._cache() if self._cache else None
        self.calls.append(sum(m.size_bytes for m in cache._models.values()) if cache else 0)
        return load_model(directory)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from release.testing import build_tiny_model

    root = tmp_path_factory.mktemp("admission")
    return (
        build_tiny_model(root / "a", hidden_size=64, num_layers=2, seed=1),
        build_tiny_model(root / "b", hidden_size=64, num_layers=2, seed=2),
    )


def test_13kb_release_is_refused_at_load_before_allocating(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    """Issue #14.3 at the gateway, without the publish-time check: the signed folder is
    refused from its headers; the loader (which would allocate 1.35 GB) never runs."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    attack = write_tiny_release_declaring_huge_model(
        tmp_path / "attack", tiny_models[0], one_tensor_per_layer=True
    )
    spy = SpyLoader()
    cache = ModelCache(tmp_path / "cache", blobs, 4 << 30, loader=spy)
    with pytest.raises(ModelInvalid) as raised:
        cache.get(signed_ref(blobs, folder_files(attack), "huge"))
    assert raised.value.status == 422
    assert raised.value.extra["reason"] == "weight_missing"
    assert "336,611,328" in raised.value.message
    assert spy.calls == []


def test_a_model_over_the_whole_budget_is_refused_before_loading(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    spy = SpyLoader()
    cache = ModelCache(tmp_path / "cache", blobs, 100_000, loader=spy)
    with pytest.raises(ModelTooLarge) as raised:
        cache.get(signed_ref(blobs, folder_files(tiny_models[0]), "a"))
    assert raised.value.status == 507
    assert raised.value.code == "model_too_large"
    assert spy.calls == []


def test_loading_makes_room_first_so_the_budget_holds_at_peak(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    first = signed_ref(blobs, folder_files(tiny_models[0]), "a")
    second = signed_ref(blobs, folder_files(tiny_models[1]), "b")
    cache: ModelCache
    spy = SpyLoader(lambda: cache)
    probe = ModelCache(tmp_path / "probe", blobs, 1 << 30)
    need = probe.declared_bytes(first, probe.materialize(first))
    cache = ModelCache(tmp_path / "cache", blobs, need * 3 // 2, loader=spy)
    loaded = cache.get(first)
    assert loaded.size_bytes == need  # the declared estimate is the loaded size
    cache.get(second)
    # When the second load started, the first model had already left the cache.
    assert spy.calls == [0, 0]
    assert cache.loaded_names() == [second.name]


def test_a_load_that_fits_only_after_loads_in_flight_is_told_to_retry(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    ref = signed_ref(blobs, folder_files(tiny_models[0]), "a")
    cache = ModelCache(tmp_path / "cache", blobs, 1 << 30)
    need = cache.declared_bytes(ref, cache.materialize(ref))
    cache._reserved = cache.budget_bytes - need + 1  # another thread is loading
    with pytest.raises(ModelCacheBusy) as raised:
        cache.get(ref)
    assert raised.value.status == 503
    assert "Retry-After" in raised.value.headers
    cache._reserved = 0
    assert cache.get(ref).size_bytes == need


def test_concurrent_loads_of_one_model_reserve_once(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    ref = signed_ref(blobs, folder_files(tiny_models[0]), "a")
    spy = SpyLoader()
    cache = ModelCache(tmp_path / "cache", blobs, 1 << 30, loader=spy)
    threads = [threading.Thread(target=cache.get, args=(ref,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spy.calls) == 1
    assert cache._reserved == 0


# ---------------------------------------------------------------- through the HTTP API


def write_signed_release(
    out: Path, open_files: dict[str, bytes], repo_id: str, version: str = "1.0.0"
) -> BuiltRelease:
    """A release folder as ``build_release`` lays it out, signed without its checks."""
    from licensing.sigstore_bundle import sign_model_bundle
    from licensing.statements import (
        ApprovalPolicy,
        ReleaseStatement,
        sign_release_statement,
        tier_record,
    )

    key = PrivateKey.generate()
    tiers = {"open": open_files, "optimized": open_files}
    entries = {}
    for tier, files in tiers.items():
        for path, data in files.items():
            target = out / tier / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        entries[tier] = [(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in files.items()]
        (out / tier / "model.sig").write_bytes(sign_model_bundle(tier, entries[tier], key))
    statement = ReleaseStatement(
        repo_id=repo_id,
        version=version,
        tiers=(
            tier_record("open", entries["open"], gated=False),
            tier_record("optimized", entries["optimized"], gated=True),
        ),
        license="apache-2.0",
        terms_digest=None,
        approval=ApprovalPolicy(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    (out / "release.dsse.json").write_bytes(sign_release_statement(statement, key).to_json())
    return BuiltRelease(out, key.public_key.to_pem(), repo_id, version)


def truncated_weights(files: dict[str, bytes]) -> dict[str, bytes]:
    return {**files, "model.safetensors": files["model.safetensors"][:-100]}


def rogue_header(files: dict[str, bytes]) -> dict[str, bytes]:
    """A header whose one tensor's offsets run past the data: the kind of file the
    safetensors library itself rejects with its own (uncaught, before) exception."""
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    return {**files, "model.safetensors": struct.pack("<Q", len(raw)) + raw + b"\0" * 16}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("name", "corrupt", "reason"),
    [
        ("truncated", truncated_weights, "safetensors_invalid"),
        ("rogue", rogue_header, "safetensors_invalid"),
        ("huge", None, "weight_missing"),
    ],
)
def test_malformed_or_incomplete_weights_are_a_typed_422_not_a_500(
    client: TestClient,
    make_account: Callable[..., Account],
    tmp_path: Path,
    tiny_models: tuple[Path, Path],
    name: str,
    corrupt: Callable[[dict[str, bytes]], dict[str, bytes]] | None,
    reason: str,
) -> None:
    if corrupt is None:  # the 13 KB release, published past the build's check
        files = folder_files(
            write_tiny_release_declaring_huge_model(
                tmp_path / "attack", tiny_models[0], one_tensor_per_layer=True
            )
        )
    else:
        files = corrupt(folder_files(tiny_models[0]))
    built = write_signed_release(tmp_path / "out", files, f"evil/{name}")
    publish(built, client, make_account("mallory", "publisher", org="evil"))  # type: ignore[arg-type]
    dev = make_account("dev")
    response = client.post(
        "/v1/completions",
        json={"model": f"evil/{name}@1.0.0", "prompt": "hello", "max_tokens": 4},
        headers=dev.headers,
    )
    assert response.status_code == 422, response.text
    # /v1/ answers OpenAI's error shape; the code and the reason are tiergate's.
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "model_invalid"
    assert error["reason"] == reason
    assert "Traceback" not in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_model_over_the_budget_is_a_typed_507(
    app: Any, client: TestClient, make_account: Callable[..., Account], tmp_path: Path
) -> None:
    from gateway.app import create_app
    from release.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "model", hidden_size=128, num_layers=2)  # ~2.6 MB
    built = write_signed_release(tmp_path / "out", folder_files(model), "acme/wide")
    publish(built, client, make_account("pat", "publisher", org="acme"))  # type: ignore[arg-type]
    state = app.state.gateway
    small = create_app(
        state.settings.model_copy(update={"generation_model_cache_bytes": 1 << 20}),
        engine=state.engine,
        keyring=state.keyring,
    )
    dev = make_account("dev")
    with TestClient(small, raise_server_exceptions=False) as limited:
        response = limited.post(
            "/v1/completions",
            json={"model": "acme/wide@1.0.0", "prompt": "hello", "max_tokens": 4},
            headers=dev.headers,
        )
    assert response.status_code == 507, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "model_too_large"
