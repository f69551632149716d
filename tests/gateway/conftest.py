"""Fixtures many gateway test modules share (defined in their own modules, which other test
folders import too)."""

from __future__ import annotations

from tests.gateway.generation_fixtures import generation_release, published  # noqa: F401
