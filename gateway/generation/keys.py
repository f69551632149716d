"""Per-model watermark keys derived from the gateway's master key; the secrets never leave here.

``HMAC-SHA256(master, "tiergate/watermark/v1/" + repo_id + "@" + version + ":" + tier)``: one
key per released model tier, so a leaked model key exposes one model and nothing else, and
any replica with the same keys volume derives the same key without storing it. Rotation is a
new master key file (old text then needs the old master; see docs/generation.md).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from watermark import PayloadSettings, WatermarkConfig, WatermarkKey
from watermark.keyset import KeySetEntry

__all__ = ["KEY_LABEL", "derive_watermark_key", "tier_keyset_entry", "watermark_config_for"]

KEY_LABEL = "tiergate/watermark/v1/"


def derive_watermark_key(master: bytes, repo_id: str, version: str, tier: str) -> WatermarkKey:
    """The watermark key of one model tier."""
    label = f"{KEY_LABEL}{repo_id}@{version}:{tier}".encode()
    return WatermarkKey(hmac.new(master, label, hashlib.sha256).digest())


def watermark_config_for(
    key: WatermarkKey, vocab_size: int, tokenizer: Any, *, delta: float, payload_bits: int
) -> WatermarkConfig:
    """The gateway's watermark for a model: multi-bit, a call tag of ``payload_bits`` + CRC-8."""
    return WatermarkConfig.create(
        key,
        vocab_size,
        tokenizer=tokenizer,
        delta=delta,
        context_width=1,
        payload=PayloadSettings(payload_bits=payload_bits),
    )


def tier_keyset_entry(
    master: bytes,
    repo_id: str,
    version: str,
    tier: str,
    *,
    vocab_size: int,
    tokenizer: Any,
    delta: float,
    payload_bits: int,
) -> KeySetEntry:
    """The key and config a vLLM engine serving this tier must hold (its key set file).

    Exactly what the gateway applies and records for the tier's calls (same key, same
    config), so the engine's canary passes and detection never guesses. ``delta`` and
    ``payload_bits`` are the gateway's ``watermark_delta`` and ``watermark_payload_bits``.
    """
    key = derive_watermark_key(master, repo_id, version, tier)
    config = watermark_config_for(
        key, vocab_size, tokenizer, delta=delta, payload_bits=payload_bits
    )
    return KeySetEntry(key, config)
