"""Key set files: the secret keys an engine may watermark with, each with its full config.

An engine (the vLLM plugin) receives key material only through such a file, written by the
gateway onto a secret mount; requests name a key id and never carry a secret. The config
stored next to each key is the one the gateway records with every call, so the engine
applies exactly what detection will assume. Format (JSON, at most 64 KiB)::

    {"format": "tiergate-watermark-keys/v1",
     "keys": [{"secret_hex": "<hex>", "config": {<WatermarkConfig.to_dict()>}}, ...]}
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watermark.config import WatermarkConfig
from watermark.errors import WatermarkError, WatermarkKeyError
from watermark.keys import WatermarkKey

__all__ = ["KEYSET_FORMAT", "KeySetEntry", "WatermarkKeySet", "load_keyset", "write_keyset"]

KEYSET_FORMAT = "tiergate-watermark-keys/v1"
_MAX_KEYSET_BYTES = 64 * 1024
_MAX_KEYS = 64


@dataclass(frozen=True)
class KeySetEntry:
    """One key and the watermark config it is used with."""

    key: WatermarkKey
    config: WatermarkConfig

    def __post_init__(self) -> None:
        if self.key.key_id != self.config.key_id:
            raise WatermarkKeyError(
                f"key {self.key.key_id} does not match its config's key id {self.config.key_id}"
            )


class WatermarkKeySet:
    """Keys by id; lookups compare ids in constant time. Its repr names key ids only."""

    def __init__(self, entries: Iterable[KeySetEntry]) -> None:
        self._entries = tuple(entries)
        if not self._entries:
            raise WatermarkKeyError("a key set needs at least one key")
        if len(self._entries) > _MAX_KEYS:
            raise WatermarkKeyError(f"a key set holds at most {_MAX_KEYS} keys")
        ids = [e.key.key_id for e in self._entries]
        if len(set(ids)) != len(ids):
            raise WatermarkKeyError("a key set lists a key id twice")

    def find(self, key_id: str) -> KeySetEntry:
        """The entry of ``key_id``; :class:`WatermarkKeyError` when the set has no such key."""
        if isinstance(key_id, str):
            for entry in self._entries:
                if hmac.compare_digest(entry.key.key_id, key_id):
                    return entry
        raise WatermarkKeyError(f"no watermark key with id {key_id!r} in this key set")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(e.key.key_id for e in self._entries)

    def __iter__(self) -> Iterator[KeySetEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"WatermarkKeySet(key_ids={list(self.key_ids)!r})"

    def to_json(self) -> str:
        """The file form. It holds secrets: write it only to a secret mount, never log it."""
        return json.dumps(
            {
                "format": KEYSET_FORMAT,
                "keys": [
                    {"secret_hex": e.key.to_hex(), "config": e.config.to_dict()}
                    for e in self._entries
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> WatermarkKeySet:
        if len(text) > _MAX_KEYSET_BYTES:
            raise WatermarkKeyError(f"key set larger than {_MAX_KEYSET_BYTES} bytes")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            # The parser's message may quote the secret; say only where it broke.
            raise WatermarkKeyError("key set is not valid JSON") from None
        if not isinstance(data, dict) or data.get("format") != KEYSET_FORMAT:
            raise WatermarkKeyError(f"key set must be a JSON object with format {KEYSET_FORMAT!r}")
        keys = data.get("keys")
        if set(data) != {"format", "keys"} or not isinstance(keys, list):
            raise WatermarkKeyError("key set must hold exactly 'format' and a 'keys' list")
        entries = []
        for index, item in enumerate(keys):
            if not isinstance(item, dict) or set(item) != {"secret_hex", "config"}:
                raise WatermarkKeyError(f"key set entry {index} needs secret_hex and config")
            secret = item["secret_hex"]
            if not isinstance(secret, str):
                raise WatermarkKeyError(f"key set entry {index}: secret_hex must be a string")
            try:
                entries.append(
                    KeySetEntry(
                        WatermarkKey.from_hex(secret), WatermarkConfig.from_dict(item["config"])
                    )
                )
            except WatermarkError as exc:
                raise WatermarkKeyError(f"key set entry {index}: {exc.message}") from None
        return cls(entries)


def load_keyset(path: str | Path) -> WatermarkKeySet:
    """Read a key set file (bounded before it is read whole)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(_MAX_KEYSET_BYTES + 1)
    except OSError as exc:
        raise WatermarkKeyError(f"cannot read key set {file}: {exc.strerror}") from None
    return WatermarkKeySet.from_json(raw)


def write_keyset(path: str | Path, keyset: WatermarkKeySet) -> None:
    """Write a key set readable by its owner only (created 0600, then renamed into place)."""
    file = Path(path)
    temp = file.with_name(f".{file.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(keyset.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
