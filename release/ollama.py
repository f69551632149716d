"""The Ollama ``Modelfile`` of a GGUF artifact: its chat template as an Ollama ``TEMPLATE``.

Ollama reads the weights from the GGUF file but formats chats with a Go ``text/template``
over ``.Messages``, not with the Jinja template the file embeds. The card therefore gives a
Modelfile whose ``TEMPLATE`` is the Go equivalent of the embedded template, and whose
``PARAMETER stop`` lines end a reply where the template ends a turn.

A Jinja template is a program; translating it in general is not possible. What is
translated is the common shape: ``prefix + each message as role_prefix + content +
role_suffix + generation prompt``. The pieces are found by rendering the template (through
transformers' own renderer, as ``apply_chat_template`` does) on conversations with marker
contents, and the result is checked by rendering both on further conversations: only a
template that the shape reproduces exactly is translated; any other gets no ``TEMPLATE``
line and a comment saying so (Ollama then uses its own choice), never a wrong one.

Ollama's tokenizer adds the BOS token itself when the GGUF says so (``add_bos_token``), so a
leading BOS in the Jinja template is dropped from the Go one in that case. A template the
Modelfile syntax cannot carry (``\"\"\"`` inside, control characters) is not translated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OllamaChat",
    "chat_from_gguf",
    "chat_from_template",
    "render_modelfile",
]

_ROLES = ("system", "user", "assistant")
# Marker contents: plain words, so a template that trims or strips content leaves them whole.
_M = ("TGMARKSYSZQ", "TGMARKUSRAZQ", "TGMARKASTAZQ", "TGMARKUSRBZQ")
# Conversations the translation must reproduce exactly (ending on user, as Ollama chats do).
_PROBES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "Hello there."),),
    (("system", "Be brief."), ("user", "Name a tier.")),
    (("user", "one"), ("assistant", "two"), ("user", "three")),
    (
        ("system", "S"),
        ("user", "a b"),
        ("assistant", "c\nd"),
        ("user", "e"),
        ("assistant", "f"),
        ("user", "g"),
    ),
    (("user", "  spaced content \n"),),
)


@dataclass(frozen=True)
class OllamaChat:
    """What the Modelfile says besides ``FROM``: the Go ``template`` (``None`` when the GGUF's
    chat template could not be translated; ``reason`` then says why) and the ``stop``
    strings."""

    template: str | None
    stops: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class _Shape:
    head: str
    prefix: Mapping[str, str]
    suffix: Mapping[str, str]
    generation: str

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        """What the Go template renders (continuing a final assistant message, as Ollama
        does: no end-of-turn after it)."""
        out = [self.head]
        for i, (role, content) in enumerate(messages):
            last = i == len(messages) - 1
            out.append(self.prefix[role] + content)
            if role != "assistant" or not last:
                out.append(self.suffix[role])
            if last and role != "assistant":
                out.append(self.generation)
        return "".join(out)


def _go_text(text: str) -> str:
    # Text outside actions is copied verbatim by text/template except the left delimiter.
    return '{{ "{{" }}'.join(text.split("{{"))


def _go_template(shape: _Shape) -> str:
    p, s = shape.prefix, shape.suffix
    return (
        _go_text(shape.head)
        + "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        + '{{ if eq .Role "system" }}'
        + _go_text(p["system"])
        + "{{ .Content }}"
        + _go_text(s["system"])
        + '{{ else if eq .Role "user" }}'
        + _go_text(p["user"])
        + "{{ .Content }}"
        + _go_text(s["user"])
        + '{{ else if eq .Role "assistant" }}'
        + _go_text(p["assistant"])
        + "{{ .Content }}{{ if not $last }}"
        + _go_text(s["assistant"])
        + "{{ end }}{{ end }}"
        + '{{ if and $last (ne .Role "assistant") }}'
        + _go_text(shape.generation)
        + "{{ end }}{{ end }}"
    )


class _Untranslatable(Exception):
    pass


def _split(text: str, marker: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise _Untranslatable("the template does not copy message contents verbatim")
    before, after = text.split(marker)
    return before, after


def _strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise _Untranslatable("the template does not render messages independently")
    return text[len(prefix) :]


def _strip_suffix(text: str, suffix: str) -> str:
    if not text.endswith(suffix):
        raise _Untranslatable("the template does not render messages independently")
    return text[: len(text) - len(suffix)]


def _shape(render: Any) -> _Shape:
    """The pieces of the template, from renders with marker contents."""
    sys_, u1, a1, u2 = _M
    only_user = render((("user", u1),), False)
    head_u, su = _split(only_user, u1)
    generation = _strip_prefix(render((("user", u1),), True), only_user)
    pa, sa = _split(_strip_prefix(render((("user", u1), ("assistant", a1)), False), only_user), a1)
    turns = render((("user", u1), ("assistant", a1), ("user", u2)), False)
    middle = _split(_split(turns, a1)[1], u2)
    pu = _strip_prefix(middle[0], sa)
    if middle[1] != su:
        raise _Untranslatable("the template renders the last user message differently")
    head = _strip_suffix(head_u, pu)
    with_system = render((("system", sys_), ("user", u1)), False)
    head_s, after_s = _split(with_system, sys_)
    ps = _strip_prefix(head_s, head)
    ss = _strip_suffix(_split(after_s, u1)[0], pu)
    return _Shape(
        head,
        {"system": ps, "user": pu, "assistant": pa},
        {"system": ss, "user": su, "assistant": sa},
        generation,
    )


def _modelfile_safe(text: str) -> bool:
    # Ollama's parser ends a triple-quoted value at the first '"""' and drops control
    # characters other than tab and newlines; the card shows the Modelfile in a ``` fence.
    printable = all(c.isprintable() or c in "\t\r\n" for c in text)
    return printable and '"""' not in text and "```" not in text


def chat_from_template(
    chat_template: str | None, *, bos_token: str = "", eos_token: str = "", add_bos: bool = False
) -> OllamaChat:
    """Translate a Hugging Face (Jinja) chat template to an Ollama TEMPLATE and stops."""
    if not chat_template:
        return OllamaChat(None, (eos_token,) if eos_token else (), "the GGUF has no chat template")
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(messages: Sequence[tuple[str, str]], generation: bool) -> str:
        chat = [{"role": r, "content": c} for r, c in messages]
        try:
            # Annotated as str, it returns (renders, generation indices).
            result: Any = render_jinja_template(
                conversations=[chat],
                chat_template=chat_template,
                add_generation_prompt=generation,
                bos_token=bos_token,
                eos_token=eos_token,
            )
        except Exception as exc:  # a template's own errors (raise_exception, type errors...)
            raise _Untranslatable(f"the template fails on a plain conversation ({exc})") from None
        return str(result[0][0])

    try:
        shape = _shape(render)
        for probe in _PROBES:
            if shape.render(probe) != render(probe, True):
                raise _Untranslatable("the template is not a plain concatenation of messages")
    except _Untranslatable as exc:
        return OllamaChat(None, (eos_token,) if eos_token else (), str(exc))
    if add_bos and bos_token and shape.head.startswith(bos_token):
        shape = _Shape(shape.head[len(bos_token) :], shape.prefix, shape.suffix, shape.generation)
    template = _go_template(shape)
    if not _modelfile_safe(template):
        return OllamaChat(None, (), "the template holds text a Modelfile cannot quote")
    # End a reply where the template ends an assistant turn or starts the next user turn.
    candidates = (shape.suffix["assistant"].strip(), shape.prefix["user"].strip(), eos_token)
    stops = tuple(dict.fromkeys(s for s in candidates if s and '"' not in s and _modelfile_safe(s)))
    return OllamaChat(template, stops)


def chat_from_gguf(path: str | os.PathLike[str]) -> OllamaChat:
    """The Ollama chat settings for a GGUF file, from the metadata Ollama reads itself."""
    import gguf

    reader = gguf.GGUFReader(os.fspath(path))

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    tokens = value("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        index = value(key)
        return str(tokens[index]) if isinstance(index, int) and 0 <= index < len(tokens) else ""

    template = value("tokenizer.chat_template")
    return chat_from_template(
        template if isinstance(template, str) else None,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        add_bos=bool(value("tokenizer.ggml.add_bos_token")),
    )


def render_modelfile(model_path: str, chat: OllamaChat | None) -> str:
    """The Modelfile text: ``FROM`` the GGUF file, then the template and stops."""
    lines = [f"FROM {model_path}"]
    if chat is not None and chat.template is not None:
        lines.append(f'TEMPLATE """{chat.template}"""')
    elif chat is not None and chat.reason:
        reason = " ".join(chat.reason.split())[:300]  # one comment line
        lines.append(f"# No TEMPLATE: {reason}; Ollama picks its own.")
    for stop in chat.stops if chat is not None else ():
        lines.append(f'PARAMETER stop "{stop}"')
    return "\n".join(lines)
