"""Ollama's side of a Modelfile, written from its specs for tests (Ollama is not installable
here): the Modelfile syntax (docs/modelfile.md: ``# comment``, ``INSTRUCTION arguments``,
case-insensitive instructions, ``"..."`` and multi-line ``\"\"\"...\"\"\"`` values, repeated
``PARAMETER stop``) and the subset of Go's ``text/template`` that chat templates use
(pkg.go.dev/text/template: text and ``{{ }}`` actions with ``-`` trim markers; ``if`` /
``else if`` / ``else`` / ``end``, ``range $i, $x := ...``, variables, fields, string and
integer literals, parenthesised pipelines; the functions ``eq ne and or not len slice
index``), rendered over Ollama's ``.Messages`` (Role, Content) and ``.System``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INSTRUCTIONS = {"from", "template", "system", "parameter", "adapter", "license", "message"}


@dataclass(frozen=True)
class Modelfile:
    commands: tuple[tuple[str, str], ...]  # (instruction or parameter name, value)

    def one(self, name: str) -> str | None:
        values = [v for n, v in self.commands if n == name]
        assert len(values) <= 1, f"{name} given {len(values)} times"
        return values[0] if values else None

    def parameters(self, name: str) -> list[str]:
        return [v for n, v in self.commands if n == f"parameter:{name}"]


def _value(text: str, pos: int) -> tuple[str, int]:
    """One argument starting at ``pos``: triple-quoted (may span lines), quoted, or bare."""
    if text.startswith('"""', pos):
        end = text.find('"""', pos + 3)
        if end < 0:
            raise ValueError("unterminated triple-quoted value")
        # A value may end in a quote: the closing delimiter is the last three of the run.
        while text.startswith('"', end + 3):
            end += 1
        return text[pos + 3 : end], end + 3
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end < 0 else line_end
    raw = text[pos:line_end].strip()
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise ValueError(f"unterminated quoted value: {raw!r}")
        raw = raw[1:-1]
    return raw, line_end


def parse_modelfile(text: str) -> Modelfile:
    commands: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos] in " \t\r\n":
            pos += 1
            continue
        if text[pos] == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
            continue
        match = re.compile(r"([A-Za-z]+)[ \t]+").match(text, pos)
        if match is None or match.group(1).lower() not in INSTRUCTIONS:
            raise ValueError(f"not an instruction at {text[pos : pos + 20]!r}")
        name, pos = match.group(1).lower(), match.end()
        if name == "parameter":
            param = re.compile(r"([A-Za-z0-9_]+)[ \t]+").match(text, pos)
            if param is None:
                raise ValueError("PARAMETER without a name")
            name, pos = f"parameter:{param.group(1)}", param.end()
        value, pos = _value(text, pos)
        commands.append((name, value))
    if not any(n == "from" for n, _ in commands):
        raise ValueError("no FROM line")
    return Modelfile(tuple(commands))


# --- Go text/template (the subset chat templates use) ---

_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|(-?\d+)|(:=|,)|([$.\w]+))')


def _lex_action(body: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(body.rstrip()):
        match = _TOKEN.match(body, pos)
        if match is None:
            raise ValueError(f"cannot read action {body!r} at {pos}")
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tokens


def _split_template(source: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", body) parts, with ``{{-``/``-}}`` trimming applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = source.find("{{", pos)
        if start < 0:
            parts.append(("text", source[pos:]))
            return parts
        end = source.find("}}", start)
        if end < 0:
            raise ValueError("unclosed action")
        text, body = source[pos:start], source[start + 2 : end]
        if body.startswith("- "):
            text, body = text.rstrip(" \t\r\n"), body[2:]
        parts.append(("text", text))
        pos = end + 2
        if body.endswith(" -"):
            body = body[:-2]
            while pos < len(source) and source[pos] in " \t\r\n":
                pos += 1
        parts.append(("action", body.strip()))


@dataclass
class _Node:
    kind: str  # text, print, assign, if, range
    args: Any = None
    body: list[_Node] | None = None
    orelse: list[_Node] | None = None


def _parse(parts: list[tuple[str, str]], pos: int, stop: set[str]) -> tuple[list[_Node], int]:
    nodes: list[_Node] = []
    while pos < len(parts):
        kind, value = parts[pos]
        if kind == "text":
            nodes.append(_Node("text", value))
            pos += 1
            continue
        tokens = _lex_action(value)
        head = tokens[0] if tokens else ""
        if head in stop:
            return nodes, pos
        if head == "if":
            node, pos = _parse_if(parts, pos, tokens[1:])
            nodes.append(node)
        elif head == "range":
            split = tokens.index(":=") if ":=" in tokens else 0
            variables = [t for t in tokens[1:split] if t != ","]
            body, pos = _parse(parts, pos + 1, {"end"})
            nodes.append(_Node("range", (variables, tokens[split + 1 :]), body))
            pos += 1
        elif len(tokens) > 2 and tokens[1] == ":=":
            nodes.append(_Node("assign", (tokens[0], tokens[2:])))
            pos += 1
        else:
            nodes.append(_Node("print", tokens))
            pos += 1
    if stop:
        raise ValueError(f"missing {stop}")
    return nodes, pos


def _parse_if(parts: list[tuple[str, str]], pos: int, cond: list[str]) -> tuple[_Node, int]:
    body, pos = _parse(parts, pos + 1, {"else", "end"})
    tokens = _lex_action(parts[pos][1])
    if tokens[0] == "end":
        return _Node("if", cond, body, []), pos + 1
    if len(tokens) > 1 and tokens[1] == "if":
        nested, pos = _parse_if(parts, pos, tokens[2:])
        return _Node("if", cond, body, [nested]), pos
    orelse, pos = _parse(parts, pos + 1, {"end"})
    return _Node("if", cond, body, orelse), pos + 1


def _truth(value: Any) -> bool:
    return bool(value)


class _Scope:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise ValueError(f"undefined variable {name}")


def _field(value: Any, path: Sequence[str]) -> Any:
    for name in path:
        if name:
            value = value[name] if isinstance(value, Mapping) else getattr(value, name)
    return value


_FUNCTIONS = {
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truth(a),
    "len": len,
    "slice": lambda x, *i: x[i[0] : i[1]] if len(i) == 2 else x[i[0] :] if i else x,
    "index": lambda x, *i: x[i[0]] if len(i) == 1 else x[i[0]][i[1]],
}


def _operand(tokens: list[str], pos: int, dot: Any, scope: _Scope) -> tuple[Any, int]:
    token = tokens[pos]
    if token == "(":
        depth, end = 1, pos + 1
        while depth:
            depth += {"(": 1, ")": -1}.get(tokens[end], 0)
            end += 1
        return _pipeline(tokens[pos + 1 : end - 1], dot, scope), end
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape"), pos + 1
    if re.fullmatch(r"-?\d+", token):
        return int(token), pos + 1
    if token.startswith("$"):
        name, _, rest = token.partition(".")
        return _field(scope.get(name), rest.split(".") if rest else []), pos + 1
    if token.startswith("."):
        return _field(dot, token[1:].split(".")), pos + 1
    raise ValueError(f"unexpected {token!r}")


def _pipeline(tokens: list[str], dot: Any, scope: _Scope) -> Any:
    head = tokens[0]
    if head in ("and", "or") or head in _FUNCTIONS:
        args: list[Any] = []
        pos = 1
        while pos < len(tokens):
            value, pos = _operand(tokens, pos, dot, scope)
            args.append(value)
        if head == "and":
            return next((a for a in args if not _truth(a)), args[-1])
        if head == "or":
            return next((a for a in args if _truth(a)), args[-1])
        return _FUNCTIONS[head](*args)
    value, end = _operand(tokens, 0, dot, scope)
    if end != len(tokens):
        raise ValueError(f"unsupported pipeline {tokens}")
    return value


def _run(nodes: list[_Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.args)
        elif node.kind == "print":
            out.append(str(_pipeline(node.args, dot, scope)))
        elif node.kind == "assign":
            scope.frames[-1][node.args[0]] = _pipeline(node.args[1], dot, scope)
        elif node.kind == "if":
            branch = node.body if _truth(_pipeline(node.args, dot, scope)) else node.orelse
            scope.frames.append({})
            _run(branch or [], dot, scope, out)
            scope.frames.pop()
        elif node.kind == "range":
            variables, pipeline = node.args
            for index, item in enumerate(_pipeline(pipeline, dot, scope)):
                values = (index, item) if len(variables) == 2 else (item,)
                frame = dict(zip(variables, values[: len(variables)], strict=True))
                scope.frames.append(frame)
                _run(node.body or [], item, scope, out)
                scope.frames.pop()


def render_go_template(source: str, data: Mapping[str, Any]) -> str:
    nodes, _ = _parse(_split_template(source), 0, set())
    out: list[str] = []
    _run(nodes, data, _Scope(data), out)
    return "".join(out)


def ollama_prompt(template: str, messages: Sequence[Mapping[str, str]], system: str = "") -> str:
    """What Ollama renders for a chat: ``.Messages`` (the Modelfile's SYSTEM first when the
    chat has no system message) and ``.System``."""
    chat = [dict(m) for m in messages]
    if system and not any(m["role"] == "system" for m in chat):
        chat.insert(0, {"role": "system", "content": system})
    data = {
        "Messages": [{"Role": m["role"], "Content": m["content"]} for m in chat],
        "System": "\n\n".join(m["content"] for m in chat if m["role"] == "system"),
    }
    return render_go_template(template, data)
