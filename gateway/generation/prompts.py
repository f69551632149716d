"""Prompts as the client sent them, encoded for the model: token ids, digests for the log, bounds.

A completions call carries one or more prompts (text, or token ids of the model's own
tokenizer); a chat call one conversation, rendered with the tokenizer's chat template. Each
prompt's sha256 is taken over what was sent, so an auditor holding the request can match
the log entry without the tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest, ValidationFailed
from gateway.ledger.events import digest_of
from licensing.canonical import canonical_json

__all__ = [
    "ContextLengthExceeded",
    "EncodedPrompts",
    "NoChatTemplate",
    "Prompt",
    "PromptTooLong",
    "encode_prompts",
    "fit_context",
]

Prompt = str | list[int]  # text, or token ids of the model's tokenizer


class NoChatTemplate(ValidationFailed):
    code = "no_chat_template"
    title = "Model has no chat template"


class PromptTooLong(ValidationFailed):
    code = "prompt_too_long"
    title = "Prompt too long"


class ContextLengthExceeded(BadRequest):
    """Prompt plus completion would run past the model's context (OpenAI's code and status):
    a model asked for positions it was never trained on answers garbage, so no engine does."""

    code = "context_length_exceeded"
    title = "Context length exceeded"


@dataclass(frozen=True)
class EncodedPrompts:
    prompts: list[list[int]]  # token ids of each prompt, in order
    digests: list[str]  # sha256 of each prompt as sent

    @property
    def digest(self) -> str:
        """One prompt: its digest; several: the digest of the canonical list of theirs."""
        if len(self.digests) == 1:
            return self.digests[0]
        return digest_of(canonical_json(self.digests))

    @property
    def tokens(self) -> int:
        return sum(len(p) for p in self.prompts)


def encode_prompts(
    tokenizer: Any,
    *,
    model: str,
    vocab_size: int,
    prompts: list[Prompt] | None = None,
    messages: list[dict[str, Any]] | None = None,
    max_prompt_tokens: int | None = None,
) -> EncodedPrompts:
    """Token ids and digests of a call's prompts (``messages``: one chat conversation).

    Text is sha256'd as UTF-8, token ids as their compact JSON array (``[464,245]``), chat
    messages as sorted-key JSON. An empty prompt starts from the beginning-of-text token.
    """
    if messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise NoChatTemplate(f"{model} has no chat template; use /v1/completions with a prompt")
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding anyway
            ids = ids["input_ids"]
        digest = digest_of(json.dumps(messages, sort_keys=True, ensure_ascii=False))
        encoded = EncodedPrompts([[int(i) for i in ids]], [digest])
    else:
        all_ids: list[list[int]] = []
        digests: list[str] = []
        for index, prompt in enumerate(prompts or [""]):
            if isinstance(prompt, str):
                ids = [int(i) for i in tokenizer(prompt, add_special_tokens=True)["input_ids"]]
                digests.append(digest_of(prompt))
            else:
                ids = _checked_ids(prompt, vocab_size, index)
                digests.append(digest_of(json.dumps(ids, separators=(",", ":"))))
            if not ids:
                start = tokenizer.bos_token_id
                ids = [start if start is not None else tokenizer.eos_token_id]
            all_ids.append(ids)
        encoded = EncodedPrompts(all_ids, digests)
    if max_prompt_tokens is not None:
        for index, ids in enumerate(encoded.prompts):
            if len(ids) > max_prompt_tokens:
                which = f"prompt {index}" if len(encoded.prompts) > 1 else "the prompt"
                raise PromptTooLong(
                    f"{which} has {len(ids)} tokens; at most {max_prompt_tokens} are accepted"
                )
    return encoded


def fit_context(
    encoded: EncodedPrompts,
    max_tokens: int,
    *,
    context_length: int | None,
    explicit: bool,
    model: str,
) -> int:
    """The completion budget of a call on a model of ``context_length`` positions.

    A prompt that leaves no room, or an explicit ``max_tokens`` that does not fit after the
    longest prompt, is :class:`ContextLengthExceeded`; a default ``max_tokens`` (the client
    sent none) shrinks to the room left, as vLLM and OpenAI do.
    """
    if context_length is None:
        return max_tokens
    longest = max(len(ids) for ids in encoded.prompts)
    room = context_length - longest
    if room < 1 or (explicit and max_tokens > room):
        raise ContextLengthExceeded(
            f"{model}'s maximum context length is {context_length} tokens; you requested "
            f"{longest + max_tokens} tokens ({longest} in the prompt, {max_tokens} for the "
            "completion). Shorten the prompt or lower max_tokens.",
            extra={"param": "max_tokens" if room >= 1 else "prompt"},
        )
    return min(max_tokens, room)


def _checked_ids(ids: list[int], vocab_size: int, index: int) -> list[int]:
    for token in ids:
        if not 0 <= token < vocab_size:
            raise ValidationFailed(
                f"prompt {index} has token id {token}, outside the model's vocabulary "
                f"(0..{vocab_size - 1})",
                extra={"param": "prompt"},
            )
    return list(ids)
