"""Detection of a yanked model's text: still detected and attributed, and it says so."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import (  # noqa: F401 (fixture)
    MODEL,
    REPO_ID,
    VERSION,
    generation_release,
)


def test_detect_by_bare_name_after_every_version_is_yanked(
    generation_release: BuiltRelease,  # noqa: F811
    client: TestClient,
    make_account: Callable[..., Account],
) -> None:
    publisher, dev = make_account("pat", "publisher", org="acme"), make_account("dev")
    publish(generation_release, client, publisher)  # type: ignore[arg-type]
    made = client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "The release gateway", "max_tokens": 120, "seed": 120},
        headers=dev.headers,
    )
    assert made.status_code == 200, made.text
    text = made.json()["choices"][0]["text"]
    yanked = client.post(
        f"/api/releases/{REPO_ID}/{VERSION}/yank",
        json={"reason": "leaks training data"},
        headers=publisher.headers,
    )
    assert yanked.status_code == 200, yanked.text

    for model in (REPO_ID, MODEL, f"{REPO_ID}:open"):
        found = client.post(
            "/v1/watermark/detect", json={"text": text, "model": model}, headers=dev.headers
        )
        assert found.status_code == 200, (model, found.text)
        result = found.json()
        assert result["verdict"] == "watermarked", model
        assert result["attribution"]["call_id"] == made.json()["id"]
        notes = [n for n in result["notes"] if "yanked" in n]
        assert notes == [
            f"{MODEL} was yanked (leaks training data); its text is still detected and "
            "attributed, as evidence"
        ], (model, result["notes"])
    missing = client.post(
        "/v1/watermark/detect", json={"text": text, "model": "acme/nothing"}, headers=dev.headers
    )
    assert missing.status_code == 404
