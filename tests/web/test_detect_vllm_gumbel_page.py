"""The detector page with vLLM's Gumbel watermark: the real service, the key never re-rendered."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import generation_release  # noqa: F401
from tests.gateway.test_detect_vllm_gumbel import whole_word_text
from tests.web.conftest import csrf_of, sign_in
from watermark.vllm_gumbel import GumbelKey

KEY = "13579246801357924680"[:19]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_vllm_gumbel_text_is_detected_on_the_page(
    generation_release: BuiltRelease,  # noqa: F811
    client: TestClient,
    web_account: Callable[..., Account],
) -> None:
    from transformers import AutoTokenizer

    publisher = web_account("pat", "publisher", org="acme")
    publish(generation_release, client, publisher)  # type: ignore[arg-type]
    web_account("dev")
    sign_in(client, "dev")
    tokenizer = AutoTokenizer.from_pretrained(str(generation_release.out_dir / "open"))
    text = whole_word_text(tokenizer, GumbelKey(int(KEY)))

    def form(key: str, **more: str) -> dict[str, str]:
        return {
            "text": text,
            "model": "acme/chatty",
            "scheme": "vllm-gumbel",
            "vllm_key": key,
            "context_width": "4",
            "csrf_token": csrf_of(client.get("/detect").text),
            **more,
        }

    page = client.post("/detect", data=form(KEY))
    assert page.status_code == 200, page.text
    html = page.text
    assert '<p class="verdict">watermarked <span' in html
    assert "vLLM Gumbel-max" in html
    assert 'value="vllm-gumbel" checked' in html
    assert "carries no payload" in html
    assert KEY not in html  # the key field comes back empty
    # The marks are explained in the scheme's own terms (r, not a green list).
    assert "r &ge; 1/2</span>" in html
    assert "(adds at least ln 2 to the score)" in html

    wrong = client.post("/detect", data=form(str(int(KEY) + 1)))
    assert wrong.status_code == 200
    assert '<p class="verdict">watermarked <span' not in wrong.text
    assert '<p class="verdict">' in wrong.text

    bad = client.post("/detect", data=form(KEY + "q"))
    assert bad.status_code == 422
    assert 'role="alert"' in bad.text
    assert KEY not in bad.text
    unregistered = client.post("/detect", data=form(""))  # no key, none registered
    assert unregistered.status_code == 200
    assert "no vLLM watermark key is registered" in unregistered.text
    nomodel = client.post("/detect", data=form(KEY, model=""))
    assert nomodel.status_code == 422
    assert "needs `model`" in nomodel.text
