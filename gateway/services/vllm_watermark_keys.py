"""vLLM watermark keys registered by publishers, so anyone can check text against them.

A publisher running vLLM with ``--watermark-config`` registers that key for a model tier
(admins and the releasing org's publishers only; every registration is a log entry without the
key). The key is stored sealed: AES-GCM under a key derived from the gateway's watermark master
key, bound to the row's release and tier, so a database dump alone does not reveal it. Detection
opens the keys of the model named (or of every model) and never returns them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import Release, VllmWatermarkKeyRecord
from gateway.errors import Forbidden, ValidationFailed
from gateway.generation.models import parse_model_name
from gateway.ledger.events import Actor, record_event
from gateway.services.models import resolve_model
from gateway.services.watermark_keys import may_manage_keys
from watermark.errors import WatermarkError
from watermark.vllm_gumbel import GumbelConfig, GumbelKey

__all__ = [
    "RegisteredKey",
    "Registration",
    "parse_vllm_key",
    "register_vllm_key",
    "registered_vllm_keys",
]

_SEAL_LABEL = b"tiergate vllm-gumbel key seal v1"


@dataclass(frozen=True)
class Registration:
    id: int
    model: str  # ORG/NAME@VERSION:tier
    config: GumbelConfig
    log_index: int


@dataclass(frozen=True)
class RegisteredKey:
    id: int
    model: str
    release: Release
    tier: str
    key: GumbelKey
    config: GumbelConfig


def parse_vllm_key(
    key_text: str, context_width: int, deduplicate_contexts: bool
) -> tuple[GumbelKey, GumbelConfig]:
    """The key and public parameters, or 422; the error never quotes the key."""
    try:
        key = GumbelKey.from_text(key_text)
        config = GumbelConfig(
            context_width=context_width, deduplicate_contexts=deduplicate_contexts
        )
    except WatermarkError as exc:
        raise ValidationFailed(exc.message) from None
    return key, config


def _aead(master_key: bytes) -> AESGCM:
    return AESGCM(hmac.new(master_key, _SEAL_LABEL, hashlib.sha256).digest())


def _bound(release_id: int, tier: str) -> bytes:
    return f"{release_id}:{tier}".encode()


def _seal(master_key: bytes, release_id: int, tier: str, key: GumbelKey) -> str:
    nonce = os.urandom(12)
    sealed = _aead(master_key).encrypt(
        nonce, key.value.to_bytes(8, "big"), _bound(release_id, tier)
    )
    return base64.b64encode(nonce + sealed).decode("ascii")


def _open(master_key: bytes, record: VllmWatermarkKeyRecord) -> GumbelKey | None:
    """The key, or None when it was sealed under another master key (rotation) or altered."""
    try:
        raw = base64.b64decode(record.sealed, validate=True)
        plain = _aead(master_key).decrypt(
            raw[:12], raw[12:], _bound(record.release_id, record.tier)
        )
    except (InvalidTag, ValueError):
        return None
    return GumbelKey(int.from_bytes(plain, "big"))


def register_vllm_key(
    session: Session,
    principal: Principal,
    master_key: bytes,
    model: str,
    key_text: str,
    *,
    context_width: int,
    deduplicate_contexts: bool,
    now: datetime,
) -> Registration:
    """Register ``key_text`` (vLLM's ``--watermark-config`` key) for the tier ``model`` names."""
    key, config = parse_vllm_key(key_text, context_width, deduplicate_contexts)
    release, ref = resolve_model(session, principal, model, now, for_use=False)
    if not may_manage_keys(principal, release):
        raise Forbidden("only the releasing org's publishers and admins register its keys")
    assert release.id is not None
    record = VllmWatermarkKeyRecord(
        release_id=release.id,
        tier=ref.tier,
        sealed=_seal(master_key, release.id, ref.tier, key),
        context_width=config.context_width,
        deduplicate_contexts=config.deduplicate_contexts,
        created_at=now,
    )
    session.add(record)
    session.flush()
    assert record.id is not None
    name = f"{release.repo_id}@{release.version}:{ref.tier}"
    index = record_event(
        session,
        action="watermark.vllm_key_registered",
        actor=Actor.of(principal),
        resource=name,
        org_id=release.org_id,
        now=now,
        # Public parameters and the registration id; the key never enters the log.
        fields={"registration": record.id, "parameters": config.to_dict()},
    )
    return Registration(record.id, name, config, index)


def registered_vllm_keys(
    session: Session, master_key: bytes, model: str | None
) -> list[RegisteredKey]:
    """The registered keys this gateway can open, for ``model`` (ORG/NAME[@V][:tier]) or all."""
    query = select(VllmWatermarkKeyRecord, Release).where(
        VllmWatermarkKeyRecord.release_id == Release.id
    )
    if model is not None:
        repo_id, version, tier = parse_model_name(model)
        query = query.where(Release.repo_id == repo_id)
        if version is not None:
            query = query.where(Release.version == version)
        if ":" in model:
            query = query.where(VllmWatermarkKeyRecord.tier == tier)
    out = []
    for record, release in session.exec(query.order_by(col(VllmWatermarkKeyRecord.id))):
        key = _open(master_key, record)
        if key is None or record.id is None:
            continue
        config = GumbelConfig(
            context_width=record.context_width,
            deduplicate_contexts=record.deduplicate_contexts,
        )
        name = f"{release.repo_id}@{release.version}:{record.tier}"
        out.append(RegisteredKey(record.id, name, release, record.tier, key, config))
    return out
