"""Detection of vLLM's built-in Gumbel-max watermark (scheme ``vllm-gumbel``) for the gateway.

Two ways to name the key vLLM was started with (``--watermark-config``): the caller brings it
for one check (``vllm_gumbel`` in the request), or a publisher registered it for a model tier
(``gateway.services.vllm_watermark_keys``) and the gateway tries the registered keys of the
model named, or of every model, Bonferroni-corrected for the keys tried. A key is never part
of a log entry, a log line, a response or an error. The scheme has no payload, so there is no
call to attribute: a positive verdict ties the text to a key (a deployment) only.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import ReleaseStatus
from gateway.errors import ValidationFailed
from gateway.generation.models import parse_model_name
from gateway.schemas.openai import DetectResponse, TokenSpan, VllmGumbelParams
from gateway.services.detection_log import log_detection
from gateway.services.models import resolve_model
from gateway.services.vllm_watermark_keys import parse_vllm_key, registered_vllm_keys
from gateway.services.watermark_keys import may_manage_keys
from watermark.detector import tokenize
from watermark.vllm_gumbel import GUMBEL_SCHEME, GumbelConfig, GumbelDetection, GumbelKey
from watermark.vllm_gumbel import detect as detect_gumbel

__all__ = ["GUMBEL_SCHEME", "detect_vllm_gumbel"]

NO_PAYLOAD_NOTE = (
    "vLLM's Gumbel watermark carries no payload: a positive verdict ties the text to the key "
    "(the deployment that used it), not to one call"
)


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
    """Exact tests with the caller's key or the registered ones (rate limit already charged)."""
    from gateway.services.detection import _check_model, _yank_note, confidence_of

    notes: list[str] = []
    named = None
    if model is not None:  # a model the caller cannot see answers 404 like a missing one
        named = _check_model(session, principal, model, now)
        if named.status == ReleaseStatus.yanked.value:
            notes.append(_yank_note(named))
    # (name for the verdict, tokenizer model name, key, parameters) of each key to try
    candidates: list[tuple[str | None, str | None, GumbelKey, GumbelConfig]] = []
    if params is not None:
        key, config = parse_vllm_key(
            params.key.get_secret_value(), params.context_width, params.deduplicate_contexts
        )
        pinned = None
        if named is not None and model is not None:
            pinned = f"{named.repo_id}@{named.version}:{parse_model_name(model)[2]}"
        candidates.append((model, pinned, key, config))
        if text is not None and pinned is None:
            raise ValidationFailed(
                "text needs `model` (its tokenizer reads the text); or send token_ids"
            )
    else:
        for found_key in registered_vllm_keys(session, runtime.master_key, model):
            # A pending release is invisible to everyone but its org: its key is not tried
            # for others, so a verdict never names it.
            pending = found_key.release.status == ReleaseStatus.pending.value
            if pending and not (principal and may_manage_keys(principal, found_key.release)):
                continue
            candidates.append((found_key.model, found_key.model, found_key.key, found_key.config))
        if not candidates:
            notes.append("no vLLM watermark key is registered for this model; send `vllm_gumbel`")
    encoded: dict[str, tuple[list[int], tuple[tuple[int, int], ...] | None]] = {}
    results: list[tuple[str | None, GumbelDetection, tuple[tuple[int, int], ...] | None]] = []
    for name, reader, key, config in candidates:
        offsets: tuple[tuple[int, int], ...] | None = None
        if text is not None:
            assert reader is not None
            if reader not in encoded:
                _, ref = resolve_model(session, None, reader, now, for_use=False)
                encoded[reader] = tokenize(text, runtime.cache.tokenizer(ref))
            ids, offsets = encoded[reader]
        else:
            assert token_ids is not None
            ids = token_ids
        results.append((name, detect_gumbel(ids, config, key, alpha=alpha), offsets))
    tests = max(1, len(results))
    if results:
        best_name, found, offsets = min(results, key=lambda r: r[1].log10_p_value)
        raw_log_p = found.log10_p_value * math.log(10.0)
    else:
        best_name, offsets, raw_log_p = None, None, 0.0
        found = detect_gumbel([], GumbelConfig(), GumbelKey(0), alpha=alpha)
    # Bonferroni over the keys tried: the reported p stays valid however many are registered.
    log_p = min(0.0, raw_log_p + math.log(tests))
    p_value = math.exp(log_p)
    watermarked = bool(results) and p_value <= alpha
    verdict, confidence, why = confidence_of(watermarked, p_value, found.tokens_scored, alpha)
    notes.extend(why)
    notes.append(NO_PAYLOAD_NOTE)
    response = DetectResponse(
        verdict=verdict,
        confidence=confidence,
        watermarked=watermarked,
        z_score=found.z_score,
        p_value=p_value,
        log10_p_value=log_p / math.log(10.0),
        raw_p_value=math.exp(raw_log_p),
        tokens_total=found.tokens_total,
        tokens_scored=found.tokens_scored,
        green_fraction=found.green_fraction,
        model=best_name if watermarked else None,
        watermark_key_id=None,
        keys_tried=len(results),
        tests_corrected_for=tests,
        payload=None,
        window=None,
        spans=_spans(found, offsets, text),
        attribution=None,
        ambiguous=[],
        notes=notes,
        scheme=GUMBEL_SCHEME,
        score=found.score,
    )
    log_detection(
        session,
        principal,
        now,
        text=text,
        token_ids=token_ids,
        model=model,
        fields={
            "scheme": GUMBEL_SCHEME,
            # The public parameters only: the key never enters the log.
            "parameters": [c[3].to_dict() for c in candidates],
            "verdict": verdict,
            "log10_p_value": f"{log_p / math.log(10.0):.3f}",
            "keys_tried": len(results),
            "caller_key": params is not None,
            "attributed_log_index": None,
        },
    )
    return response
