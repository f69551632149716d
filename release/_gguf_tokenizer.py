"""The tokenizer of a GGUF export: ``tokenizer.json`` read as GGUF's ``gpt2`` tokenizer
(byte-level BPE with GPT-2's split), refused when llama.cpp would tokenize differently, and
written as ``tokenizer.ggml.*`` metadata with the chat template (``release.gguf_export``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from release.errors import UnsupportedTokenizerError
from release.safetensors_check import MAX_JSON_FILE_BYTES

__all__ = ["read_tokenizer", "write_tokenizer_metadata"]

_TOKEN_NORMAL, _TOKEN_CONTROL, _TOKEN_USER, _TOKEN_UNUSED = 1, 3, 4, 5


@dataclass(frozen=True)
class _Tokenizer:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special: Mapping[str, int]  # bos/eos/unk/pad -> id
    add_bos: bool
    chat_template: str | None


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_JSON_FILE_BYTES:
        raise UnsupportedTokenizerError(f"{path.name}: too large")
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedTokenizerError(f"{path.name}: not readable JSON: {exc}") from None


def _is_byte_level(component: Any) -> bool:
    if not isinstance(component, dict):
        return False
    if component.get("type") == "ByteLevel":
        return component.get("use_regex", True) is True and not component.get("add_prefix_space")
    return False


def _prepends_special(post: Any) -> bool:
    """Whether the post-processor puts a special token (BOS) before a single sequence."""
    if not isinstance(post, dict) or post.get("type") != "TemplateProcessing":
        return False
    single = post.get("single")
    return isinstance(single, list) and bool(single) and "SpecialToken" in (single[0] or {})


def read_tokenizer(src: Path, vocab_size: int) -> _Tokenizer:
    """The tokenizer as GGUF metadata, or :class:`UnsupportedTokenizerError` when GGUF's
    ``gpt2`` tokenizer (byte-level BPE with GPT-2's split) would tokenize differently."""
    path = src / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedTokenizerError(
            "GGUF export needs a tokenizer.json (fast tokenizer) to embed the tokenizer"
        )
    doc = _read_json(path)
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise UnsupportedTokenizerError(
            f"GGUF export supports byte-level BPE tokenizers; this one is {kind!r}"
        )
    decoder = doc.get("decoder")
    decodes_bytes = isinstance(decoder, dict) and decoder.get("type") == "ByteLevel"
    if not _is_byte_level(doc.get("pre_tokenizer")) or not decodes_bytes:
        raise UnsupportedTokenizerError(
            "GGUF export supports GPT-2 byte-level pre-tokenization (ByteLevel with its regex, "
            "no prefix space); llama.cpp would split this tokenizer's text differently"
        )
    if doc.get("normalizer") is not None:
        raise UnsupportedTokenizerError(
            "GGUF's byte-level BPE has no normalizer; this tokenizer normalizes its input"
        )
    if model.get("byte_fallback") or model.get("continuing_subword_prefix"):
        raise UnsupportedTokenizerError("GGUF's byte-level BPE has no byte fallback or prefixes")
    vocab = model.get("vocab")
    merges = model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise UnsupportedTokenizerError("tokenizer.json has no BPE vocab or merges")
    added = [a for a in doc.get("added_tokens") or [] if isinstance(a, dict)]
    size = max([vocab_size, *(int(i) + 1 for i in vocab.values())])
    size = max([size, *(int(a.get("id", 0)) + 1 for a in added)])
    if size > vocab_size:
        raise UnsupportedTokenizerError(
            f"the tokenizer has ids up to {size - 1}, past the model's {vocab_size} embeddings"
        )
    # llama.cpp needs one token per embedding row: rows no token uses are named placeholders.
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [_TOKEN_UNUSED] * vocab_size
    for token, index in vocab.items():
        tokens[int(index)], types[int(index)] = token, _TOKEN_NORMAL
    for entry in added:
        index = int(entry["id"])
        tokens[index] = str(entry["content"])
        types[index] = _TOKEN_CONTROL if entry.get("special") else _TOKEN_USER
    merge_lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
    config: dict[str, Any] = {}
    if (src / "tokenizer_config.json").is_file():
        loaded = _read_json(src / "tokenizer_config.json")
        config = loaded if isinstance(loaded, dict) else {}
    template = config.get("chat_template")
    if template is None and (src / "chat_template.jinja").is_file():
        template = (src / "chat_template.jinja").read_text("utf-8")
    ids = {token: i for i, token in enumerate(tokens)}
    special: dict[str, int] = {}
    for key in ("bos", "eos", "unk", "pad"):
        value = config.get(f"{key}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in ids:
            special[key] = ids[value]
    add_bos = bool(config.get("add_bos_token", False)) or _prepends_special(
        doc.get("post_processor")
    )
    template = template if isinstance(template, str) else None
    return _Tokenizer(tokens, types, merge_lines, special, add_bos, template)


def write_tokenizer_metadata(writer: Any, tok: _Tokenizer) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tok.tokens)
    writer.add_token_types(tok.types)
    writer.add_token_merges(tok.merges)
    setters: dict[str, Callable[[int], None]] = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for key, value in tok.special.items():
        setters[key](value)
    writer.add_add_bos_token(tok.add_bos)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)
