"""Model cards as safe HTML, in linear time: markdown-it-py with raw HTML off, and our link rules.

Model cards come from publishers, so no raw HTML ever passes through: markdown-it's ``html``
option is off (tags in the card are shown as text), links and autolinks must be http(s),
site-relative or fragments (anything else stays text), and images are not rendered (a card
must not make viewers' browsers fetch third-party URLs). Supported: YAML front matter (shown
as a metadata block), CommonMark, pipe tables and strikethrough.

Why a maintained parser rather than our own regexes: the hand-written renderer this module
replaced had a link pattern that backtracked quadratically (``"[a](b" * N``: 48 s for 200k
characters, and since ``re`` holds the GIL, the whole process stalled meanwhile). markdown-it
follows the CommonMark reference algorithms, which are linear on the spec's pathological
inputs (``bench/markdown_render.py`` measures ours; figures in ``docs/benchmarks.md``), and
being pure Python it lets other threads run while it works.

What one page render may cost is bounded three ways: the card is cut at
:data:`MAX_CARD_CHARS`; a parse yielding more than :data:`MAX_RENDER_TOKENS` tokens is shown
as escaped plain text instead; and rendered cards are cached by content digest, one render
per card at a time, so reloading a page (or many viewers at once) renders it once.
Callers are synchronous page handlers, which FastAPI runs in its threadpool, never on the
event loop.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

__all__ = [
    "MAX_CARD_CHARS",
    "MAX_RENDER_TOKENS",
    "card_tokens",
    "render_markdown",
    "split_front_matter",
]

MAX_CARD_CHARS = 1 << 20
# A 1 MiB card of dense markup parses to ~600k tokens (one per two characters, measured on
# the adversarial inputs of tests/web/test_markdown.py); prose is far below. Past this the
# card is shown as plain text: still readable, and its HTML stays about the size of the card.
MAX_RENDER_TOKENS = 1_000_000
_CACHE_ENTRIES = 16
_SAFE_SCHEMES = ("http://", "https://")


class _CardMarkdown(MarkdownIt):
    """CommonMark + tables + strikethrough; no raw HTML, no images, only safe link targets."""

    def __init__(self) -> None:
        super().__init__(
            "commonmark",
            # maxNesting bounds the recursion of nested blocks (quotes in lists in quotes...).
            {"html": False, "linkify": False, "typographer": False, "maxNesting": 20},
        )
        self.enable(["table", "strikethrough"])
        self.disable("image")
        self.add_render_rule("table_open", _table_open)
        self.add_render_rule("table_close", _table_close)
        self.add_render_rule("fence", _code)
        self.add_render_rule("code_block", _code)

    def validateLink(self, url: str) -> bool:
        """Only http(s), site-relative and fragment links; javascript:, data: etc. stay text."""
        lowered = url.lower()
        return lowered.startswith((*_SAFE_SCHEMES, "/", "#")) and not any(
            c in url for c in " \t\n\"'<>`"
        )


def _table_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return '<div class="table-wrap" tabindex="0"><table>\n'


def _table_close(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return "</table></div>\n"


def _code(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return f"<pre tabindex='0'><code>{escape(tokens[idx].content)}</code></pre>\n"


_PARSER = _CardMarkdown()


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(YAML front matter or None, the rest) of a card; one pass over its lines."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() == "---":
                return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :])
    return None, text


def card_tokens(body: str) -> list[Token]:
    """markdown-it's block tokens for ``body`` (the tests count them to check linearity)."""
    return _PARSER.parse(body)


def _adjust(tokens: list[Token], heading_offset: int) -> None:
    """Shift headings, mark table headers and outbound links: one pass over the tokens."""
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1:]) + heading_offset)}"
        elif token.type == "th_open":
            token.attrSet("scope", "col")
        elif token.type == "inline" and token.children:
            for child in token.children:
                if child.type == "link_open":
                    href = str(child.attrGet("href") or "")
                    if href.lower().startswith(_SAFE_SCHEMES):
                        child.attrSet("rel", "nofollow noopener")


def _render_body(body: str, heading_offset: int) -> str:
    tokens = _PARSER.parse(body)
    count = len(tokens) + sum(len(t.children or ()) for t in tokens)
    if count > MAX_RENDER_TOKENS:
        return f"<pre tabindex='0' class='card-text'>{escape(body)}</pre>"
    _adjust(tokens, heading_offset)
    html: str = _PARSER.renderer.render(tokens, _PARSER.options, {})
    return html


def _render(text: str, heading_offset: int) -> str:
    front, body = split_front_matter(text[:MAX_CARD_CHARS].replace("\r\n", "\n"))
    out: list[str] = []
    if front is not None:
        out.append(
            '<details class="front-matter"><summary>Card metadata</summary>'
            f"<pre tabindex='0'><code>{escape(front)}</code></pre></details>"
        )
    out.append(_render_body(body, heading_offset))
    return "\n".join(out)


class _RenderCache:
    """Rendered cards by digest; concurrent requests for one card wait for a single render."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.renders = 0
        self._done: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering: dict[str, threading.Lock] = {}

    def get(self, text: str, heading_offset: int) -> str:
        key = hashlib.sha256(f"{heading_offset}\x00{text}".encode()).hexdigest()
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            one = self._rendering.setdefault(key, threading.Lock())
        with one:
            with self._lock:
                if key in self._done:
                    return self._done[key]
            html = _render(text, heading_offset)
            with self._lock:
                self.renders += 1
                self._done[key] = html
                while len(self._done) > self.entries:
                    self._done.popitem(last=False)
                self._rendering.pop(key, None)
            return html


_CACHE = _RenderCache(_CACHE_ENTRIES)


def render_markdown(text: str, *, heading_offset: int = 1) -> Markup:
    """HTML for ``text``; headings are shifted down so a card never outranks the page's h1.

    Blocking (up to a few seconds for a 1 MiB card of dense markup): call it from a thread,
    as FastAPI does for synchronous handlers, not from a coroutine.
    """
    # Safe by construction: markdown-it escapes all card text (html=False) and our rules
    # escape what they emit.
    return Markup(_CACHE.get(text, heading_offset))  # noqa: S704
