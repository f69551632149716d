"""Errors of the licensing (trust) library.

Exception tree::

    LicensingError               root; every failure of this part is one of these
"""

from __future__ import annotations


class LicensingError(Exception):
    """Root of every error raised by :mod:`licensing`."""

    code = "licensing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
