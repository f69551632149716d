"""`POST /v1/watermark/detect`: is this text watermarked by this gateway, and by which call?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, require_scope
from gateway.problems import openai_error_responses
from gateway.schemas.openai import DetectRequest, DetectResponse
from gateway.services import detection

router = APIRouter(prefix="/v1/watermark", tags=["detection"])
Detector = Annotated[Principal, Depends(require_scope("detect"))]


def get_detection_runtime(request: Request) -> detection.DetectionRuntime:
    runtime: detection.DetectionRuntime = request.app.state.detection
    return runtime


@router.post(
    "/detect",
    summary="Detect the gateway's watermark (or vLLM's, with its key) and attribute the call.",
    response_model=DetectResponse,
    responses=openai_error_responses(401, 403, 404, 422, 429, 503),
)
def detect_watermark(
    body: DetectRequest,
    principal: Detector,
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
        scheme=body.scheme,
        vllm_gumbel=body.vllm_gumbel,
    )
