"""Export a model tier's watermark key to the people entitled to detect offline with it.

The gateway derives one key per released model tier from its master key
(:mod:`gateway.generation.keys`). A publisher who wants to run `tiergate watermark detect`
on their own machine (or hand the key to a moderation team) needs that key and the exact
watermark configuration the gateway generated with. Only admins and publishers of the
releasing org may export, every export is a log entry (who, which key), and the master key
never leaves: a model key exposes that model tier and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import Release, Role, WatermarkKeyRecord
from gateway.errors import Forbidden, NotFound
from gateway.generation.keys import derive_watermark_key
from gateway.generation.models import parse_model_name
from gateway.ledger.events import Actor, record_event

__all__ = ["ExportedKey", "export_watermark_keys", "may_manage_keys"]


@dataclass(frozen=True)
class ExportedKey:
    """One model tier's key: what `tiergate watermark detect --config --key-file` reads."""

    key_id: str
    model: str  # ORG/NAME@VERSION:tier
    config_json: str
    key_hex: str
    log_index: int


def may_manage_keys(principal: Principal, release: Release) -> bool:
    """Admins, and publishers of the releasing org: export its keys, register vLLM keys."""
    if principal.is_admin:
        return True
    return principal.role is Role.publisher and principal.org_id == release.org_id


def export_watermark_keys(
    session: Session, principal: Principal, master_key: bytes, model: str, *, now: datetime
) -> list[ExportedKey]:
    """The keys the gateway has generated with for ``model`` (ORG/NAME[@VERSION][:tier]).

    Keys exist once a model tier has served a call; before that there is nothing to detect.
    Someone who may not export learns nothing more than "not found" about other orgs' models.
    """
    repo_id, version, tier = parse_model_name(model)
    query = select(WatermarkKeyRecord, Release).where(WatermarkKeyRecord.release_id == Release.id)
    query = query.where(Release.repo_id == repo_id)
    if version is not None:
        query = query.where(Release.version == version)
    if ":" in model:
        query = query.where(WatermarkKeyRecord.tier == tier)
    rows = list(session.exec(query.order_by(col(Release.id), col(WatermarkKeyRecord.tier))))
    allowed = [(record, release) for record, release in rows if may_manage_keys(principal, release)]
    if not allowed:
        if rows and principal.role is Role.publisher:
            raise Forbidden("only the releasing org's publishers and admins export its keys")
        raise NotFound(f"no watermark key has been used for {model!r:.200} yet")
    exported = []
    for record, release in allowed:
        key = derive_watermark_key(master_key, release.repo_id, release.version, record.tier)
        if key.key_id != record.key_id:
            # Generated under an earlier master key (rotation): the gateway cannot re-derive it.
            continue
        name = f"{release.repo_id}@{release.version}:{record.tier}"
        index = record_event(
            session,
            action="watermark.key_exported",
            actor=Actor.of(principal),
            resource=name,
            org_id=release.org_id,
            now=now,
            fields={"key_id": record.key_id},
        )
        exported.append(ExportedKey(record.key_id, name, record.config_json, key.to_hex(), index))
    if not exported:
        raise NotFound(f"the keys of {model!r:.200} were made under an earlier master key")
    return exported
