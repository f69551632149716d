"""Hand a model tier's watermark key to the engine that will serve it (`tiergate engine serve`).

An upstream engine (vLLM with tiergate's plugin) watermarks with the same key and config the
gateway records with every call, so it needs them before the tier has served its first call,
which is when the gateway registers a key today. This registers the key the way the first
call would (same derivation, same config: the tier's own tokenizer and vocabulary, the
gateway's delta and payload width) and then exports it through the one export rule
(:func:`gateway.services.watermark_keys.export_watermark_keys`: admins and the releasing org's
publishers only, one `watermark.key_exported` log entry per export). A refused export rolls
the registration back with the rest of the request's transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import WatermarkKeyRecord
from gateway.errors import BadRequest, Conflict
from gateway.generation.calls import ensure_key_record
from gateway.generation.keys import derive_watermark_key, tier_keyset_entry
from gateway.generation.models import ModelCache, parse_model_name
from gateway.services.models import resolve_model
from gateway.services.watermark_keys import ExportedKey, export_watermark_keys

__all__ = ["provision_engine_key"]


def _vocab_size(folder: Path, model: str) -> int:
    """The logits width: ``config.json``'s ``vocab_size`` (what the loaded model reports),
    read without loading the weights."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return int(config["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Conflict(f"{model} has no readable vocab_size in config.json") from exc


def provision_engine_key(
    session: Session,
    principal: Principal,
    master_key: bytes,
    cache: ModelCache,
    model: str,
    *,
    delta: float,
    payload_bits: int,
    now: datetime,
) -> ExportedKey:
    """The key and config of the exact release tier ``model`` (ORG/NAME@VERSION:tier) names,
    registered if no call has used it yet, exported (and logged) for an engine."""
    repo_id, version, tier = parse_model_name(model)
    if version is None or ":" not in model:
        raise BadRequest(
            f"an engine serves one exact release tier: name it ORG/NAME@VERSION:TIER, "
            f"not {model!r:.200}"
        )
    release, ref = resolve_model(session, principal, model, now, for_use=True)
    key = derive_watermark_key(master_key, repo_id, release.version, tier)
    if session.get(WatermarkKeyRecord, key.key_id) is None:
        folder = cache.materialize(ref)
        # The one home of an engine's key and config (what the canary then checks).
        config = tier_keyset_entry(
            master_key,
            repo_id,
            release.version,
            tier,
            vocab_size=_vocab_size(folder, model),
            tokenizer=cache.tokenizer(ref),
            delta=delta,
            payload_bits=payload_bits,
        ).config
        assert release.id is not None
        ensure_key_record(
            session,
            key_id=key.key_id,
            release_id=release.id,
            tier=tier,
            config_json=config.to_json(),
            now=now,
        )
    exported = export_watermark_keys(
        session, principal, master_key, f"{repo_id}@{release.version}:{tier}", now=now
    )
    (found,) = [k for k in exported if k.key_id == key.key_id]
    return found
