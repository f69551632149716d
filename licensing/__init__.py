"""Trust layer of tiergate: keys, DSSE, in-toto statements, attestations, transparency proofs.

A pure library: it imports no other tiergate part.
"""

from __future__ import annotations

from licensing.errors import LicensingError

__all__ = ["LicensingError"]
