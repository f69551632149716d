"""`POST /v1/moderations`: OpenAI's moderation endpoint over the release safety checks
(:mod:`gateway.services.moderation`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, require_scope
from gateway.problems import openai_error_responses
from gateway.services import moderation
from gateway.services.safety import SafetyService

router = APIRouter(prefix="/v1", tags=["safety"])
Moderator = Annotated[Principal, Depends(require_scope("generate"))]


class ModerationRequest(BaseModel):
    input: str | list[str] = Field(description="A text, or a list of texts (one result each).")
    model: str | None = Field(
        default=None,
        max_length=200,
        description="ORG/NAME[@VERSION][:tier]: use that release's signed safety policy; "
        "anything else (or nothing): the default policy of every packaged check.",
    )


async def get_safety(request: Request) -> SafetyService:
    safety: SafetyService = request.app.state.generation.safety
    return safety


@router.post(
    "/moderations",
    summary="Classify text with the release safety checks (OpenAI's moderation shape).",
    responses=openai_error_responses(401, 403, 404, 413, 422, 429),
)
def create_moderation(
    body: ModerationRequest,
    principal: Moderator,
    session: SessionDep,
    now: NowDep,
    request: Request,
    safety: Annotated[SafetyService, Depends(get_safety)],
) -> dict[str, Any]:
    settings = request.app.state.gateway.settings
    return moderation.moderate(
        session,
        principal,
        safety,
        inputs=body.input,
        model=body.model,
        limits=moderation.ModerationLimits(
            per_account=settings.rate_limit_moderations_per_account,
            window_seconds=settings.rate_limit_window_seconds,
        ),
        now=now,
    )
