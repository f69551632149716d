"""The web interface in a real browser (Debian's Chromium, driven by Playwright).

Skips cleanly when /usr/bin/chromium or playwright is missing, unless
TIERGATE_REQUIRE_BROWSER=1 (CI) makes that a failure. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Account, LiveServer
from tests.e2e.browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    PASSWORD,
    Pages,
    axe_source,
    database_url,
    sign_in,
    tiergate,
)
from tests.gateway.download_fixtures import publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

pytestmark = pytest.mark.e2e


def test_browser_journey(
    browser: Any,
    live_server: LiveServer,
    app: Any,
    engine: Engine,
    database_url: str,  # noqa: F811
    make_account: Callable[..., Account],
    tmp_path: Path,
    generation_release: Any,  # noqa: F811
) -> None:
    base = live_server.url
    pat = make_account("pat", "publisher", org="acme")
    make_account("dev")
    db_env = {"TIERGATE_DATABASE_URL": database_url, "TIERGATE_DATA_DIR": str(tmp_path / "cli")}
    for user in ("pat", "dev"):
        tiergate("admin", "set-password", user, "--stdin", env=db_env, stdin=PASSWORD + "\n")
    with httpx.Client(base_url=base, timeout=60) as http:
        publish(generation_release, http, pat)  # manual review of the optimized tier
    pages = Pages(axe_source())

    dev_ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    dev_ctx.set_default_timeout(10_000)
    dev = dev_ctx.new_page()
    dev.goto(f"{base}/login")
    pages.check(dev, "01-sign-in")
    sign_in(dev, base, "dev")
    pages.check(dev, "02-catalog")
    dev.get_by_role("link", name="acme/chatty").click()
    dev.wait_for_url(f"{base}/models/acme/chatty")
    assert dev.get_by_text("tiergate pull acme/chatty").first.is_visible()
    pages.check(dev, "03-release")

    # Keys and tokens: the key pair is made by the CLI; only the public half is pasted.
    key = tmp_path / "dev.pem"
    tiergate("keys", "generate", "--out", str(key), env={})
    dev.goto(f"{base}/account")
    dev.get_by_label("Public key (PEM)").fill((tmp_path / "dev.pub.pem").read_text())
    dev.get_by_role("button", name="Register key").click()
    dev.wait_for_url(f"{base}/account?done=key-registered")
    dev.get_by_label("Token name").fill("cli")
    dev.get_by_role("button", name="Create token").click()
    token = dev.get_by_label("API token", exact=True).input_value()
    assert token.startswith("tg_")
    pages.check(dev, "04-tokens-and-keys")

    dev.goto(f"{base}/models/acme/chatty")
    dev.get_by_role("link", name="Request access to the optimized tier").click()
    assert dev.get_by_text("Be kind.").is_visible()
    pages.check(dev, "05-request-access")
    # The attestation is signed on the developer's machine by the CLI, as the page says.
    out = tiergate(
        "access",
        "request",
        "acme/chatty@1.0.0",
        "--tier",
        "optimized",
        "--key",
        str(key),
        "--yes",
        env={"TIERGATE_GATEWAY": base, "TIERGATE_TOKEN": token},
    )
    assert "pending" in out
    dev.goto(f"{base}/access")
    assert dev.locator(".badge.pending").first.is_visible()

    pub_ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    pub_ctx.set_default_timeout(10_000)
    publisher = pub_ctx.new_page()
    sign_in(publisher, base, "pat")
    publisher.goto(f"{base}/review")
    assert publisher.get_by_text("dev → acme/chatty 1.0.0 (optimized)").is_visible()
    pages.check(publisher, "06-review")
    publisher.get_by_role("button", name="Approve #1").click()
    publisher.wait_for_url(f"{base}/review?done=approved")

    dev.reload()
    assert dev.locator(".badge.active").first.is_visible()
    pages.check(dev, "07-my-access")

    # Generate watermarked text with the developer's token, then paste it into the detector.
    made = httpx.post(
        f"{base}/v1/completions",
        json={"model": MODEL, "prompt": "The release gateway", "max_tokens": 120},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    assert made.status_code == 200, made.text
    dev.goto(f"{base}/detect")
    dev.get_by_label("Text to check").fill(made.json()["choices"][0]["text"])
    dev.get_by_role("button", name="Detect").click()
    dev.wait_for_selector(".verdict")
    assert dev.locator(".verdict").inner_text().startswith("watermarked")
    assert dev.locator(".tokens .tok-green").count() > 10
    assert made.json()["id"] in dev.locator("section").last.inner_text()
    assert dev.get_by_role("link", name="download receipt").is_visible()
    pages.check(dev, "08-detector")

    app.state.ledger.integrate_now()
    dev.goto(f"{base}/transparency?action=attestation.submitted")
    pages.check(dev, "09-log")
    dev.locator("table a[href^='/transparency/entries/']").first.click()
    dev.wait_for_selector("#proof-status[data-verified]")
    assert dev.locator("#proof-status").get_attribute("data-verified") == "true"
    assert "Verified in your browser" in dev.locator("#proof-status").inner_text()
    pages.check(dev, "10-log-entry-proof")

    # Tampering with the data the page verifies makes the browser check fail.
    dev.evaluate(
        """() => { const el = document.getElementById('proof-data');
        const d = JSON.parse(el.textContent); d.entry = d.entry.replace('optimized', 'open');
        el.textContent = JSON.stringify(d); }"""
    )
    dev.get_by_role("button", name="Verify again in this browser").click()
    dev.wait_for_function(
        "() => document.getElementById('proof-status').dataset.verified === 'false'"
    )

    phone = browser.new_context(bypass_csp=True, viewport={"width": 375, "height": 740})
    small = phone.new_page()
    for name, path in (("11-phone-catalog", "/"), ("12-phone-release", "/models/acme/chatty")):
        small.goto(base + path)
        pages.check(small, name)
    for ctx in (dev_ctx, pub_ctx, phone):
        ctx.close()
    (ARTIFACTS / "journey.json").write_text(json.dumps({"axe": pages.axe is not None}))
