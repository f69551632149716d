"""Keyed green-list watermarking applied at sampling time, and its detector.

A pure library: torch is imported lazily, detection works without it.
"""

from __future__ import annotations

from watermark.errors import WatermarkError

__all__ = ["WatermarkError"]
