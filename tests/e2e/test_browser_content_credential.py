"""The detector page shows the Content Credential a pasted text resolves to, and the browser
checks the log proof: the inclusion path AND the checkpoint's Ed25519 signature (WebCrypto)
against the log's published key, saying what it did not check.

Skips cleanly without /usr/bin/chromium or playwright unless TIERGATE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Account, LiveServer
from tests.e2e.browser import (  # noqa: F401 (fixtures)
    PASSWORD,
    Pages,
    database_url,
    sign_in,
    tiergate,
)
from tests.gateway.download_fixtures import publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

pytestmark = pytest.mark.e2e

_STATUS = "document.getElementById('proof-status').dataset.verified"


def test_detector_shows_the_credential_and_checks_the_checkpoint_signature(
    browser: Any,
    live_server: LiveServer,
    app: Any,
    database_url: str,  # noqa: F811
    make_account: Callable[..., Account],
    tmp_path: Path,
    generation_release: Any,  # noqa: F811
) -> None:
    base = live_server.url
    pat = make_account("pat", "publisher", org="acme")
    dev_account = make_account("dev")
    db_env = {"TIERGATE_DATABASE_URL": database_url, "TIERGATE_DATA_DIR": str(tmp_path / "cli")}
    tiergate("admin", "set-password", "dev", "--stdin", env=db_env, stdin=PASSWORD + "\n")
    with httpx.Client(base_url=base, timeout=120) as http:
        publish(generation_release, http, pat)
        made = http.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": "The release gateway", "max_tokens": 120, "seed": 5},
            headers={"Authorization": f"Bearer {dev_account.token}"},
        )
    assert made.status_code == 200, made.text
    body = made.json()
    text = body["choices"][0]["text"]
    (credential,) = body["tiergate"]["content_credentials"]
    app.state.ledger.integrate_now()  # the call is in a signed checkpoint: a proof exists

    ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    sign_in(page, base, "dev")
    page.goto(f"{base}/detect")
    page.get_by_label("Text to check").fill(text)
    page.get_by_role("button", name="Detect").click()
    page.wait_for_selector("#content-credential")
    card = page.locator("#content-credential").inner_text()
    assert f"{MODEL}:open" in card
    assert body["id"] in card
    assert credential["manifest_id"] in card
    assert "byte for byte the signed text" in card
    assert "Content Credentials signer" in card  # who signed: the gateway's C2PA certificate
    assert "Not checked by your browser" in card
    page.wait_for_function(f"() => {_STATUS} !== undefined")
    status = page.locator("#proof-status")
    assert status.get_attribute("data-verified") == "true", status.inner_text()
    assert status.get_attribute("data-signature") == "verified"
    assert "Ed25519 signature verifies" in status.inner_text()
    Pages(None).check(page, "13-detector-credential")
    # A log key whose base64 holds "+" (the separator of the vkey's parts) still parses.
    key = bytes([62] * 32)  # base64 "AT4+Pj4+..."
    vkey = "log+0a0b0c0d+" + base64.b64encode(b"\x01" + key).decode()
    assert "+" in vkey.split("+", 2)[2]
    parsed = page.evaluate(f"() => Array.from(window.tiergateProof.parseVkey('{vkey}').pub)")
    assert bytes(parsed) == key

    # A checkpoint whose signature bytes were altered: the browser now refuses it.
    page.evaluate(
        """() => { const el = document.getElementById('proof-data');
        const d = JSON.parse(el.textContent);
        window.__original = d.checkpoint;
        const at = d.checkpoint.lastIndexOf(' ') + 20;  // past the key id: signature bytes
        const c = d.checkpoint[at] === 'A' ? 'B' : 'A';
        d.checkpoint = d.checkpoint.slice(0, at) + c + d.checkpoint.slice(at + 1);
        el.textContent = JSON.stringify(d); }"""
    )
    page.get_by_role("button", name="Verify again in this browser").click()
    page.wait_for_function(f"() => {_STATUS} === 'false'")
    assert "signature does not verify" in status.inner_text()

    # A key that is not the log's: refused as well, never reported as verified.
    page.evaluate(
        """() => { const el = document.getElementById('proof-data');
        const d = JSON.parse(el.textContent); d.checkpoint = window.__original;
        d.vkey = d.vkey.replace(/\\+[0-9a-f]{8}\\+/, '+00000000+');
        el.textContent = JSON.stringify(d); }"""
    )
    page.get_by_role("button", name="Verify again in this browser").click()
    page.wait_for_function(f"() => {_STATUS} === 'false'")
    assert "no signature by the log key" in status.inner_text()

    # Edited after it was made: still resolved by its watermark, but the page says the hard
    # binding does not cover this text.
    page.goto(f"{base}/detect")
    page.get_by_label("Text to check").fill(text + " (edited)")
    page.get_by_role("button", name="Detect").click()
    page.wait_for_selector("#content-credential")
    assert "not byte for byte the signed text" in page.locator("#content-credential").inner_text()
    ctx.close()
