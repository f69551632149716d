"""Detection of vLLM's built-in Gumbel-max watermark (scheme ``vllm-gumbel``) for the gateway.

The caller brings the key vLLM was started with (``--watermark-config``): the gateway holds
no vLLM keys, so this is the offline check run by the gateway, logged like every detection.
The key is used for this one call: it is never stored, never part of a log entry or a log
line, and never echoed in a response or an error. The scheme has no payload, so there is no
call to attribute: the verdict ties the text to the key only.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import ReleaseStatus
from gateway.errors import ValidationFailed
from gateway.generation.models import parse_model_name
from gateway.ledger.events import Actor, digest_of, record_event
from gateway.schemas.openai import DetectResponse, TokenSpan, VllmGumbelParams
from gateway.services.models import resolve_model
from watermark.detector import tokenize
from watermark.errors import WatermarkKeyError
from watermark.vllm_gumbel import GUMBEL_SCHEME, GumbelConfig, GumbelDetection, GumbelKey
from watermark.vllm_gumbel import detect as detect_gumbel

__all__ = ["GUMBEL_SCHEME", "detect_vllm_gumbel"]

NO_PAYLOAD_NOTE = (
    "vLLM's Gumbel watermark carries no payload: a positive verdict ties the text to the key "
    "(the deployment that used it), not to one call"
)


def _key_of(params: VllmGumbelParams) -> GumbelKey:
    try:
        return GumbelKey.from_text(params.key.get_secret_value())
    except WatermarkKeyError as exc:  # its message never quotes the key
        raise ValidationFailed(exc.message) from None


def _spans(
    found: GumbelDetection, offsets: tuple[tuple[int, int], ...] | None, text: str | None
) -> list[TokenSpan]:
    kinds = {1: "green", 0: "red", -1: "skip"}
    spans = []
    for i, flag in enumerate(found.flags.tolist()):
        start = end = None
        piece = None
        if offsets is not None and text is not None and i < len(offsets):
            start, end = offsets[i]
            piece = text[start:end]
        spans.append(
            TokenSpan(start=start, end=end, token_index=i, kind=kinds[int(flag)], text=piece)  # type: ignore[arg-type]
        )
    return spans


def detect_vllm_gumbel(
    session: Session,
    principal: Principal | None,
    runtime: Any,
    *,
    text: str | None,
    token_ids: list[int] | None,
    model: str | None,
    params: VllmGumbelParams | None,
    alpha: float,
    now: datetime,
) -> DetectResponse:
    """One exact test with the caller's key; the caller's rate limit is already charged."""
    from gateway.services.detection import _check_model, _yank_note, confidence_of

    if params is None:
        raise ValidationFailed("scheme vllm-gumbel needs `vllm_gumbel` with the key vLLM used")
    key = _key_of(params)
    config = GumbelConfig(
        context_width=params.context_width,
        deduplicate_contexts=params.deduplicate_contexts,
        algorithm=params.algorithm,
    )
    notes: list[str] = []
    named = None
    if model is not None:  # a model the caller cannot see answers 404 like a missing one
        named = _check_model(session, principal, model, now)
        if named.status == ReleaseStatus.yanked.value:
            notes.append(_yank_note(named))
    offsets: tuple[tuple[int, int], ...] | None = None
    if text is not None:
        if named is None or model is None:
            raise ValidationFailed(
                "text needs `model` (its tokenizer reads the text); or send token_ids"
            )
        tier = parse_model_name(model)[2]
        _, ref = resolve_model(
            session, None, f"{named.repo_id}@{named.version}:{tier}", now, for_use=False
        )
        ids, offsets = tokenize(text, runtime.cache.tokenizer(ref))
    else:
        assert token_ids is not None
        ids = token_ids
    found = detect_gumbel(ids, config, key, alpha=alpha)
    verdict, confidence, why = confidence_of(
        found.watermarked, found.p_value, found.tokens_scored, alpha
    )
    notes.extend(why)
    notes.append(NO_PAYLOAD_NOTE)
    log_p = found.log10_p_value * math.log(10.0)
    response = DetectResponse(
        verdict=verdict,
        confidence=confidence,
        watermarked=found.watermarked,
        z_score=found.z_score,
        p_value=found.p_value,
        log10_p_value=found.log10_p_value,
        raw_p_value=math.exp(log_p),
        tokens_total=found.tokens_total,
        tokens_scored=found.tokens_scored,
        green_fraction=found.green_fraction,
        model=model if found.watermarked else None,
        watermark_key_id=None,
        keys_tried=1,
        tests_corrected_for=1,
        payload=None,
        window=None,
        spans=_spans(found, offsets, text),
        attribution=None,
        ambiguous=[],
        notes=notes,
        scheme=GUMBEL_SCHEME,
        score=found.score,
    )
    record_event(
        session,
        action="detection.performed",
        actor=Actor.of(principal),
        resource="watermark:detect",
        now=now,
        fields={
            "input_sha256": digest_of(text if text is not None else json.dumps(token_ids)),
            "input": "text" if text is not None else "token_ids",
            "model": model,
            "scheme": GUMBEL_SCHEME,
            # The public parameters only: the key never enters the log.
            "parameters": config.to_dict(),
            "verdict": verdict,
            "log10_p_value": f"{found.log10_p_value:.3f}",
            "keys_tried": 1,
            "attributed_log_index": None,
        },
    )
    return response
