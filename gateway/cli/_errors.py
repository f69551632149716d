"""Which exceptions the CLI reports as a plain one-line error (no traceback)."""

from __future__ import annotations

import importlib


def is_expected_error(exc: BaseException) -> bool:
    """True when ``exc`` belongs to one of tiergate's error roots (or is an OS/input error)."""
    if isinstance(exc, (OSError, ValueError)) and not type(exc).__module__.startswith("tiergate"):
        # File not found, permission denied, bad values from the user: say it plainly.
        return True
    for module_name, root in (
        ("release.errors", "ReleaseError"),
        ("watermark.errors", "WatermarkError"),
        ("licensing.errors", "LicensingError"),
        ("gateway.errors", "GatewayError"),
    ):
        module = importlib.import_module(module_name)
        if isinstance(exc, getattr(module, root)):
            return True
    return False
