"""Keyed green-list watermarking applied at sampling time, and its detector.

A pure library: torch is imported lazily, detection works without it.
"""

from __future__ import annotations

from watermark.config import PayloadSettings, WatermarkConfig, tokenizer_digest
from watermark.detector import DetectionResult, WindowScan, detect, detect_text, scan
from watermark.errors import WatermarkError
from watermark.keys import WatermarkKey, load_key_file
from watermark.keyset import KeySetEntry, WatermarkKeySet, load_keyset, write_keyset
from watermark.payload import PayloadDecoding, decode_payload, detect_payload
from watermark.prf import SCHEME
from watermark.processor import (
    GreenListProcessor,
    apply_watermark,
    build_logits_processors,
    prepare_cpu_kernel,
)

__all__ = [
    "SCHEME",
    "DetectionResult",
    "KeySetEntry",
    "GreenListProcessor",
    "PayloadDecoding",
    "PayloadSettings",
    "WatermarkConfig",
    "WatermarkError",
    "WatermarkKey",
    "WatermarkKeySet",
    "WindowScan",
    "apply_watermark",
    "build_logits_processors",
    "prepare_cpu_kernel",
    "decode_payload",
    "detect",
    "detect_payload",
    "detect_text",
    "load_key_file",
    "load_keyset",
    "scan",
    "tokenizer_digest",
    "write_keyset",
]
