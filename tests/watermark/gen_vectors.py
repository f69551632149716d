"""Regenerate watermark/vectors/tg-kgw-v1.json from the pure-Python reference.

Run ``python -m tests.watermark.gen_vectors`` only when the scheme version changes: the file
is the published contract that every backend is tested against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from watermark import prf
from watermark.config import PayloadSettings
from watermark.keys import WatermarkKey, compute_key_id
from watermark.payload import crc8, payload_symbols

VECTORS = Path(__file__).resolve().parents[2] / "watermark" / "vectors" / "tg-kgw-v1.json"
SECRETS = [bytes(range(32)), b"tiergate test vector key 0002!!!"]
CASES: list[tuple[list[int], int]] = [
    ([0], 0),
    ([1], 2),
    ([31999], 12345),
    ([128255], 128255),
    ([7, 11], 13),
    ([500, 600, 700], 42),
    ([3, 3, 3, 3], 3),
    ([99, 98, 97, 96, 95, 94, 93, 92], 91),
]


def build() -> dict[str, Any]:
    keys = []
    for secret in SECRETS:
        key64 = prf.key_word(secret)
        cases = []
        for context, candidate in CASES:
            x = prf.context_word(key64, context)
            for self_seeded in (False, True):
                w = prf.prf_word(key64, context, candidate, self_seeded=self_seeded)
                cases.append(
                    {
                        "context": context,
                        "candidate": candidate,
                        "self_seeded": self_seeded,
                        "context_word": f"{x:016x}",
                        "prf_word": f"{w:08x}",
                        "green_gamma_0.25": prf.is_favoured(w, 0.25),
                        "green_gamma_0.5": prf.is_favoured(w, 0.5),
                        "colour_b2": prf.colour(w, 2),
                        "slot_L14": prf.slot_of(x, 14),
                    }
                )
        keys.append(
            {
                "secret_hex": secret.hex(),
                "key_id": compute_key_id(secret),
                "key64": f"{key64:016x}",
                "cases": cases,
            }
        )
    settings = PayloadSettings(payload_bits=20, check="crc8", bits_per_symbol=2)
    payloads = [
        {"payload": p, "crc8": crc8(p, 20), "symbols": list(payload_symbols(p, settings))}
        for p in (0, 1, 0xABCDE, (1 << 20) - 1)
    ]
    assert WatermarkKey(SECRETS[0]).key_id == keys[0]["key_id"]
    return {
        "scheme": prf.SCHEME,
        "description": "tg-kgw-v1 PRF test vectors; see watermark/prf.py for the definition",
        "keys": keys,
        "payload_settings": {"payload_bits": 20, "check": "crc8", "bits_per_symbol": 2},
        "payloads": payloads,
    }


def main() -> None:
    VECTORS.write_text(json.dumps(build(), indent=1) + "\n")


if __name__ == "__main__":
    main()
