"""`POST /v1/watermark/detect`: is this text watermarked by this gateway, and by which call?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, StateDep, require_scope
from gateway.problems import openai_error_responses
from gateway.schemas.openai import DetectRequest, DetectResponse
from gateway.services import detection, ratelimit

router = APIRouter(prefix="/v1/watermark", tags=["detection"])
Detector = Annotated[Principal, Depends(require_scope("detect"))]


def limit_detections(principal: Detector, state: StateDep, now: NowDep) -> Principal:
    """Per account, counted in the database so the limit holds across replicas."""
    settings = state.settings
    limit = ratelimit.Limit(
        ratelimit.bucket_key("detect-user", str(principal.user_id)),
        settings.rate_limit_detections_per_account,
        settings.rate_limit_window_seconds,
    )
    ratelimit.hit(state.engine, [limit], now=now)
    return principal


LimitedDetector = Annotated[Principal, Depends(limit_detections)]


def get_detection_runtime(request: Request) -> detection.DetectionRuntime:
    runtime: detection.DetectionRuntime = request.app.state.detection
    return runtime


@router.post(
    "/detect",
    summary="Detect the gateway's watermark in text or token ids and attribute the call.",
    response_model=DetectResponse,
    responses=openai_error_responses(401, 403, 404, 422, 429, 503),
)
def detect_watermark(
    body: DetectRequest,
    principal: LimitedDetector,
    session: SessionDep,
    now: NowDep,
    runtime: Annotated[detection.DetectionRuntime, Depends(get_detection_runtime)],
) -> DetectResponse:
    return detection.detect(
        session,
        principal,
        runtime,
        text=body.text,
        token_ids=body.token_ids,
        model=body.model,
        alpha=body.alpha,
        now=now,
    )
