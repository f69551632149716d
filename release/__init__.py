"""Publisher side of tiergate: safetensors checks, the optimized tier, manifests, model cards.

A pure library: no web framework, no database, no settings object.
"""

from __future__ import annotations

from release.errors import ReleaseError

__all__ = ["ReleaseError"]
