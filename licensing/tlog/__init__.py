"""Transparency log: RFC 9162 Merkle tree, C2SP signed notes, checkpoints, receipts and audits.

Pure algorithms and formats only (stdlib + ``cryptography``); the gateway owns storage and HTTP.
"""

from __future__ import annotations
