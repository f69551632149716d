"""Paged listings: `/api/releases` and the Hub's `/api/models`, walked by their `Link` headers
with httpx, huggingface_hub's `list_models` and `tiergate release list`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from gateway.cli.main import cli
from tests.conftest import Account, LiveServer
from tests.gateway.release_fixtures import publish_test_release
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]

# (repo, version, published?) across two orgs; one pending release of each org.
CATALOG = [
    ("acme/alpha", "1.0.0", True),
    ("acme/alpha", "1.1.0", True),
    ("acme/beta", "1.0.0", True),
    ("acme/gamma", "0.1.0", False),
    ("zeta/Tiny-Chat", "2.0.0", True),
    ("zeta/hidden", "0.0.1", False),
]


@pytest.fixture
def catalog(
    app: Any, engine: Engine, make_account: MakeAccount, tmp_path: Path
) -> dict[str, Account]:
    accounts = {
        "acme": make_account("acme-pub", "publisher", org="acme"),
        "zeta": make_account("zeta-pub", "publisher", org="zeta"),
        "dev": make_account("dev"),
    }
    for repo_id, version, published in CATALOG:
        publish_test_release(
            app,
            engine,
            accounts[repo_id.split("/")[0]],
            tmp_path,
            repo_id=repo_id,
            version=version,
            publish=published,
        )
    return accounts


def _walk(base: str, path: str, headers: dict[str, str], **params: Any) -> list[list[str]]:
    """Every page's refs, following Link headers the way any RFC 8288 client does."""
    pages = []
    with httpx.Client(base_url=base, headers=headers) as client:
        url: str | None = path
        query: dict[str, Any] | None = params
        while url is not None:
            response = client.get(url, params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append([f"{r['repo_id']}@{r['version']}" for r in body])
            url, query = response.links.get("next", {}).get("url"), None
            assert len(pages) < 20
    return pages


def test_releases_are_paged_with_link_headers(
    catalog: dict[str, Account], live_server: LiveServer
) -> None:
    dev = catalog["dev"].headers
    pages = _walk(live_server.url, "/api/releases", dev, limit=2)
    assert [len(p) for p in pages] == [2, 2]  # 4 visible, no empty trailing page
    flat = [ref for page in pages for ref in page]
    assert flat == [
        "acme/alpha@1.0.0",
        "acme/alpha@1.1.0",
        "acme/beta@1.0.0",
        "zeta/Tiny-Chat@2.0.0",
    ]
    # Each org sees its own pending release and no one else's, in the same walk.
    acme_pages = _walk(live_server.url, "/api/releases", catalog["acme"].headers, limit=1)
    acme = [ref for page in acme_pages for ref in page]
    assert "acme/gamma@0.1.0" in acme
    assert "zeta/hidden@0.0.1" not in acme
    anonymous = [r for p in _walk(live_server.url, "/api/releases", {}, limit=3) for r in p]
    assert anonymous == flat


def test_release_filters_and_bad_parameters(catalog: dict[str, Account], client: Any) -> None:
    body = client.get("/api/releases", params={"author": "acme"}).json()
    assert {r["repo_id"] for r in body} == {"acme/alpha", "acme/beta"}
    body = client.get("/api/releases", params={"search": "tiny"}).json()
    assert [r["repo_id"] for r in body] == ["zeta/Tiny-Chat"]  # case-insensitive substring
    body = client.get("/api/releases", params={"search": "%"}).json()
    assert body == []  # LIKE wildcards are matched literally
    assert_problem(
        client.get("/api/releases", params={"cursor": "garbage!"}), 422, "invalid_cursor"
    )
    assert_problem(client.get("/api/releases", params={"cursor": "WzFd"}), 422, "invalid_cursor")
    assert client.get("/api/releases", params={"limit": 0}).status_code == 422
    assert client.get("/api/releases", params={"limit": 1001}).status_code == 422


def test_hub_list_models(catalog: dict[str, Account], client: Any) -> None:
    first = client.get("/api/models", params={"limit": 2})
    assert [m["id"] for m in first.json()] == ["acme/alpha", "acme/beta"]
    assert 'rel="next"' in first.headers["link"]
    nxt = client.get(first.links["next"]["url"])
    assert [m["id"] for m in nxt.json()] == ["zeta/Tiny-Chat"]
    assert "link" not in nxt.headers
    model = first.json()[0]
    assert model["tiergate"]["version"] == "1.1.0"  # the latest published version
    assert model["siblings"] == []
    full = client.get("/api/models", params={"author": "acme", "full": "true"}).json()
    assert all(m["siblings"] for m in full)


HF_SCRIPT = r"""
import json, sys
from huggingface_hub import HfApi
api = HfApi(endpoint=sys.argv[1], token=False)
print(json.dumps({
    "all": [m.id for m in api.list_models()],
    "acme": [m.id for m in api.list_models(author="acme")],
    "search": [m.id for m in api.list_models(search="tiny")],
    "limit": [m.id for m in api.list_models(limit=1)],
    "full": [len(m.siblings or []) for m in api.list_models(author="zeta", full=True)],
}))
"""


def test_huggingface_hub_list_models_walks_our_pages(
    catalog: dict[str, Account], live_server: LiveServer, tmp_path: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", HF_SCRIPT, live_server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["all"] == ["acme/alpha", "acme/beta", "zeta/Tiny-Chat"]
    assert result["acme"] == ["acme/alpha", "acme/beta"]
    assert result["search"] == ["zeta/Tiny-Chat"]
    assert result["limit"] == ["acme/alpha"]
    assert result["full"][0] > 0


def test_cli_release_list_follows_pages(
    catalog: dict[str, Account], live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.cli.release_publish.LIST_PAGE_SIZE", 1)  # 4 pages
    runner = CliRunner()
    args = ["release", "list", "--gateway", live_server.url, "--token", catalog["dev"].token]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == [
        "acme/alpha@1.0.0",
        "acme/alpha@1.1.0",
        "acme/beta@1.0.0",
        "zeta/Tiny-Chat@2.0.0",
    ]
    limited = runner.invoke(cli, [*args, "--limit", "1", "--json"])
    assert limited.exit_code == 0, limited.output
    assert [json.loads(line)["repo_id"] for line in limited.output.splitlines()] == ["acme/alpha"]
    filtered = runner.invoke(cli, [*args, "--author", "zeta"])
    assert [line.split()[0] for line in filtered.output.splitlines()] == ["zeta/Tiny-Chat@2.0.0"]
    nothing = runner.invoke(cli, [*args, "--search", "no-such-model"])
    assert nothing.output.strip() == "no releases"
