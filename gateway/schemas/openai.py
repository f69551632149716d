"""HTTP shapes of the OpenAI-compatible API (completions, chat, models) and of detection.

Request models ignore fields they do not know (clients send ``user``, ``stream_options``,
...); responses add one extension object, ``tiergate``, which the ``openai`` client keeps
as an extra attribute.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictInt

MAX_TEXT_CHARS = 200_000


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=200, description="ORG/NAME[@VERSION][:tier]; tier 'open' default")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    metadata: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
            Field(max_length=16),
        ]
        | None
    ) = Field(
        default=None,
        description="Up to 16 key-value pairs (OpenAI's limits: keys 64, values 512 "
        "characters), logged with the call in its generation.completed entry. Evaluation runs "
        "name themselves here (tiergate_eval_run, tiergate_eval_doc); never put secrets in it.",
    )
    c2pa_embed: bool = Field(
        default=False,
        description="tiergate extension: also embed each choice's C2PA Content Credential in "
        "its text (C2PA text wrapper: invisible Unicode variation selectors). Off by default: "
        "it changes the text. The credential is always in `tiergate.content_credentials`.",
    )

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        items = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s[:64] for s in items[:4] if s)


MAX_PROMPTS = 1024
MAX_PROMPT_TOKEN_IDS = 65536
TokenIds = Annotated[list[StrictInt], Field(max_length=MAX_PROMPT_TOKEN_IDS)]


class CompletionRequest(_Request):
    prompt: (
        str
        | Annotated[list[str], Field(max_length=MAX_PROMPTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(max_length=MAX_PROMPTS)]
    ) = Field(
        default="",
        description="A prompt, a list of prompts, token ids, or a list of token-id lists; "
        "prompt p's choices are numbered p * n + i.",
    )
    # 0 with echo and logprobs: score the prompt only (nothing sampled), as vLLM serves it.
    max_tokens: int | None = Field(default=None, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False

    def prompt_list(self) -> list[str | list[int]]:
        """Every prompt of the request, in order: text, or token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        prompts: list[str | list[int]] = []
        ids: list[int] = []  # a flat list of ints is one prompt of token ids
        for item in self.prompt:
            if isinstance(item, int):
                ids.append(item)
            else:
                prompts.append(item if isinstance(item, str) else list(item))
        return [ids] if ids else prompts


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(part.get("text", "")) for part in self.content if isinstance(part, dict))


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=5)


class TiergateInfo(BaseModel):
    """Where this output is recorded; the watermark key's id, never the key."""

    call_id: str
    log_index: int | None
    watermark_key_id: str
    payload: int = Field(description="Call tag (watermark payload) of choice 0.")
    payloads: list[int] = Field(description="Call tag of each choice, by index.")
    model: str = Field(description="The resolved model: ORG/NAME@VERSION:tier.")
    content_credentials: list[dict[str, Any]] = Field(
        default_factory=list,
        description="One C2PA Content Credential per choice, by index: the signed manifest "
        "store (base64, application/c2pa), its id, the text's sha256 and the soft binding.",
    )
    safety: list[dict[str, Any]] | None = Field(
        default=None,
        description="The release's safety policy: each choice's verdict, by index, as the "
        "call's log entry records it (categories, scores, action applied, sha256 of each "
        "removed span; docs/safety.md). Null when the release has no policy.",
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    # Null for an echoed prompt's first token (it has no context), as vLLM answers.
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int]


class ScoringInfo(BaseModel):
    """A scoring call (``echo`` with ``logprobs`` and ``max_tokens=0``): where it is logged and
    the digest of each prompt's logprobs as the log holds it. Nothing was sampled, so nothing
    is watermarked and no Content Credential is made."""

    call_id: str
    log_index: int
    model: str = Field(description="The resolved model: ORG/NAME@VERSION:tier.")
    watermarked: Literal[False] = False
    logprobs_sha256: list[str] = Field(
        description="Per prompt, sha256 of its scored tokens in canonical JSON "
        "(docs/evaluations.md); the generation.scored entry logs the same digests."
    )


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    tiergate: TiergateInfo | ScoringInfo


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning: str | None = Field(
        default=None,
        description="The model's reasoning trace (its `<think>` block, markers from the "
        "release), apart from the answer in `content`; vLLM's field name. Null when the "
        "model wrote none. Its sha256 is logged as the choice's `reasoning_sha256`.",
    )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: str | None
    logprobs: ChatLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    tiergate: TiergateInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    gated: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class VllmGumbelParams(BaseModel):
    """vLLM's built-in watermark (``--watermark-config``): its key and public parameters."""

    model_config = ConfigDict(extra="forbid")

    key: SecretStr = Field(
        min_length=1,
        max_length=24,
        description="The integer vLLM was started with (`--watermark-config` `key`), decimal "
        "or 0x hex. Used for this one check: never stored, logged or echoed.",
    )
    context_width: int = Field(default=4, ge=1, le=64, description="vLLM's `context_width`.")
    deduplicate_contexts: bool = Field(
        default=True, description="Score each context once (vLLM's detector default)."
    )
    algorithm: Literal["gumbel"] = "gumbel"


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheme: Literal["tg-kgw-v1", "vllm-gumbel"] = Field(
        default="tg-kgw-v1",
        description="`tg-kgw-v1`: this gateway's watermark (keys it holds, call attribution). "
        "`vllm-gumbel`: vLLM's own Gumbel-max watermark, with `vllm_gumbel` giving its key.",
    )
    vllm_gumbel: VllmGumbelParams | None = Field(
        default=None,
        description="With scheme `vllm-gumbel`: the key to test. Without it, the keys "
        "publishers registered (`POST /api/watermark/keys/vllm`) are tried. Refused with "
        "`tg-kgw-v1`.",
    )

    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT_CHARS)
    token_ids: list[int] | None = Field(default=None, min_length=1, max_length=65536)
    model: str | None = Field(
        default=None, max_length=200, description="ORG/NAME[@VERSION][:tier] to test only it."
    )
    alpha: float = Field(default=1e-6, gt=0.0, lt=0.5, description="Verdict threshold on p.")


class TokenSpan(BaseModel):
    start: int | None = Field(description="Character offset in the text (null for token ids).")
    end: int | None
    token_index: int
    kind: Literal["green", "red", "skip"]
    text: str | None = None


class CallAttribution(BaseModel):
    call_id: str
    choice_index: int
    log_index: int
    time: str
    model: str
    payload: int
    p_value: float = Field(description="Exact per-call test: the text carries this call's tag.")
    requester: str | None = Field(description="Only for those who may read the log entry.")
    inclusion_proof: dict[str, Any] | None = Field(
        description="Against the latest signed checkpoint (null until integrated)."
    )


class TokenizationTrust(BaseModel):
    trusted: bool = Field(description="False when any of `reasons` holds.")
    text_roundtrip: bool = Field(description="decode(encode(text)) == text.")
    ids_roundtrip: bool = Field(description="The text's token ids survive decode then encode.")
    unknown_rate: float
    byte_fallback_rate: float
    candidates_disagree: bool = Field(description="Another tokenization of the text differs.")
    replacement_chars: int = Field(description="U+FFFD in the text (bytes lost in decoding).")
    reasons: list[str]


class PublishedRoundTrip(BaseModel):
    model: str
    text_detection: str = Field(
        description="From the signed release statement: reliable, unreliable, override, "
        "or unknown (published before it was measured)."
    )
    roundtrip_rate: float | None


class TokenizationReport(BaseModel):
    """How text was turned into token ids, and how far that reading can be trusted."""

    input: Literal["text", "token_ids"]
    scored_with: str | None = Field(
        description="The candidate tokenization the reported statistics come from."
    )
    candidates: list[str] = Field(description="Every tokenization scored (plain first).")
    corrected_for_candidates: int = Field(
        description="The p-value is multiplied by this (Bonferroni over the candidates); "
        "it is part of `tests_corrected_for`."
    )
    trust: TokenizationTrust | None
    published: list[PublishedRoundTrip] = Field(default_factory=list)
    matches_logged_output: bool | None = Field(
        default=None,
        description="The text's sha256 equals the attributed call's logged output digest "
        "(null: no attribution). It proves the text is byte-identical to that output; the "
        "log holds no token ids, so it cannot confirm which tokenization was sampled.",
    )


class DetectResponse(BaseModel):
    verdict: Literal["watermarked", "not_watermarked", "inconclusive"]
    confidence: str = Field(description="high / medium / low, with the reason in `notes`.")
    watermarked: bool
    z_score: float
    p_value: float = Field(description="Corrected for every key and call tag tried.")
    log10_p_value: float
    raw_p_value: float = Field(description="The best single test, before correction.")
    tokens_total: int
    tokens_scored: int
    green_fraction: float
    model: str | None
    watermark_key_id: str | None
    keys_tried: int
    tests_corrected_for: int
    payload: int | None = Field(description="Decoded call tag, when its check code is valid.")
    window: dict[str, Any] | None = Field(
        description="Best window of a scan, when the text looks mixed with unwatermarked text."
    )
    spans: list[TokenSpan]
    attribution: CallAttribution | None
    ambiguous: list[CallAttribution] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    scheme: str = Field(default="tg-kgw-v1", description="The scheme tested.")
    score: float | None = Field(
        default=None,
        description="vllm-gumbel: the statistic sum of -ln(1 - r) over scored tokens "
        "(Gamma(n, 1) without the watermark); `green_fraction` is then the share with r >= 1/2.",
    )
    tokenization: TokenizationReport | None = None
