"""A small, safe Markdown subset for model cards: every character of the card is escaped.

Model cards come from publishers, so no raw HTML ever passes through: the text is escaped
first and only the markup we generate is trusted. Supported: YAML front matter (shown as a
metadata block), ATX headings, paragraphs, bullet and numbered lists, fenced code, block
quotes, pipe tables, horizontal rules, inline code, bold, italics and http(s) links.
"""

from __future__ import annotations

import re
from html import escape

from markupsafe import Markup

MAX_CARD_CHARS = 1 << 20
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])[*_](?![\s*_])(.+?)(?<![\s*_])[*_](?![\w*])")
_SAFE_URL = re.compile(r"^(https?://|/|#)[^\s\"'<>`]*$", re.IGNORECASE)


def split_front_matter(text: str) -> tuple[str | None, str]:
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() == "---":
                return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :])
    return None, text


def _inline(text: str) -> str:
    """Escape, then apply inline markup; code spans are protected from further rules."""
    spans: list[str] = []

    def keep(html: str) -> str:
        spans.append(html)
        return f"\x00{len(spans) - 1}\x00"

    text = text.replace("\x00", "")
    text = _CODE_SPAN.sub(lambda m: keep(f"<code>{escape(m.group(1))}</code>"), text)

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), m.group(2)
        if not _SAFE_URL.match(url):
            return keep(escape(m.group(0)))
        rel = ' rel="nofollow noopener"' if url.lower().startswith("http") else ""
        return keep(f'<a href="{escape(url)}"{rel}>{escape(label)}</a>')

    text = _LINK.sub(link, text)
    text = escape(text, quote=False)
    text = text.replace("\\|", "|")
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)


def _cells(line: str) -> list[str]:
    row = line.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)]


def _table(lines: list[str]) -> str:
    head = "".join(f'<th scope="col">{_inline(c)}</th>' for c in _cells(lines[0]))
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(line)) + "</tr>"
        for line in lines[2:]
    )
    return (
        f'<div class="table-wrap" tabindex="0"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def render_markdown(text: str, *, heading_offset: int = 1) -> Markup:
    """HTML for ``text``; headings are shifted down so a card never outranks the page's h1."""
    front, body = split_front_matter(text[:MAX_CARD_CHARS].replace("\r\n", "\n"))
    out: list[str] = []
    if front is not None:
        out.append(
            '<details class="front-matter"><summary>Card metadata</summary>'
            f"<pre tabindex='0'><code>{escape(front)}</code></pre></details>"
        )
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            out.append(
                f"<pre tabindex='0'><code>{escape(chr(10).join(lines[i + 1 : j]))}</code></pre>"
            )
            i = j + 1
            continue
        if m := _HEADING.match(line):
            level = min(6, len(m.group(1)) + heading_offset)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
            continue
        if _RULE.match(line):
            out.append("<hr>")
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and "|" in lines[j] and lines[j].strip():
                j += 1
            out.append(_table(lines[i:j]))
            i = j
            continue
        for pattern, tag in ((_BULLET, "ul"), (_NUMBERED, "ol")):
            if pattern.match(line):
                items: list[str] = []
                while i < len(lines) and (m2 := pattern.match(lines[i])):
                    items.append(f"<li>{_inline(m2.group(1))}</li>")
                    i += 1
                out.append(f"<{tag}>{''.join(items)}</{tag}>")
                break
        else:
            if line.lstrip().startswith(">"):
                quote: list[str] = []
                while i < len(lines) and lines[i].lstrip().startswith(">"):
                    quote.append(lines[i].lstrip()[1:].strip())
                    i += 1
                out.append(f"<blockquote><p>{_inline(' '.join(quote))}</p></blockquote>")
                continue
            para: list[str] = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines, i):
                para.append(lines[i].strip())
                i += 1
            if not para:  # a line that starts a block we could not parse: show it as text
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    # Safe by construction: every piece of card text above went through escape().
    return Markup("\n".join(out))  # noqa: S704


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(
        _HEADING.match(line)
        or line.lstrip().startswith(("```", ">"))
        or _BULLET.match(line)
        or _NUMBERED.match(line)
        or _RULE.match(line)
        or ("|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]))
    )
