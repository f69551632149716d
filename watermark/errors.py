"""Errors of the watermark library.

Exception tree::

    WatermarkError               root; every failure of this part is one of these
"""

from __future__ import annotations


class WatermarkError(Exception):
    """Root of every error raised by :mod:`watermark`."""

    code = "watermark_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
