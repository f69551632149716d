"""What one running gateway holds: settings, engine, keys, storage, readiness."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from gateway.config import Settings
from gateway.keyring import Keyring
from gateway.storage.base import BlobStore


@dataclass
class SchemaStatus:
    """Whether migrations have been applied; flipped by the start-up task, read by /readyz."""

    ready: bool = False
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class GatewayState:
    settings: Settings
    engine: Engine
    keyring: Keyring
    schema: SchemaStatus
    blobs: BlobStore
