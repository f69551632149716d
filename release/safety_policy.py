"""The output-safety policy a publisher signs into a release: read from a file, checked
before the build starts, and named by digest on the card and in the AI BOM.

The policy's meaning belongs to the :mod:`safety` library (``safety.policy``); this module
only reads the publisher's file (JSON, TOML or YAML, by suffix) and refuses a bad one with
the library's typed errors (``UnknownCheckError`` for a check this install does not know).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safety.errors import SafetyPolicyError
from safety.policy import SafetyPolicy, parse_policy, policy_digest

__all__ = [
    "MAX_POLICY_FILE_BYTES",
    "load_policy_file",
    "safety_policy_lines",
    "statement_policy_digest",
]

MAX_POLICY_FILE_BYTES = 64 * 1024
"""A policy is a few checks and rules; a larger file is refused before it is parsed."""


def load_policy_file(path: str | Path) -> SafetyPolicy:
    """Read and validate a policy file (``.json``, ``.toml``, ``.yaml``/``.yml``)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_POLICY_FILE_BYTES:
            raise SafetyPolicyError(f"{file}: larger than {MAX_POLICY_FILE_BYTES} bytes")
        text = file.read_text("utf-8")
    except OSError as exc:
        raise SafetyPolicyError(f"{file}: cannot read the safety policy ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SafetyPolicyError(f"{file}: not UTF-8 text ({exc.reason})") from None
    suffix = file.suffix.lower()
    try:
        if suffix == ".json":
            data: object = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml  # type: ignore[import-untyped]

            data = yaml.safe_load(text)
        else:
            raise SafetyPolicyError(f"{file}: a safety policy is a .json, .toml or .yaml file")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise SafetyPolicyError(f"{file}: not valid {suffix[1:].upper()} ({exc})") from None
    except Exception as exc:  # yaml.YAMLError, imported lazily
        if type(exc).__module__.startswith("yaml"):
            raise SafetyPolicyError(f"{file}: not valid YAML ({exc})") from None
        raise
    return parse_policy(data)


def statement_policy_digest(policy: Mapping[str, object] | None) -> str | None:
    """The digest of the ``safety_policy`` a statement signs (``None`` when it has none)."""
    return None if policy is None else policy_digest(policy)


def safety_policy_lines(policy: Mapping[str, Any]) -> list[str]:
    """The card's *Output safety* section: the policy's digest and what it does.

    Every value was validated by :func:`safety.policy.parse_policy` (names, actions,
    decimals, a release reference), so none can break the Markdown table.
    """
    rules = policy.get("rules") or {}
    guard = policy.get("guard")
    lines = [
        "## Output safety",
        "",
        "The gateway scans every output of this release with the safety policy signed in the "
        f"release statement (policy digest `{policy_digest(policy)}`), and logs each verdict "
        "(categories, scores, the policy digest, the sha256 of any removed span) with the call.",
        "",
        f"- Checks: {', '.join(f'`{c}`' for c in policy.get('checks') or [])}",
        f"- Streaming hold-back window: {policy.get('hold_back_chars')} characters",
        f"- When a check cannot run: fail {policy.get('on_check_failure')}",
    ]
    if isinstance(guard, Mapping):
        lines.append(f"- Guard model: the verified release `{guard.get('release')}`")
    lines += ["", "| Category | Action | Threshold |", "| --- | --- | --- |"]
    for category, rule in sorted(rules.items()):
        shown = "every other category" if category == "*" else f"`{category}`"
        lines.append(f"| {shown} | {rule.get('action')} | {rule.get('threshold')} |")
    lines.append("")
    return lines
