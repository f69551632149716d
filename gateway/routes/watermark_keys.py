"""`/api/watermark/keys`: export a tier's watermark key; register a vLLM watermark key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, StateDep, require_scope
from gateway.problems import problem_responses
from gateway.services import vllm_watermark_keys, watermark_keys

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


class VllmKeyRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=3, max_length=300, description="ORG/NAME[@VERSION][:tier]")
    key: SecretStr = Field(
        min_length=1,
        max_length=24,
        description="The integer the model's vLLM servers run with (`--watermark-config` "
        "`key`), decimal or 0x hex. Stored sealed; never returned or logged.",
    )
    context_width: int = Field(default=4, ge=1, le=64)
    deduplicate_contexts: bool = True


class VllmKeyRegistered(BaseModel):
    id: int
    model: str
    context_width: int
    deduplicate_contexts: bool
    log_index: int = Field(description="The `watermark.vllm_key_registered` log entry")


@router.post(
    "/vllm",
    status_code=201,
    summary="Register the key of vLLM's own watermark for a model tier (admins, its publishers).",
    response_model=VllmKeyRegistered,
)
def register_vllm_key(
    body: VllmKeyRegistration,
    principal: Publisher,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
) -> VllmKeyRegistered:
    done = vllm_watermark_keys.register_vllm_key(
        session,
        principal,
        state.keyring.watermark_master_key,
        body.model,
        body.key.get_secret_value(),
        context_width=body.context_width,
        deduplicate_contexts=body.deduplicate_contexts,
        now=now,
    )
    return VllmKeyRegistered(
        id=done.id,
        model=done.model,
        context_width=done.config.context_width,
        deduplicate_contexts=done.config.deduplicate_contexts,
        log_index=done.log_index,
    )
