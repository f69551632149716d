"""The AI BOMs served next to a release: API routes, Hub paths, the release page."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from fastapi.testclient import TestClient

from licensing.dsse import Envelope
from licensing.statements import parse_release_statement
from release.aibom import render_release_bom
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    PublishedRelease,
    built_release,
    publish,
    published_release,
    sign_release,
)
from tests.release.aibom_schemas import cyclonedx_errors, spdx_errors

MEDIA = {
    "aibom.spdx.json": "application/spdx+json",
    "aibom.cdx.json": "application/vnd.cyclonedx+json; version=1.6",
}


def test_api_serves_both_documents_valid_and_recomputable(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
) -> None:
    detail = client.get("/api/releases/acme/tiny/1.0.0").json()
    payload = Envelope.from_json(json.dumps(detail["statement"]).encode()).payload
    expected = render_release_bom(
        parse_release_statement(payload),
        statement_digest=detail["statement_digest"],
        model_card=detail["model_card"],
    ).files()
    for name, media in MEDIA.items():
        served = client.get(f"/api/releases/acme/tiny/1.0.0/{name}")
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == media
        assert served.headers["etag"] == f'"{hashlib.sha256(served.content).hexdigest()}"'
        # Anyone holding the signed statement and card regenerates the same bytes.
        assert served.content == expected[name]
    spdx = client.get("/api/releases/acme/tiny/1.0.0/aibom.spdx.json").json()
    cdx = client.get("/api/releases/acme/tiny/1.0.0/aibom.cdx.json").json()
    assert spdx_errors(spdx) == []
    assert cyclonedx_errors(cdx) == []
    tiers = {t["name"]: t for t in detail["tiers"]}
    hashes = {
        f["hashes"][0]["content"]
        for c in [cdx["metadata"]["component"], *cdx["components"]]
        for f in c.get("components", [])
    }
    assert {f["sha256"] for t in tiers.values() for f in t["files"]} <= hashes


def test_hub_paths_list_and_serve_the_boms(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
) -> None:
    info = client.get("/api/models/acme/tiny").json()
    siblings = {s["rfilename"] for s in info["siblings"]}
    assert set(MEDIA) <= siblings
    tree = {e["path"] for e in client.get("/api/models/acme/tiny/tree/main").json()}
    assert set(MEDIA) <= tree
    for name in MEDIA:
        api = client.get(f"/api/releases/acme/tiny/1.0.0/{name}").content
        hub = client.get(f"/acme/tiny/resolve/main/{name}")
        assert hub.status_code == 200
        assert hub.content == api
        assert hub.headers["x-linked-etag"] == f'"{hashlib.sha256(api).hexdigest()}"'
        # A gated tier's files follow its gate, the BOMs too; the API route stays public.
        gated = client.get(f"/acme/tiny/resolve/optimized/{name}")
        assert gated.status_code == 401
        assert gated.headers["x-error-code"] == "GatedRepo"


def test_unknown_version_and_the_release_page(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
) -> None:
    missing = client.get("/api/releases/acme/tiny/9.9.9/aibom.spdx.json")
    assert missing.status_code == 404
    page = client.get("/models/acme/tiny")
    assert page.status_code == 200
    assert 'href="/api/releases/acme/tiny/1.0.0/aibom.spdx.json"' in page.text
    assert 'href="/api/releases/acme/tiny/1.0.0/aibom.cdx.json"' in page.text
    # The generated-block markers are comments for Hub renderers, not text on our page.
    assert "tiergate:generated" not in page.text


def test_release_page_compares_versions(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    one = client.get("/models/acme/tiny").text
    assert "Comparison across versions" not in one  # a single version: nothing to compare
    model = published_release.built.out_dir.parent / "model"
    second = sign_release(model, tmp_path_factory.mktemp("v110") / "out", "acme/tiny", "1.1.0")
    publish(second, client, published_release.publisher)
    page = client.get("/models/acme/tiny/v/1.1.0").text
    assert "Comparison across versions" in page
    for version in ("1.0.0", "1.1.0"):
        assert re.search(
            rf"<td>{re.escape(version)}</td>\s*<td>optimized</td>\s*<td>int8</td>", page
        )
