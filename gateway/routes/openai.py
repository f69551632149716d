"""`/v1/...`: the OpenAI-compatible generation API (completions, chat completions, models).

Every output is watermarked at sampling time and logged; the response's ``tiergate`` object
names the call, its log index and the watermark key id. ``prompt`` may be a list (of texts or
of token-id lists): prompt p's choices are numbered ``p * n + i``, as OpenAI does.
``stream: true`` answers with server-sent events in OpenAI's chunk format (each chunk names
its choice's ``index``), the last chunk carrying ``tiergate``. ``tiergate.content_credentials``
holds each choice's signed C2PA manifest (:mod:`gateway.services.provenance`); with
``c2pa_embed`` it is also appended to the text (docs/provenance.md).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, require_scope
from gateway.errors import GatewayError, ValidationFailed
from gateway.generation.chunks import PieceChunks
from gateway.generation.reasoning import ReasoningSplit
from gateway.generation.sampler import Choice, SamplingParams
from gateway.problems import openai_error_responses
from gateway.schemas.openai import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatMessageOut,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    ScoringInfo,
    TiergateInfo,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from gateway.services.generation import (
    GenerationInput,
    GenerationResult,
    GenerationService,
    Prompt,
    StreamEvent,
)
from gateway.services.models import usable_models
from gateway.services.prompt_scoring import PromptScoring, ScoringResult
from gateway.services.provenance import ChoiceCredential, ProvenanceService, embed_in_text

router = APIRouter(
    prefix="/v1",
    tags=["generation"],
    # 400: context_length_exceeded; 409: the release is yanked, or its tokenizer does not
    # round-trip sampled text (text_detection_unreliable); 502/504: a remote engine failed or
    # timed out; 507: the model is larger than this gateway's whole model-cache budget.
    responses=openai_error_responses(400, 401, 403, 404, 409, 422, 429, 502, 503, 504, 507),
)
Generator = Annotated[Principal, Depends(require_scope("generate"))]
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def get_generation(request: Request) -> GenerationService:
    # async: a plain function dependency would cost a thread-pool round trip per call.
    service: GenerationService = request.app.state.generation
    return service


GenerationDep = Annotated[GenerationService, Depends(get_generation)]


async def get_provenance(request: Request) -> ProvenanceService:
    provenance: ProvenanceService = request.app.state.provenance
    return provenance


ProvenanceDep = Annotated[ProvenanceService, Depends(get_provenance)]


async def get_scoring(request: Request) -> PromptScoring:
    scoring: PromptScoring = request.app.state.scoring
    return scoring


ScoringDep = Annotated[PromptScoring, Depends(get_scoring)]


def _credentials(result: GenerationResult) -> list[ChoiceCredential]:
    """The choices' Content Credentials, signed and stored in the call's log transaction by
    the hook of :meth:`ProvenanceService.log_hook` (over each text as returned)."""
    credentials: list[ChoiceCredential] = result.attached
    return credentials


def _choice_texts(result: GenerationResult) -> list[str]:
    return [c.text for c in result.choices]


def _bounded(service: GenerationService, body: Any, max_tokens: int | None, default: int) -> int:
    settings = service.state.settings
    wanted = max_tokens if max_tokens is not None else min(default, settings.generation_max_tokens)
    if wanted > settings.generation_max_tokens:
        raise ValidationFailed(
            f"max_tokens is at most {settings.generation_max_tokens} on this gateway",
            extra={"param": "max_tokens"},
        )
    if body.n > settings.generation_max_n:
        raise ValidationFailed(
            f"n is at most {settings.generation_max_n} on this gateway", extra={"param": "n"}
        )
    return wanted


def _json(model: CompletionResponse | ChatCompletionResponse) -> Response:
    # Built and validated once here; returning the model would make FastAPI validate and
    # serialize it again through response_model (which still documents the shape).
    return Response(content=model.model_dump_json(), media_type="application/json")


def _tiergate(
    result: GenerationResult, credentials: list[ChoiceCredential], base_url: str
) -> TiergateInfo:
    return TiergateInfo(
        call_id=result.call_id,
        log_index=result.log_index,
        watermark_key_id=result.watermark_key_id,
        payload=result.payloads[0],
        payloads=result.payloads,
        model=result.model,
        content_credentials=[c.to_response(base_url) for c in credentials],
        safety=result.safety,
    )


def _usage(result: GenerationResult) -> Usage:
    return Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )


def _completion_logprobs(choice: Choice, tokenizer: Any) -> CompletionLogprobs | None:
    if choice.logprobs is None:
        return None
    tokens = [tokenizer.decode([t]) for t in choice.token_ids]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return CompletionLogprobs(
        tokens=tokens,
        token_logprobs=choice.logprobs,
        top_logprobs=choice.top_logprobs,
        text_offset=offsets,
    )


def _chat_logprobs(choice: Choice, tokenizer: Any) -> ChatLogprobs | None:
    if choice.logprobs is None:
        return None
    content = []
    for i, (token, logprob) in enumerate(zip(choice.token_ids, choice.logprobs, strict=True)):
        piece = tokenizer.decode([token])
        tops = choice.top_logprobs[i] if choice.top_logprobs else {}
        content.append(
            TokenLogprob(
                token=piece,
                logprob=logprob,
                bytes=list(piece.encode("utf-8")),
                top_logprobs=[TopLogprob(token=t, logprob=v) for t, v in tops.items()],
            )
        )
    return ChatLogprobs(content=content)


def _sse(data: dict[str, Any] | str) -> bytes:
    # orjson: this runs once per streamed piece, and json.dumps was a visible share of it.
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    return b"data: " + payload + b"\n\n"


def _stream_response(
    call_id: str,
    model: str,
    events: AsyncIterator[StreamEvent],
    *,
    chat: bool,
    provenance: ProvenanceService,
    embed: bool,
) -> StreamingResponse:
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"
    # Text pieces, the per-token part of a stream, are written from a per-call template.
    pieces = PieceChunks(call_id=call_id, kind=kind, created=created, model=model, chat=chat)

    def chunk(
        index: int,
        delta: str | None,
        finish: str | None,
        field: str = "content",
        **extra: Any,
    ) -> dict[str, Any]:
        if chat:
            body: dict[str, Any] = {"index": index, "delta": {}, "finish_reason": finish}
            if delta is not None:
                # field: "content", or "reasoning" (vLLM's delta field for a trace).
                body["delta"] = {"role": "assistant", field: delta}
        else:
            body = {"index": index, "text": delta or "", "finish_reason": finish, "logprobs": None}
        return {
            "id": call_id,
            "object": kind,
            "created": created,
            "model": model,
            "choices": [body],
            **extra,
        }

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                if isinstance(event, tuple):
                    yield pieces.piece(event.choice, event.text, event.kind)
                    continue
                # The Content Credentials bind the text as streamed (without any wrapper);
                # asked for, each choice's wrapper follows as one more piece of its text.
                credentials = _credentials(event)
                if embed:
                    for credential in credentials:
                        wrapper = embed_in_text("", credential.store)
                        yield _sse(chunk(credential.choice_index, wrapper, None))
                # One closing chunk per choice (its finish reason); the last one also
                # carries the usage and the call.
                last = len(event.choices) - 1
                for index, choice in enumerate(event.choices):
                    extra: dict[str, Any] = {}
                    if index == last:
                        info = _tiergate(event, credentials, provenance.base_url)
                        extra = {
                            "usage": _usage(event).model_dump(),
                            "tiergate": info.model_dump(),
                        }
                    yield _sse(chunk(index, None if chat else "", choice.finish_reason, **extra))
        except GatewayError as exc:  # after the headers: report in-band, as OpenAI does
            yield _sse({"error": {"message": exc.message, "type": exc.code, "code": exc.code}})
        yield _sse("[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream", headers=_SSE_HEADERS)


def _prompts(service: GenerationService, body: CompletionRequest) -> list[Prompt]:
    prompts = body.prompt_list()
    limit = service.state.settings.generation_max_prompts
    if not prompts:
        raise ValidationFailed("prompt is empty", extra={"param": "prompt"})
    if len(prompts) > limit:
        raise ValidationFailed(
            f"at most {limit} prompts per call on this gateway", extra={"param": "prompt"}
        )
    return prompts


def _echoed(prompt: Prompt, tokenizer: Any) -> str:
    return prompt if isinstance(prompt, str) else str(tokenizer.decode(prompt))


@router.post(
    "/completions",
    summary="Complete a prompt (OpenAI-compatible), watermarked and logged.",
    response_model=CompletionResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_completion(
    body: CompletionRequest,
    principal: Generator,
    service: GenerationDep,
    provenance: ProvenanceDep,
    scoring: ScoringDep,
    now: NowDep,
) -> Any:
    if body.max_tokens == 0:
        return await _score(body, principal, service, scoring, now)
    max_tokens = _bounded(service, body, body.max_tokens, 16)
    prompts = _prompts(service, body)
    request = GenerationInput(
        model=body.model,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_sequences(),
            seed=body.seed,
            logprobs=body.logprobs,
        ),
        n=body.n,
        prompts=prompts,
        endpoint="completions",
        max_tokens_explicit=body.max_tokens is not None,
        metadata=body.metadata,
    )
    if body.stream:
        hook = provenance.log_hook(_choice_texts)
        call_id, model, events = await service.stream(principal, request, now, on_logged=hook)
        return _stream_response(
            call_id, model, events, chat=False, provenance=provenance, embed=body.c2pa_embed
        )

    def returned_texts(result: GenerationResult) -> list[str]:
        echoed = [_echoed(p, result.tokenizer) if body.echo else "" for p in prompts]
        return [echoed[i // body.n] + c.text for i, c in enumerate(result.choices)]

    result = await service.complete(
        principal, request, now, on_logged=provenance.log_hook(returned_texts)
    )
    tokenizer = result.tokenizer
    texts = returned_texts(result)
    credentials = _credentials(result)
    if body.c2pa_embed:
        texts = [embed_in_text(t, c.store) for t, c in zip(texts, credentials, strict=True)]
    return _json(
        CompletionResponse(
            id=result.call_id,
            created=result.created,
            model=result.model,
            choices=[
                CompletionChoice(
                    index=i,
                    text=texts[i],
                    finish_reason=c.finish_reason,
                    logprobs=_completion_logprobs(c, tokenizer),
                )
                for i, c in enumerate(result.choices)
            ],
            usage=_usage(result),
            tiergate=_tiergate(result, credentials, provenance.base_url),
        )
    )


async def _score(
    body: CompletionRequest,
    principal: Principal,
    service: GenerationService,
    scoring: PromptScoring,
    now: Any,
) -> Response:
    """``max_tokens=0``: the prompt's own log-likelihoods (``echo`` and ``logprobs``), the
    request harnesses score multiple choice with; nothing is sampled or watermarked."""
    if not body.echo or body.logprobs is None:
        raise ValidationFailed(
            "max_tokens=0 scores the prompt: send it with echo=true and logprobs (0-5)",
            extra={"param": "max_tokens"},
        )
    if body.stream or body.n != 1:
        raise ValidationFailed(
            "a scoring call (max_tokens=0) has one choice per prompt and is not streamed",
            extra={"param": "n" if body.n != 1 else "stream"},
        )
    prompts = _prompts(service, body)
    result: ScoringResult = await scoring.score(
        principal,
        model=body.model,
        prompts=prompts,
        top_k=body.logprobs,
        metadata=body.metadata,
        now=now,
    )
    tokenizer = result.tokenizer
    choices = []
    for i, (prompt, wire) in enumerate(zip(prompts, result.scored, strict=True)):
        choices.append(
            CompletionChoice(
                index=i,
                text=_echoed(prompt, tokenizer),
                finish_reason="length",
                logprobs=CompletionLogprobs(**wire),
            )
        )
    return _json(
        CompletionResponse(
            id=result.call_id,
            created=result.created,
            model=result.model,
            choices=choices,
            usage=Usage(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=0,
                total_tokens=result.prompt_tokens,
            ),
            tiergate=ScoringInfo(
                call_id=result.call_id,
                log_index=result.log_index,
                model=result.model,
                logprobs_sha256=result.digests,
            ),
        )
    )


@router.post(
    "/chat/completions",
    summary="Chat completion (OpenAI-compatible) with the model's chat template, watermarked.",
    response_model=ChatCompletionResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    principal: Generator,
    service: GenerationDep,
    provenance: ProvenanceDep,
    now: NowDep,
) -> Any:
    max_tokens = _bounded(service, body, body.max_completion_tokens or body.max_tokens, 128)
    request = GenerationInput(
        model=body.model,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_sequences(),
            seed=body.seed,
            logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        ),
        n=body.n,
        messages=[{"role": m.role, "content": m.text()} for m in body.messages],
        endpoint="chat.completions",
        max_tokens_explicit=(body.max_completion_tokens or body.max_tokens) is not None,
        metadata=body.metadata,
    )
    hook = provenance.log_hook(_choice_texts)
    if body.stream:
        call_id, model, events = await service.stream(principal, request, now, on_logged=hook)
        return _stream_response(
            call_id, model, events, chat=True, provenance=provenance, embed=body.c2pa_embed
        )
    result = await service.complete(principal, request, now, on_logged=hook)
    tokenizer = result.tokenizer
    # The Content Credentials bind the whole text (trace and markers included); the message
    # carries the answer in `content` (with the wrapper, asked for) and the trace in
    # `reasoning`, as vLLM does.
    credentials = _credentials(result)
    splits = result.splits or [ReasoningSplit(None, c.text) for c in result.choices]
    texts = [s.answer for s in splits]
    if body.c2pa_embed:
        texts = [embed_in_text(t, c.store) for t, c in zip(texts, credentials, strict=True)]
    return _json(
        ChatCompletionResponse(
            id=result.call_id,
            created=result.created,
            model=result.model,
            choices=[
                ChatChoice(
                    index=i,
                    message=ChatMessageOut(content=texts[i], reasoning=splits[i].reasoning),
                    finish_reason=c.finish_reason,
                    logprobs=_chat_logprobs(c, tokenizer),
                )
                for i, c in enumerate(result.choices)
            ],
            usage=_usage(result),
            tiergate=_tiergate(result, credentials, provenance.base_url),
        )
    )


@router.get(
    "/models",
    summary="Models the caller may generate with (gated tiers only with a live grant).",
    response_model=ModelList,
)
def list_models(session: SessionDep, principal: Generator, now: NowDep) -> ModelList:
    return ModelList(
        data=[
            ModelCard(id=m.id, created=m.created, owned_by=m.owned_by, gated=m.gated)
            for m in usable_models(session, principal, now)
        ]
    )
