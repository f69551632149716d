"""In a browser: a logged call's safety verdicts on the log entry view and on the detector,
and each token's explanation on hover and keyboard focus (issue 19, item 3).

Two ways in: an entry recorded directly, whose category names, reasons and a logprob
alternative carry ``<script>``; and a real call of a release with a safety policy, whose
failing check's reason carries it, attributed by the detector from the generated text.
Either must show as text with no script run. CSP is bypassed on purpose, so an unescaped
value would execute rather than be stopped by the policy.

Skips cleanly without /usr/bin/chromium or playwright unless TIERGATE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from gateway.services import detection
from safety.findings import Finding, ScanContext
from safety.policy import parse_policy
from tests.conftest import Account, LiveServer
from tests.e2e.browser import Pages, axe_source, database_url, sign_in  # noqa: F401 (fixtures)
from tests.gateway.download_fixtures import publish, sign_release
from tests.gateway.generation_fixtures import REPO_ID, build_generation_release
from tests.safety.fakes import TermCheck
from tests.web.conftest import set_password
from tests.web.explain_fixtures import (
    ATTACK,
    REMOVED,
    attributed,
    generation_fields,
    log_generation,
)

pytestmark = pytest.mark.e2e

# Injected markup would show up as a script element in the page (and its alert as a dialog).
_NO_SCRIPT_RAN = (
    "() => document.querySelectorAll('main script:not([type=\"application/json\"])').length"
)


def test_verdicts_and_token_explanations_are_readable_and_escaped(
    browser: Any,
    live_server: LiveServer,
    app: Any,
    engine: Engine,
    make_account: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = live_server.url
    make_account("dev")
    set_password(engine, "dev")
    index = log_generation(engine, "dev", generation_fields())
    app.state.ledger.integrate_now()
    # The server runs in this process: the detector names the logged call.
    monkeypatch.setattr(detection, "detect_text", lambda *a, **k: attributed(index))

    ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, base, "dev")

    page.goto(f"{base}/transparency/entries/{index}")
    section = page.locator("#call-explained")
    shown = section.inner_text()
    assert ATTACK in shown  # as text, readable
    assert REMOVED in shown
    assert "redact" in shown
    assert "guard" in shown
    assert page.locator("#call-explained .safety-categories .badge").count() == 2
    assert section.locator("a", has_text="detector").get_attribute("href") == (
        "/detect?model=acme/chatty"
    )
    assert page.evaluate(_NO_SCRIPT_RAN) == 0
    Pages(axe_source()).check(page, "20-log-entry-explained")

    page.goto(f"{base}/detect")
    page.get_by_label("Text to check").fill("Hello world!")
    page.get_by_label("Token logprobs you received").fill(
        json.dumps(
            {
                "content": [
                    {
                        "token": "Hello",
                        "logprob": -0.25,
                        "top_logprobs": [{"token": ATTACK, "logprob": -3}],
                    },
                    {"token": " world", "logprob": -1.5, "top_logprobs": []},
                ]
            }
        )
    )
    page.get_by_role("button", name="Detect").click()
    page.wait_for_selector("#call-safety")
    assert ATTACK in page.locator("#call-safety").inner_text()
    explain = page.locator("#token-explain")
    page.locator('[data-token="0"]').focus()  # keyboard
    assert "token 0: green-list token" in explain.inner_text()
    assert "logprob -0.250" in explain.inner_text()
    assert ATTACK in explain.inner_text()  # an alternative, as text
    page.keyboard.press("ArrowRight")  # one tab stop; arrows move between tokens
    assert page.evaluate("() => document.activeElement.dataset.token") == "1"
    assert "token 1: red" in explain.inner_text()
    assert page.locator('[data-token="0"]').get_attribute("tabindex") == "-1"
    page.locator('[data-token="2"]').hover()  # pointer
    assert "token 2: not scored" in explain.inner_text()
    assert page.locator("details.logprobs").inner_text().count(ATTACK) == 1
    Pages(axe_source()).check(page, "21-detector-explained")

    assert dialogs == []
    assert page.evaluate(_NO_SCRIPT_RAN) == 0
    ctx.close()


# Open: a check that fails lets the text through (so the detector can find it) and says so.
OPEN_ANNOTATE = {
    "checks": ["wordlist", "classifier"],
    "rules": {"*": {"action": "annotate"}},
    "hold_back_chars": 8,
    "on_check_failure": "open",
}


class ScriptRaisingCheck:
    """A classifier whose failure message is markup: the reason lands in the log entry."""

    name = "classifier"
    categories = frozenset({"hate"})

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        raise RuntimeError(ATTACK)


def test_a_real_call_with_a_policy_shows_its_verdict_on_both_pages(
    browser: Any,
    live_server: LiveServer,
    app: Any,
    engine: Engine,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    base = live_server.url
    built = sign_release(
        build_generation_release().out_dir.parent / "model",
        tmp_path / "out",
        REPO_ID,
        "1.4.0",
        safety_policy=parse_policy(OPEN_ANNOTATE),
    )
    pat = make_account("pat", "publisher", org="acme")
    dev = make_account("dev")
    set_password(engine, "dev")
    checks = {"wordlist": TermCheck({"e": "profanity"}), "classifier": ScriptRaisingCheck()}
    app.state.generation.safety.check_factory = checks.__getitem__
    with httpx.Client(base_url=base, timeout=120) as http:
        publish(built, http, pat)
        made = http.post(
            "/v1/completions",
            json={
                "model": f"{REPO_ID}@1.4.0",
                "prompt": "The release gateway",
                "max_tokens": 120,
                "seed": 5,
            },
            headers=dev.headers,
        )
    assert made.status_code == 200, made.text
    text = made.json()["choices"][0]["text"]
    index = made.json()["tiergate"]["log_index"]
    app.state.ledger.integrate_now()

    ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, base, "dev")

    page.goto(f"{base}/transparency/entries/{index}")
    failed = page.locator("#call-explained .failed-checks").inner_text()
    assert f"classifier: RuntimeError: {ATTACK}" in failed
    assert "profanity" in page.locator("#call-explained .safety-categories").inner_text()
    assert "applied annotate" in page.locator("#call-explained").inner_text()
    assert page.evaluate(_NO_SCRIPT_RAN) == 0

    page.goto(f"{base}/detect")
    page.get_by_label("Text to check").fill(text)
    page.get_by_role("button", name="Detect").click()
    page.wait_for_selector("#call-safety")
    verdict = page.locator("#call-safety").inner_text()
    assert "profanity" in verdict
    assert ATTACK in verdict
    assert "only available to the caller at call time" in page.locator("main").inner_text()
    page.locator(".tokens [data-token]").first.focus()
    assert page.locator("#token-explain").inner_text().startswith("token ")
    Pages(axe_source()).check(page, "22-detector-policy-call")
    assert dialogs == []
    assert page.evaluate(_NO_SCRIPT_RAN) == 0
    ctx.close()
