"""Registered vLLM keys are sealed: bound to their row, opened only under the same master key."""

from __future__ import annotations

import base64

from gateway.db.models import VllmWatermarkKeyRecord
from gateway.services.vllm_watermark_keys import _open, _seal
from watermark.vllm_gumbel import GumbelKey

MASTER = bytes(range(32))
KEY = GumbelKey(0x5EED_CAFE_F00D_1234)


def _row(release_id: int, tier: str, sealed: str) -> VllmWatermarkKeyRecord:
    return VllmWatermarkKeyRecord(
        release_id=release_id, tier=tier, sealed=sealed, context_width=4, deduplicate_contexts=True
    )


def test_a_sealed_key_opens_only_in_its_own_row_under_the_same_master_key() -> None:
    sealed = _seal(MASTER, 7, "open", KEY)
    assert str(KEY.value) not in sealed
    assert f"{KEY.value:x}" not in base64.b64decode(sealed).hex()
    assert _open(MASTER, _row(7, "open", sealed)) == KEY
    assert _seal(MASTER, 7, "open", KEY) != sealed  # a fresh nonce each time
    assert _open(MASTER, _row(8, "open", sealed)) is None  # copied to another release
    assert _open(MASTER, _row(7, "optimized", sealed)) is None  # or another tier
    assert _open(bytes(32), _row(7, "open", sealed)) is None  # another master key (rotation)
    raw = bytearray(base64.b64decode(sealed))
    raw[-1] ^= 1
    assert _open(MASTER, _row(7, "open", base64.b64encode(bytes(raw)).decode())) is None
    assert _open(MASTER, _row(7, "open", "not base64!")) is None
