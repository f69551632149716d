"""Errors of the release library.

Exception tree::

    ReleaseError                 root; every failure of this part is one of these
"""

from __future__ import annotations


class ReleaseError(Exception):
    """Root of every error raised by :mod:`release`.

    ``code`` is stable and machine readable; the message is for people.
    """

    code = "release_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
