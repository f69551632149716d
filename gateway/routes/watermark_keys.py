"""`POST /api/watermark/keys/export`: a model tier's watermark key for offline detection."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, StateDep, require_scope
from gateway.problems import problem_responses
from gateway.services import watermark_keys

router = APIRouter(
    prefix="/api/watermark/keys",
    tags=["detection"],
    responses=problem_responses(401, 403, 404, 422, 503),
)
Publisher = Annotated[Principal, Depends(require_scope("publish"))]


class KeyExportRequest(BaseModel):
    model: str = Field(
        min_length=3,
        max_length=300,
        description="ORG/NAME[@VERSION][:tier]",
        examples=["acme/tiny"],
    )


class ExportedKeyPublic(BaseModel):
    key_id: str
    model: str
    config: str = Field(description="The watermark config JSON (`--config` of the detect command)")
    key: str = Field(description="The model tier's secret key as hex (`--key-file`)")
    log_index: int = Field(description="The `watermark.key_exported` log entry of this export")


class KeyExportResponse(BaseModel):
    keys: list[ExportedKeyPublic]


@router.post(
    "/export",
    summary="Export the watermark keys a model has been served with (admins, its publishers).",
    response_model=KeyExportResponse,
)
def export_keys(
    body: KeyExportRequest,
    principal: Publisher,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    response: Response,
) -> KeyExportResponse:
    exported = watermark_keys.export_watermark_keys(
        session, principal, state.keyring.watermark_master_key, body.model, now=now
    )
    response.headers["Cache-Control"] = "no-store"
    return KeyExportResponse(
        keys=[
            ExportedKeyPublic(
                key_id=k.key_id,
                model=k.model,
                config=k.config_json,
                key=k.key_hex,
                log_index=k.log_index,
            )
            for k in exported
        ]
    )
