"""The release page's content (commands, digests once, access box, yanks) and its helpers."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.links import ReleaseYanked, header_text
from gateway.services.hub import card_metadata
from gateway.services.release_page import card_for_page
from tests.conftest import Account
from tests.gateway.release_fixtures import publish_test_release
from tests.web.conftest import sign_in


def test_release_page_commands_digests_and_yank(
    app: Any,
    engine: Engine,
    client: TestClient,
    make_account: Callable[..., Account],
    web_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    pat = make_account("pat", "publisher", org="acme")
    publish_test_release(app, engine, pat, tmp_path, repo_id="acme/tiny", mode="manual")
    web_account("dev")
    sign_in(client, "dev")
    text = client.get("/models/acme/tiny").text
    assert "tiergate pull acme/tiny@1.0.0 --out tiny-1.0.0" in text
    assert "--revision" not in text
    assert "revision=&#34;1.0.0&#34;" in text or 'revision="1.0.0"' in text
    detail = client.get("/api/releases/acme/tiny/1.0.0").json()
    files = Counter(f["sha256"] for tier in detail["tiers"] for f in tier["files"])
    shown = Counter(re.findall(r"\b[0-9a-f]{64}\b", text))
    for sha256, rows in files.items():  # once per file row (tiers may share a file)
        assert shown[sha256] == rows, f"{sha256} shown {shown[sha256]} times for {rows} file(s)"
    assert "File digests" not in text
    cta = text.index("Request access to the optimized tier")
    assert cta < text.index("model-card"), "the call to action comes before the card"
    assert "reviewed by the publisher" in text

    yanked = client.post(
        "/api/releases/acme/tiny/1.0.0/yank",
        json={"reason": "bad tokenizer\r\nX-Injected: 1"},
        headers=pat.headers,
    )
    assert yanked.status_code == 200, yanked.text
    page = client.get("/models/acme/tiny")  # every version yanked: the newest, with its reason
    assert page.status_code == 200
    assert "bad tokenizer" in page.text
    assert "Request access" not in page.text
    info = client.get("/api/models/acme/tiny")
    assert info.status_code == 410
    assert (
        info.headers["x-error-message"] == "acme/tiny@1.0.0 was yanked: bad tokenizer X-Injected: 1"
    )
    assert "x-injected" not in info.headers


def test_header_text_is_one_printable_ascii_line() -> None:
    assert header_text("défaut\r\nSet-Cookie: a=b\x00 ✓ done") == "defaut Set-Cookie: a=b done"
    assert len(header_text("x" * 10_000)) == 300
    error = ReleaseYanked("acme/tiny@1.0.0 was yanked: é\n")
    assert error.headers == {
        "X-Error-Code": "RevisionNotFound",
        "X-Error-Message": "acme/tiny@1.0.0 was yanked: e",
    }


def test_card_metadata_bounds_and_refuses_yaml_aliases() -> None:
    card = "---\nlicense: mit\npipeline_tag: text-generation\ntags: [a, b]\n---\n# Title\n"
    assert card_metadata(card) == {
        "license": "mit",
        "pipeline_tag": "text-generation",
        "tags": ["a", "b"],
    }
    bomb = "---\na: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n---\n"
    assert card_metadata(bomb) == {}
    assert card_metadata("---\n: [unclosed\n---\n") == {}
    assert card_metadata("---\n- a list\n---\n") == {}
    assert card_metadata("---\nlicense: mit\n" + "#" * 70_000 + "\n---\n") == {}
    assert card_metadata("# no front matter") == {}


def test_card_for_page_drops_only_the_file_digest_section() -> None:
    card = (
        "# T\n## Tiers\nx\n## File digests\n### open\n| a |\n"
        "```\n## not a heading\n```\n## Fidelity\ny\n"
    )
    assert card_for_page(card) == "# T\n## Tiers\nx\n## Fidelity\ny\n"
