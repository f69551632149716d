"""Watermark detection for the gateway: try the keys that could apply, attribute the call.

Candidates are the watermark keys the gateway has generated with (``watermark_keys``), or
those of one model. For each key the text is scored once (``decode_payload``); two tests are
then read from the same counts: the library's union-bound test over every possible message,
and an exact test for each call tag this key has issued (tags are dense, so the issued set
is ``range(next_tag)``), the best of which is confirmed with ``detect_payload``. The reported
p-value is Bonferroni-corrected for every test on every key tried, so it stays valid however
many calls and models the gateway serves. Text that mixes watermarked and other text is
also scanned in windows (corrected for the windows too).
"""

from __future__ import annotations

import json
import logging
import math
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.auth.principal import Principal
from gateway.db.models import LogEntry, Release, ReleaseStatus, WatermarkKeyRecord
from gateway.errors import ValidationFailed
from gateway.generation.calls import payloads_for_tags, symbols_for_payloads
from gateway.generation.keys import derive_watermark_key
from gateway.generation.models import ModelCache, parse_model_name
from gateway.schemas.openai import CallAttribution, DetectResponse, TokenSpan, VllmGumbelParams
from gateway.services import catalog, ratelimit, releases
from gateway.services.detection_log import log_detection
from gateway.services.detection_text import (
    PublishedModel,
    judge_tokenization,
    logged_output_matches,
)
from gateway.services.models import resolve_model
from watermark import WatermarkConfig, WatermarkKey, decode_payload, detect_payload
from watermark.detector import scan_flags
from watermark.errors import InsufficientTextError, WatermarkError
from watermark.text_detection import TextReading, read_text

__all__ = ["DetectionRuntime", "detect", "detect_text", "register_runtime"]

log = logging.getLogger("tiergate.detection")
_CHUNK = 1 << 16
_MIN_TOKENS = 16


@dataclass
class DetectionRuntime:
    """What detection needs from the running gateway: keys, tokenizers, the log."""

    master_key: bytes
    cache: ModelCache
    integrate: Any  # callable: integrate pending log entries now (LedgerRuntime.integrate_now)
    # Detections per account per window (Settings.rate_limit_detections_per_account and
    # Settings.rate_limit_window_seconds); charged by :func:`detect`, whatever the driver.
    detections_per_account: int = 120
    window_seconds: int = 60


_RUNTIMES: weakref.WeakKeyDictionary[Engine, DetectionRuntime] = weakref.WeakKeyDictionary()


def register_runtime(engine: Engine, runtime: DetectionRuntime) -> None:
    """Let callers that only hold a session (the web page) reach this gateway's detector."""
    _RUNTIMES[engine] = runtime


@dataclass
class _Candidate:
    record: WatermarkKeyRecord
    release: Release
    config: WatermarkConfig
    key: WatermarkKey


@dataclass
class _KeyResult:
    candidate: _Candidate
    ids: list[int]
    offsets: tuple[tuple[int, int], ...] | None
    log_p: float  # best single test on this key (natural log)
    tests: int
    flags: Any
    green: int
    scored: int
    payload: int | None  # best issued payload, when the logged test won
    decoded: int | None
    window: dict[str, Any] | None
    tokenization: str = "token_ids"  # the candidate reading of the text that was scored


def window_scan(flags: Any, gamma: float) -> dict[str, Any]:
    """Most watermarked window of 100 tokens (the watermark library's scan, one home for the
    statistics); its log p is corrected for the windows tried."""
    found = scan_flags(flags, gamma, alpha=0.5)
    return {
        "start_token": found.start,
        "end_token": found.end,
        "tokens_scored": found.tokens_scored,
        "green_fraction": found.green_count / found.tokens_scored if found.tokens_scored else 0.0,
        "windows": found.windows,
        "log_p": found.log_adjusted_p_value,
    }


def confidence_of(
    watermarked: bool, p_value: float, scored: int, alpha: float
) -> tuple[str, str, list[str]]:
    """(verdict, confidence, notes): plain words for what the statistics allow."""
    if watermarked:
        if p_value <= alpha * 1e-3:
            return "watermarked", "high", []
        return "watermarked", "medium", ["the evidence is past the threshold but not by much"]
    if scored < 50:
        return "inconclusive", "low", [f"only {scored} tokens could be scored; 100+ are needed"]
    if p_value <= 1e-2:
        return "inconclusive", "low", ["some signal, too weak to call (edited or short text?)"]
    level = "high" if scored >= 200 else "medium"
    return "not_watermarked", level, []


def _candidates(
    session: Session, principal: Principal | None, runtime: DetectionRuntime, model: str | None
) -> list[_Candidate]:
    query = select(WatermarkKeyRecord, Release).where(WatermarkKeyRecord.release_id == Release.id)
    if model is not None:
        repo_id, version, tier = parse_model_name(model)
        query = query.where(Release.repo_id == repo_id)
        if version is not None:
            query = query.where(Release.version == version)
        if ":" in model:
            query = query.where(WatermarkKeyRecord.tier == tier)
    out = []
    for record, release in session.exec(query):
        key = derive_watermark_key(
            runtime.master_key, release.repo_id, release.version, record.tier
        )
        if key.key_id != record.key_id:  # derived under another master key: cannot test
            continue
        config = WatermarkConfig.from_json(record.config_json)
        out.append(_Candidate(record, release, config, key))
    return out


def _score_key(candidate: _Candidate, ids: list[int], offsets: Any, alpha: float) -> _KeyResult:
    config, key, settings = candidate.config, candidate.key, candidate.config.payload
    assert settings is not None
    decoding = decode_payload(ids, config, key, alpha=alpha)
    detection = decoding.detection
    assert detection is not None
    union_log_p = detection.log10_p_value * math.log(10.0)
    best_log_p, flags = union_log_p, detection.flags
    green, scored = detection.green_count, detection.tokens_scored
    best_payload: int | None = None
    issued = min(int(candidate.record.next_tag), 1 << settings.payload_bits)
    counts = np.asarray(decoding.counts, dtype=np.int64)
    if issued and scored:
        slots = np.arange(settings.num_slots)
        top_green, top_payload = -1, 0
        for start in range(0, issued, _CHUNK):
            tags = np.arange(start, min(issued, start + _CHUNK), dtype=np.uint64)
            payloads = payloads_for_tags(tags, settings.payload_bits)
            greens = counts[slots, symbols_for_payloads(payloads, settings)].sum(axis=1)
            i = int(np.argmax(greens))
            if int(greens[i]) > top_green:
                top_green, top_payload = int(greens[i]), int(payloads[i])
        confirmed = detect_payload(ids, config, key, top_payload, alpha=alpha)
        logged_log_p = confirmed.log10_p_value * math.log(10.0)
        if logged_log_p < best_log_p:
            best_log_p, flags, best_payload = logged_log_p, confirmed.flags, top_payload
            green, scored = confirmed.green_count, confirmed.tokens_scored
    tests = issued + 1
    window = None
    if best_payload is not None:
        window = window_scan(flags, 1.0 / settings.num_colours)
    return _KeyResult(
        candidate,
        ids,
        offsets,
        best_log_p,
        tests,
        flags,
        green,
        scored,
        best_payload,
        decoding.payload,
        window,
    )


def _attribution(
    session: Session,
    principal: Principal | None,
    runtime: DetectionRuntime,
    result: _KeyResult,
    alpha: float,
) -> list[CallAttribution]:
    from gateway.generation.calls import choices_with_payload
    from gateway.ledger.reads import can_see, inclusion

    if result.payload is None:
        return []
    rows = choices_with_payload(session, result.candidate.record.key_id, result.payload)
    if not rows:
        return []
    try:
        runtime.integrate()
    except Exception as exc:  # the log being unavailable must not hide the verdict
        log.warning("log integration before a proof failed: %s", type(exc).__name__)
    release = result.candidate.release
    p_call = math.exp(result.log_p)
    out = []
    for row in rows:
        entry = session.get(LogEntry, row.log_index)
        requester = None
        if entry is not None and can_see(principal, entry):
            requester = json.loads(entry.entry).get("actor", {}).get("name")
        proof: dict[str, Any] | None
        try:
            found = inclusion(session, row.log_index, None)
            proof = {
                "index": found.index,
                "tree_size": found.size,
                "leaf_hash": found.leaf_hash.hex(),
                "root_hash": found.root_hash.hex(),
                "inclusion_path": [h.hex() for h in found.proof],
                "checkpoint": found.checkpoint,
            }
        except Exception:  # not integrated yet, or no checkpoint: the index still stands
            proof = None
        out.append(
            CallAttribution(
                call_id=row.call_id,
                choice_index=row.choice_index,
                log_index=row.log_index,
                time=row.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                model=f"{release.repo_id}@{release.version}:{row.tier}",
                payload=row.payload,
                p_value=p_call,
                requester=requester,
                inclusion_proof=proof,
            )
        )
    return out


def _spans(result: _KeyResult | None, text: str | None, count: int) -> list[TokenSpan]:
    kinds = {1: "green", 0: "red", -1: "skip"}
    if result is None:
        return []
    spans = []
    for i, flag in enumerate(result.flags.tolist()):
        start = end = None
        piece = None
        if result.offsets is not None and text is not None and i < len(result.offsets):
            start, end = result.offsets[i]
            piece = text[start:end]
        spans.append(
            TokenSpan(start=start, end=end, token_index=i, kind=kinds[int(flag)], text=piece)  # type: ignore[arg-type]
        )
    return spans[:count]


def detect(
    session: Session,
    principal: Principal | None,
    runtime: DetectionRuntime,
    *,
    text: str | None,
    token_ids: list[int] | None,
    model: str | None,
    alpha: float,
    now: datetime,
    scheme: str = "tg-kgw-v1",
    vllm_gumbel: VllmGumbelParams | None = None,
) -> DetectResponse:
    if principal is not None:
        ratelimit.hit_in(
            session,
            ratelimit.detection_limits(
                principal.user_id,
                per_account=runtime.detections_per_account,
                window_seconds=runtime.window_seconds,
            ),
            now=now,
        )
    if (text is None) == (token_ids is None):
        raise ValidationFailed("send exactly one of text or token_ids")
    if scheme == "vllm-gumbel":  # vLLM's own watermark, with the caller's key
        from gateway.services.detection_gumbel import detect_vllm_gumbel

        return detect_vllm_gumbel(
            session, principal, runtime, text=text, token_ids=token_ids, model=model,
            params=vllm_gumbel, alpha=alpha, now=now,
        )  # fmt: skip
    if scheme != "tg-kgw-v1" or vllm_gumbel is not None:
        raise ValidationFailed("`vllm_gumbel` goes with scheme vllm-gumbel only")
    notes: list[str] = []
    if model is not None:  # a model the caller cannot see answers 404 like a missing one
        named = _check_model(session, principal, model, now)
        if named.status == ReleaseStatus.yanked.value:
            notes.append(_yank_note(named))
    candidates = _candidates(session, principal, runtime, model)
    results: list[_KeyResult] = []
    # Text is read every candidate way (detection_text); each reading is one more test.
    encoded: dict[str | None, TextReading] = {}
    for candidate in candidates:
        try:
            if text is not None:
                digest = candidate.config.tokenizer_digest
                if digest not in encoded:
                    _, ref = resolve_model(session, None, _name(candidate), now, for_use=False)
                    encoded[digest] = read_text(
                        text, runtime.cache.tokenizer(ref), candidate.config
                    )
                readings = [(c.name, list(c.ids), c.offsets) for c in encoded[digest].candidates]
            else:
                assert token_ids is not None
                readings = [("token_ids", token_ids, None)]
            for name, ids, offsets in readings:
                try:
                    tried = _score_key(candidate, ids, offsets, alpha)
                except InsufficientTextError:
                    continue
                tried.tokenization = name
                results.append(tried)
        except InsufficientTextError:
            continue
        except WatermarkError as exc:
            notes.append(f"{_name(candidate)}: not tested ({exc.code})")
    tests = sum(r.tests for r in results)
    keys_tried = len({r.candidate.record.key_id for r in results})  # one result per reading
    best = min(results, key=lambda r: r.log_p) if results else None
    log_p = min(0.0, best.log_p + math.log(max(1, tests))) if best else 0.0
    # The window scan is a second look (mixed text); its own correction is in its p-value.
    window = best.window if best else None
    if best is not None and window is not None:
        window_log_p = window["log_p"] + math.log(max(1, tests))
        if window_log_p < log_p:
            log_p = min(0.0, window_log_p)
            notes.append("the strongest signal is in a passage; the rest reads as other text")
    p_value = math.exp(log_p)
    watermarked = p_value <= alpha
    scored = best.scored if best else 0
    gamma = best.candidate.config.gamma if best else 0.25
    green = best.green if best else 0
    z = (green - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma)) if scored else 0.0
    verdict, confidence, why = confidence_of(watermarked, p_value, scored, alpha)
    notes.extend(why)
    reading = None
    if text is not None and encoded:
        digest = best.candidate.config.tokenizer_digest if best else next(iter(encoded))
        reading = encoded.get(digest)
    verdict, confidence, why, tokenization = judge_tokenization(
        verdict=verdict,
        confidence=confidence,
        reading=reading,
        scored_with=best.tokenization if best else None,
        models=[PublishedModel(_name(c), c.release.statement_envelope) for c in candidates],
    )
    notes.extend(why)
    if best is not None and watermarked:
        source = best.candidate.release
        if source.status == ReleaseStatus.yanked.value and _yank_note(source) not in notes:
            notes.append(_yank_note(source))
    if not candidates:
        notes.append("no watermark key of this gateway applies (no generation with it yet)")
    attributed: list[CallAttribution] = []
    if best is not None and watermarked:
        attributed = _attribution(session, principal, runtime, best, alpha)
        if len(attributed) > 1:
            notes.append(f"{len(attributed)} logged calls share this call tag; see `ambiguous`")
        if text is not None and len(attributed) == 1:
            tokenization.matches_logged_output = logged_output_matches(
                session, attributed[0].log_index, attributed[0].choice_index, text
            )
    if window is not None:
        window = {k: v for k, v in window.items() if k != "log_p"}
    response = DetectResponse(
        verdict=verdict,
        confidence=confidence,
        watermarked=watermarked,
        z_score=z,
        p_value=p_value,
        log10_p_value=log_p / math.log(10.0),
        raw_p_value=math.exp(best.log_p) if best else 1.0,
        tokens_total=len(best.ids) if best else 0,
        tokens_scored=scored,
        green_fraction=green / scored if scored else 0.0,
        model=_name(best.candidate) if best and watermarked else None,
        watermark_key_id=best.candidate.record.key_id if best and watermarked else None,
        keys_tried=keys_tried,
        tests_corrected_for=tests,
        payload=best.decoded if best else None,
        window=window,
        spans=_spans(best, text, 100_000),
        attribution=attributed[0] if len(attributed) == 1 else None,
        ambiguous=attributed if len(attributed) > 1 else [],
        notes=notes,
        tokenization=tokenization,
    )
    log_detection(
        session,
        principal,
        now,
        text=text,
        token_ids=token_ids,
        model=model,
        fields={
            "verdict": verdict,
            "log10_p_value": f"{response.log10_p_value:.3f}",
            "keys_tried": keys_tried,
            "attributed_log_index": attributed[0].log_index if len(attributed) == 1 else None,
        },
    )
    return response


def _check_model(
    session: Session, principal: Principal | None, model: str, now: datetime
) -> Release:
    """The release ``model`` names, or 404. A bare ``ORG/NAME`` whose versions are all yanked
    still names its newest one: yanked models' text stays detectable and attributable."""
    repo_id, version, tier = parse_model_name(model)
    if version is not None:
        release = releases.find_release(session, repo_id, version, viewer=principal)
    else:
        release = catalog.current_release(session, repo_id, principal)
    pinned = f"{repo_id}@{release.version}" + (f":{tier}" if ":" in model else "")
    resolve_model(session, principal, pinned, now, for_use=False)  # the tier exists
    return release


def _yank_note(release: Release) -> str:
    reason = release.yank_reason or "no reason given"
    return (
        f"{release.repo_id}@{release.version} was yanked ({reason}); its text is still "
        "detected and attributed, as evidence"
    )


def _name(candidate: _Candidate) -> str:
    release = candidate.release
    return f"{release.repo_id}@{release.version}:{candidate.record.tier}"


def detect_text(
    session: Session,
    principal: Principal | None,
    *,
    text: str,
    model: str | None,
    now: datetime,
    alpha: float = 1e-6,
    scheme: str = "tg-kgw-v1",
    vllm_gumbel: VllmGumbelParams | None = None,
) -> DetectResponse:
    """The web page's entry point: the runtime registered for this session's engine."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    runtime = _RUNTIMES.get(engine)
    if runtime is None:
        raise ValidationFailed("detection is not set up on this gateway")
    return detect(
        session, principal, runtime, text=text, token_ids=None, model=model, alpha=alpha,
        now=now, scheme=scheme, vllm_gumbel=vllm_gumbel,
    )  # fmt: skip
