"""The tiergate gateway: HTTP service and CLI root composing release, licensing and watermark."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
