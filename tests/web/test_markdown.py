"""Model-card rendering: safe on any input, linear in operation counts, and never a stall."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import select

from gateway.web import markdown
from gateway.web.markdown import render_markdown
from tests.conftest import Account, LiveServer
from tests.gateway.release_fixtures import publish_test_release

# Every tag and attribute our renderer may emit; anything else came from the card.
ALLOWED = {
    "a": {"href", "rel"},
    "blockquote": set(),
    "br": set(),
    "code": set(),
    "del": set(),
    "details": {"class"},
    "div": {"class", "tabindex"},
    "em": set(),
    "h2": set(),
    "h3": set(),
    "h4": set(),
    "h5": set(),
    "h6": set(),
    "hr": set(),
    "li": set(),
    "ol": {"start"},
    "p": set(),
    "pre": {"tabindex", "class"},
    "s": set(),
    "strong": set(),
    "summary": set(),
    "table": set(),
    "tbody": set(),
    "td": {"style"},
    "th": {"scope", "style"},
    "thead": set(),
    "tr": set(),
    "ul": set(),
}
SAFE_HREF = ("http://", "https://", "/", "#")
# Markdown's active characters, HTML and URL fragments an attacker would reach for.
PIECES = [
    "[",
    "]",
    "(",
    ")",
    "`",
    "``",
    "*",
    "**",
    "_",
    "~~",
    "!",
    "<",
    ">",
    "&",
    "#",
    "|",
    "-",
    "\\",
    '"',
    "'",
    " ",
    "\n",
    "\n\n",
    "    ",
    "> ",
    "- ",
    "1. ",
    "```",
    "---",
    "a",
    "b",
    "javascript:",
    "JaVaScRiPt:",
    "data:text/html,",
    "vbscript:",
    "http://x",
    "https://y",
    "<script>",
    "</script>",
    "<img src=x onerror=alert(1)>",
    "onclick=",
    "&#106;avascript:",
    "%6a",
    "\x00",
    "\u2028",
]
# The shapes the review found or that break naive parsers, repeated.
ADVERSARIAL_UNITS = ["[a](b", "[", "[[[[a]]]](", "`a``", "*a_", "**a", "_a*", "![a](", "<a", "&#"]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_safe(html: str) -> None:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    for tag, attrs in collector.tags:
        assert tag in ALLOWED, (tag, html)
        for name, value in attrs:
            assert name in ALLOWED[tag], (tag, name, html)
            if name == "href":
                assert value is not None
                assert value.lower().startswith(SAFE_HREF), html
    assert "<script" not in html.lower()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_any_card_renders_to_allowed_tags_and_safe_links_only(pieces: list[str]) -> None:
    assert_safe(str(render_markdown("".join(pieces))))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from([*ADVERSARIAL_UNITS, "[x](javascript:alert(1))", "<script>x</script>"]),
    st.integers(min_value=1, max_value=400),
)
def test_repeated_adversarial_units_stay_safe(unit: str, repeat: int) -> None:
    assert_safe(str(render_markdown(unit * repeat)))


def _token_count(text: str) -> int:
    tokens = markdown.card_tokens(text)
    return len(tokens) + sum(len(t.children or ()) for t in tokens)


def _python_calls(text: str) -> int:
    """Python function calls a parse and render make: a deterministic measure of work."""
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        markdown._render(text, 1)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_render_work_grows_linearly_with_adversarial_input(unit: str) -> None:
    small, large = unit * 500, unit * 2000
    # At most one token per character: output (and render work) proportional to the input.
    assert _token_count(large) <= len(large)
    # 4x the input, at most ~4x the calls (plus slack for constant costs); a quadratic
    # algorithm would make 16x.
    ratio = _python_calls(large) / _python_calls(small)
    assert ratio < 5.0, (unit, ratio)


def test_huge_token_counts_fall_back_to_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(markdown, "MAX_RENDER_TOKENS", 10)
    html = markdown._render("*a* " * 20 + "<b>", 1)
    assert html.startswith("<pre")
    assert "<em>" not in html
    assert "&lt;b&gt;" in html


def test_card_keeps_the_markup_the_templates_expect() -> None:
    card = (
        "---\nlicense: mit\n---\n# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "```\n<x>\n```\n\n[site](https://example.com) [page](/models) [bad](javascript:x)\n"
    )
    html = str(render_markdown(card))
    assert '<details class="front-matter">' in html
    assert "<h2>Title</h2>" in html  # shifted below the page's h1
    assert '<div class="table-wrap" tabindex="0"><table>' in html
    assert '<th scope="col">a</th>' in html
    assert "<pre tabindex='0'><code>&lt;x&gt;" in html
    assert '<a href="https://example.com" rel="nofollow noopener">site</a>' in html
    assert '<a href="/models">page</a>' in html
    assert "[bad](javascript:x)" in html


def test_one_card_is_rendered_once_however_many_viewers() -> None:
    card = "# cached card\n" + "[a](b" * 3000
    before = markdown._CACHE.renders
    threads = [threading.Thread(target=render_markdown, args=(card,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert markdown._CACHE.renders == before + 1


def test_redos_card_does_not_stall_healthz(
    app: Any,
    engine: Engine,
    live_server: LiveServer,
    make_account: Callable[..., Account],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #14.2: ``"[a](b" * N`` made the old regex renderer quadratic, and ``re`` holds
    the GIL, so ``/healthz`` waited for the render to end. Now the render is linear and pure
    Python: health answers while the card is still rendering (an ordering, not a timing)."""
    from gateway.db.engine import session_scope
    from gateway.db.models import Release
    from gateway.web import catalog

    publish_test_release(app, engine, make_account("pat", "publisher", org="acme"), tmp_path)
    with session_scope(engine) as session:
        row = session.exec(select(Release)).one()
        row.model_card = "[a](b" * 60_000  # 300k characters: ~100 s with the old renderer
        session.add(row)
    started, finished = threading.Event(), threading.Event()
    real = catalog.render_markdown

    def observed(text: str) -> Any:
        started.set()
        try:
            return real(text)
        finally:
            finished.set()

    monkeypatch.setattr(catalog, "render_markdown", observed)
    pages: list[httpx.Response] = []
    viewer = threading.Thread(
        target=lambda: pages.append(httpx.get(f"{live_server.url}/models/acme/tiny", timeout=600))
    )
    viewer.start()
    assert started.wait(timeout=120)
    health = httpx.get(f"{live_server.url}/healthz", timeout=600)
    still_rendering = not finished.is_set()
    viewer.join(timeout=600)
    assert health.status_code == 200
    assert still_rendering, "/healthz only answered once the card was rendered"
    assert pages
    assert pages[0].status_code == 200
    assert "[a](b[a](b" in pages[0].text
