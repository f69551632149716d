"""Which engine samples which model tier: the engines file (``TIERGATE_ENGINES_FILE``).

The embedded default is the ``local`` engine (in-process transformers). A TOML file routes
exact release tiers to pools of vLLM OpenAI servers::

    [[engine]]
    model = "acme/tiny@1.0.0:optimized"   # ORG/NAME@VERSION[:TIER]; tier default "open"
    urls = ["http://vllm-0:8000", "http://vllm-1:8000"]   # replicas
    served_model_name = "acme/tiny@1.0.0:optimized"       # optional; default = model
    api_key_env = "TIERGATE_ENGINE_API_KEY"               # optional: env var with --api-key
    timeout_s = 300                                        # optional

The file is checked whole when the gateway starts; any mistake stops it with
:class:`EngineConfigInvalid` naming the entry and the field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigurationError, ValidationFailed
from gateway.generation.models import parse_model_name

__all__ = ["EngineConfigInvalid", "EngineSpec", "load_engines_file", "parse_engines"]

_MAX_FILE_BYTES = 1 << 20
_KEYS = frozenset({"model", "urls", "served_model_name", "api_key_env", "timeout_s"})
DEFAULT_TIMEOUT_S = 300.0


class EngineConfigInvalid(ConfigurationError):
    """The engines file cannot be read or says something impossible (the gateway will not
    start with it)."""

    code = "engine_config_invalid"
    title = "Engines file invalid"


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """One pool of vLLM servers serving exactly one release tier."""

    repo_id: str
    version: str
    tier: str
    urls: tuple[str, ...]
    served_model_name: str
    api_key: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def model(self) -> str:
        return f"{self.repo_id}@{self.version}:{self.tier}"

    def __repr__(self) -> str:  # never the API key
        return f"EngineSpec(model={self.model!r}, urls={list(self.urls)!r})"


def _fail(where: str, message: str) -> EngineConfigInvalid:
    return EngineConfigInvalid(f"engines file, {where}: {message}")


def _url(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"each of urls must be a string, got {value!r:.80}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(where, f"{value!r:.200} is not an http(s) base URL")
    if parts.query or parts.fragment:
        raise _fail(where, f"{value!r:.200}: a base URL has no query or fragment")
    return value.rstrip("/")


def _entry(index: int, item: Any, environ: Mapping[str, str]) -> EngineSpec:
    where = f"[[engine]] #{index + 1}"
    if not isinstance(item, dict):
        raise _fail(where, "must be a table")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise _fail(where, f"unknown key(s) {', '.join(unknown)} (known: {known})")
    model = item.get("model")
    if not isinstance(model, str):
        raise _fail(where, "model (ORG/NAME@VERSION[:TIER]) is required")
    where = f"{where} ({model:.200})"
    try:
        repo_id, version, tier = parse_model_name(model)
    except ValidationFailed as exc:
        raise _fail(where, exc.message) from None
    if version is None:
        # An engine loads one set of weights: "the latest" would silently change under it.
        raise _fail(where, "model must name a version: ORG/NAME@VERSION[:TIER]")
    urls = item.get("urls")
    if not isinstance(urls, list) or not urls:
        raise _fail(where, "urls must be a non-empty list of base URLs")
    clean = tuple(_url(where, u) for u in urls)
    if len(set(clean)) != len(clean):
        raise _fail(where, "urls lists a server twice")
    served = item.get("served_model_name", f"{repo_id}@{version}:{tier}")
    if not isinstance(served, str) or not served or len(served) > 256:
        raise _fail(where, "served_model_name must be a non-empty string")
    api_key = None
    if "api_key_env" in item:
        name = item["api_key_env"]
        if not isinstance(name, str) or not name:
            raise _fail(where, "api_key_env must name an environment variable")
        api_key = environ.get(name)
        if not api_key:
            raise _fail(where, f"api_key_env names {name}, which is not set")
    timeout = item.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise _fail(where, "timeout_s must be a number of seconds in (0, 3600]")
    return EngineSpec(repo_id, version, tier, clean, served, api_key, float(timeout))


def parse_engines(text: str, environ: Mapping[str, str] | None = None) -> list[EngineSpec]:
    """The pools an engines file declares (validated; duplicates refused)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EngineConfigInvalid(f"engines file is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"engine"})
    if unknown:
        raise EngineConfigInvalid(
            f"engines file: unknown top-level key(s) {', '.join(unknown)} (only [[engine]])"
        )
    items = data.get("engine", [])
    if not isinstance(items, list):
        raise EngineConfigInvalid("engines file: engine must be an array of tables ([[engine]])")
    env = os.environ if environ is None else environ
    specs = [_entry(i, item, env) for i, item in enumerate(items)]
    seen: dict[str, int] = {}
    for index, spec in enumerate(specs):
        first = seen.setdefault(spec.model, index)
        if first != index:
            raise EngineConfigInvalid(
                f"engines file: {spec.model} is declared twice (entries #{first + 1} and "
                f"#{index + 1}); list every replica in one entry's urls"
            )
    return specs


def load_engines_file(path: Path, environ: Mapping[str, str] | None = None) -> list[EngineSpec]:
    """Read and validate the engines file at ``path`` (bounded before it is read)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise EngineConfigInvalid(f"cannot read engines file {path}: {exc.strerror}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise EngineConfigInvalid(f"engines file {path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EngineConfigInvalid(f"engines file {path} is not UTF-8") from None
    return parse_engines(text, environ)
