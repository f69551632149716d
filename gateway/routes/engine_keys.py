"""`POST /api/engines/keys`: the watermark key of a release tier, for the engine that serves it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, StateDep, require_scope
from gateway.problems import problem_responses
from gateway.services.engine_keys import provision_engine_key

router = APIRouter(
    prefix="/api/engines",
    tags=["detection"],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
Publisher = Annotated[Principal, Depends(require_scope("publish"))]


class EngineKeyRequest(BaseModel):
    model: str = Field(
        min_length=3,
        max_length=300,
        description="ORG/NAME@VERSION:TIER, the exact release tier the engine serves",
        examples=["acme/tiny@1.0.0:optimized"],
    )


class EngineKeyPublic(BaseModel):
    key_id: str
    model: str = Field(description="ORG/NAME@VERSION:tier")
    config: str = Field(description="The watermark config JSON the gateway records with calls")
    key: str = Field(description="The model tier's secret key as hex: for the engine's key set")
    log_index: int = Field(description="The `watermark.key_exported` log entry of this export")


@router.post(
    "/keys",
    summary="The watermark key and config an engine serving a release tier must use "
    "(admins, its publishers; registered on first use, logged as an export).",
    response_model=EngineKeyPublic,
)
def engine_key(
    body: EngineKeyRequest,
    principal: Publisher,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    request: Request,
    response: Response,
) -> EngineKeyPublic:
    exported = provision_engine_key(
        session,
        principal,
        state.keyring.watermark_master_key,
        request.app.state.detection.cache,
        body.model,
        delta=state.settings.watermark_delta,
        payload_bits=state.settings.watermark_payload_bits,
        now=now,
    )
    response.headers["Cache-Control"] = "no-store"
    return EngineKeyPublic(
        key_id=exported.key_id,
        model=exported.model,
        config=exported.config_json,
        key=exported.key_hex,
        log_index=exported.log_index,
    )
