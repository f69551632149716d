"""Developer tools run from the command line and CI (``python -m gateway.tools.<name>``)."""

from __future__ import annotations

__all__: list[str] = []
