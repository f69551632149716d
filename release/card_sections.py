"""Reading and merging model cards: front matter, ``##`` sections, and the generated block.

A card published by tiergate is the publisher's own ``README.md`` (or card template), kept
verbatim, plus one generated block between :data:`GENERATED_BEGIN` and
:data:`GENERATED_END`. Re-building the release replaces only what lies between the markers;
everything outside them is the publisher's and is never rewritten. Front matter is merged key
by key: the keys tiergate writes from signed options win, the publisher's others stay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "GENERATED_BEGIN",
    "GENERATED_END",
    "MAX_FRONT_MATTER_CHARS",
    "card_front_matter",
    "card_section",
    "merge_model_card",
    "publisher_text",
    "split_front_matter",
]

GENERATED_BEGIN = (
    "<!-- tiergate:generated:begin (rewritten on every build; edit outside these markers) -->"
)
GENERATED_END = "<!-- tiergate:generated:end -->"
# Far above any real card's metadata; bounds the YAML parse of publisher-written text.
MAX_FRONT_MATTER_CHARS = 64 * 1024
_H2 = re.compile(r"^##\s+(.*?)\s*#*\s*$")
# Keys whose values are lists that both sides contribute to.
_UNION_KEYS = ("tags",)


def split_front_matter(card: str) -> tuple[str | None, str]:
    """``(front matter text or None, body)``; a card without a closed ``---`` block has none."""
    if not card.startswith("---"):
        return None, card
    lines = card.split("\n")
    if lines[0].strip() != "---":
        return None, card
    size = 0
    for i in range(1, len(lines)):
        size += len(lines[i]) + 1
        if size > MAX_FRONT_MATTER_CHARS:
            return None, card
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :])
    return None, card


def card_front_matter(card: str) -> dict[str, Any]:
    """The card's YAML front matter as a dict; {} when absent, malformed or unsafe.

    YAML aliases are refused: a few bytes of ``&a [*a, *a, ...]`` expand exponentially.
    """
    import yaml  # type: ignore[import-untyped]

    text, _ = split_front_matter(card)
    if not text:
        return {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=loader)):
            return {}
        data = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
        data = json.loads(json.dumps(data, default=str))
    except (yaml.YAMLError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def card_section(card: str, heading: str) -> str:
    """The text under the first ``## heading`` (case-insensitive), up to the next ``##``
    heading or generated-block marker; code fences are skipped when looking for headings."""
    wanted = heading.strip().lower()
    out: list[str] = []
    inside = False
    fenced = False
    for line in split_front_matter(card)[1].split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _H2.match(line)
        if inside and (match is not None or line.strip() in (GENERATED_BEGIN, GENERATED_END)):
            break
        if inside:
            out.append(line)
        elif match is not None and match.group(1).strip().lower() == wanted:
            inside = True
    return "\n".join(out).strip()


def publisher_text(card: str) -> tuple[dict[str, Any], str]:
    """The publisher's part of a card: its front matter and its body without any generated
    block (a card tiergate built before, given back as the next version's README)."""
    meta = card_front_matter(card)
    _, body = split_front_matter(card)
    begin = body.find(GENERATED_BEGIN)
    if begin >= 0:
        end = body.find(GENERATED_END, begin)
        tail = body[end + len(GENERATED_END) :] if end >= 0 else ""
        body = body[:begin] + tail.removeprefix("\n")
    return meta, body


def _merge_meta(publisher: Mapping[str, Any], generated: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(publisher)
    for key, value in generated.items():
        theirs = publisher.get(key)
        if key in _UNION_KEYS and isinstance(theirs, list) and isinstance(value, list):
            merged[key] = list(dict.fromkeys([*value, *theirs]))
        else:
            merged[key] = value
    return merged


def merge_model_card(generated: str, publisher: str | None) -> str:
    """The card to sign: the publisher's text verbatim plus ``generated``'s body between the
    markers, where a previous generated block stood or else at the end; front matter merged.

    ``generated`` is a whole card (front matter + body) as :func:`render_model_card` writes.
    """
    import yaml

    gen_meta = card_front_matter(generated)
    _, gen_body = split_front_matter(generated)
    block = f"{GENERATED_BEGIN}\n\n{gen_body.strip()}\n\n{GENERATED_END}\n"
    if publisher is None or not publisher.strip():
        meta, body, at = gen_meta, "", -1
    else:
        pub_meta, _ = publisher_text(publisher)
        meta = _merge_meta(pub_meta, gen_meta)
        _, body = split_front_matter(publisher)
        at = body.find(GENERATED_BEGIN)
        if at >= 0:
            end = body.find(GENERATED_END, at)
            rest = body[end + len(GENERATED_END) :] if end >= 0 else ""
            body = body[:at] + block + rest.removeprefix("\n")
    if at < 0:
        body = (body.rstrip("\n") + "\n\n" + block) if body.strip() else block
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "---\n" + str(front) + "---\n\n" + body.lstrip("\n")
