"""The safety policy a publisher signs into a release statement.

Wire form (the ``safety_policy`` object of the release statement)::

    {
      "version": 1,
      "checks": ["langid", "wordlist", "classifier"],      # names from safety.registry
      "rules": {                                            # category (or "*") -> rule
        "*":         {"action": "annotate", "threshold": "0.5"},
        "hate":      {"action": "redact",   "threshold": "0.5"},
        "child_sexual_exploitation": {"action": "block", "threshold": "0.2"}
      },
      "hold_back_chars": 256,                               # streaming hold-back window
      "on_check_failure": "closed",                         # "open" | "closed"
      "guard": null                                         # or {"release": "ORG/NAME@VERSION",
                                                            #     "digest": "sha256:<hex>"}
    }

A guard's optional ``digest`` pins the sha256 of the guard release's signed statement: a
gateway whose ``ORG/NAME@VERSION`` resolves to another statement (another gateway, a
re-registered org) refuses to load that guard, and the policy's failure mode applies.

Actions, weakest to strongest: ``annotate`` (verdict reported, text unchanged), ``redact``
(flagged spans replaced, their sha256 logged), ``regenerate`` (one more attempt; if it is
flagged again the strongest of the other actions applies, at least ``redact``), ``block``
(no text returned). The digest is sha256 over the canonical JSON (sorted keys, no spaces),
so the card, the log and the statement all name the same policy.

Thresholds travel as decimal strings (``"0.5"``): the release statement is canonical JSON
(RFC 8785, integer-only profile, :mod:`licensing.canonical`), which refuses floats. A policy
file may give them as numbers; :meth:`SafetyPolicy.to_dict` always writes strings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from safety.errors import SafetyPolicyError, UnknownCheckError
from safety.findings import HAZARD_CATEGORIES
from safety.registry import known_check_names

__all__ = [
    "ACTIONS",
    "Action",
    "CategoryRule",
    "GuardRef",
    "SafetyPolicy",
    "format_threshold",
    "parse_policy",
    "policy_digest",
    "strongest_action",
]

Action = Literal["annotate", "redact", "regenerate", "block"]
ACTIONS: tuple[Action, ...] = ("annotate", "redact", "regenerate", "block")
"""Every action, weakest first."""

_MAX_HOLD_BACK = 4096
_DECIMAL = re.compile(r"(0|1)(\.[0-9]{1,6})?")
_RELEASE_REF = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*@[^\s:@]+(:[a-z0-9_-]+)?$"
)
_STATEMENT_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def strongest_action(actions: list[Action]) -> Action | None:
    """The strongest of ``actions`` (``None`` for none)."""
    return max(actions, key=ACTIONS.index) if actions else None


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """What happens when a category's score reaches ``threshold``."""

    action: Action
    threshold: float = 0.5


@dataclass(frozen=True, slots=True)
class GuardRef:
    """A guard model published as an ordinary tiergate release (``ORG/NAME@VERSION[:tier]``),
    optionally pinned to its release statement's digest (``sha256:<hex>``)."""

    release: str
    digest: str | None = None

    def pinned_to(self, statement_sha256: str) -> bool:
        """Whether a release statement with this hex sha256 is the one the policy names (any,
        when nothing is pinned)."""
        return self.digest is None or self.digest == f"sha256:{statement_sha256}"

    def to_dict(self) -> dict[str, str]:
        """The wire form; ``digest`` only when pinned, so unpinned policies keep their digest."""
        wire = {"release": self.release}
        if self.digest is not None:
            wire["digest"] = self.digest
        return wire


@dataclass(frozen=True)
class SafetyPolicy:
    """A validated safety policy. Build it with :func:`parse_policy`."""

    checks: tuple[str, ...]
    rules: Mapping[str, CategoryRule]
    hold_back_chars: int = 256
    on_check_failure: Literal["open", "closed"] = "closed"
    guard: GuardRef | None = None
    version: int = 1

    def rule_for(self, category: str) -> CategoryRule | None:
        """The rule for ``category``: its own, else the ``"*"`` default, else none."""
        return self.rules.get(category) or self.rules.get("*")

    def to_dict(self) -> dict[str, Any]:
        """The wire form (what the release statement carries)."""
        return {
            "version": self.version,
            "checks": list(self.checks),
            "rules": {
                name: {"action": rule.action, "threshold": format_threshold(rule.threshold)}
                for name, rule in sorted(self.rules.items())
            },
            "hold_back_chars": self.hold_back_chars,
            "on_check_failure": self.on_check_failure,
            "guard": None if self.guard is None else self.guard.to_dict(),
        }

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON of :meth:`to_dict`."""
        return policy_digest(self.to_dict())


def policy_digest(wire: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a policy's wire form (as a release statement carries it)."""
    # Strings, integers and null only: this is its RFC 8785 form too.
    canonical = json.dumps(dict(wire), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def format_threshold(value: float) -> str:
    """A threshold as the decimal string the statement signs (at most 6 places)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _threshold(category: str, raw: object) -> float:
    if isinstance(raw, str):
        if not _DECIMAL.fullmatch(raw):
            raise SafetyPolicyError(f"rule for {category!r}: threshold {raw[:20]!r} is no decimal")
        value = float(raw)
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        raise SafetyPolicyError(f"rule for {category!r}: threshold must be a number")
    else:
        value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise SafetyPolicyError(f"rule for {category!r}: threshold must be in [0, 1]")
    # Rounded as it is signed, so a parsed policy and its wire form agree.
    return float(format_threshold(value))


def _rule(category: str, raw: object) -> CategoryRule:
    if not isinstance(raw, Mapping):
        raise SafetyPolicyError(f"rule for {category!r} must be an object")
    unknown = set(raw) - {"action", "threshold"}
    if unknown:
        raise SafetyPolicyError(f"rule for {category!r} has unknown fields {sorted(unknown)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise SafetyPolicyError(f"rule for {category!r}: action must be one of {list(ACTIONS)}")
    threshold = _threshold(category, raw.get("threshold", 0.5))
    return CategoryRule(action=cast(Action, action), threshold=threshold)


def parse_policy(data: object) -> SafetyPolicy:
    """Validate the wire form; raises :class:`SafetyPolicyError` (or
    :class:`UnknownCheckError` for a check this install does not know)."""
    if not isinstance(data, Mapping):
        raise SafetyPolicyError("a safety policy must be a JSON object")
    allowed = {"version", "checks", "rules", "hold_back_chars", "on_check_failure", "guard"}
    unknown = set(data) - allowed
    if unknown:
        raise SafetyPolicyError(f"unknown safety policy fields {sorted(unknown)}")
    if data.get("version", 1) != 1:
        raise SafetyPolicyError("unsupported safety policy version (this install reads 1)")
    checks = data.get("checks")
    if not isinstance(checks, list) or not checks or not all(isinstance(c, str) for c in checks):
        raise SafetyPolicyError("checks must be a non-empty list of check names")
    if len(set(checks)) != len(checks):
        raise SafetyPolicyError("checks lists a check twice")
    missing = sorted(set(checks) - known_check_names())
    if missing:
        raise UnknownCheckError(
            f"unknown safety checks {missing}; known: {sorted(known_check_names())}"
        )
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, Mapping) or not raw_rules:
        raise SafetyPolicyError("rules must be a non-empty object of category -> rule")
    categories = set(HAZARD_CATEGORIES) | {"*"}
    bad = sorted(set(raw_rules) - categories)
    if bad:
        raise SafetyPolicyError(f"rules name unknown categories {bad}")
    rules = {str(name): _rule(str(name), raw) for name, raw in raw_rules.items()}
    hold_back = data.get("hold_back_chars", 256)
    if isinstance(hold_back, bool) or not isinstance(hold_back, int):
        raise SafetyPolicyError("hold_back_chars must be an integer")
    if not 0 <= hold_back <= _MAX_HOLD_BACK:
        raise SafetyPolicyError(f"hold_back_chars must be in [0, {_MAX_HOLD_BACK}]")
    failure = data.get("on_check_failure", "closed")
    if failure not in ("open", "closed"):
        raise SafetyPolicyError('on_check_failure must be "open" or "closed"')
    guard_raw = data.get("guard")
    guard: GuardRef | None = None
    if guard_raw is not None:
        if (
            not isinstance(guard_raw, Mapping)
            or "release" not in guard_raw
            or not set(guard_raw) <= {"release", "digest"}
        ):
            raise SafetyPolicyError(
                'guard must be null or {"release": "ORG/NAME@VERSION"[, "digest": "sha256:<hex>"]}'
            )
        ref = guard_raw["release"]
        if not isinstance(ref, str) or not _RELEASE_REF.match(ref):
            raise SafetyPolicyError("guard.release must read ORG/NAME@VERSION[:tier]")
        pin = guard_raw.get("digest")
        if pin is not None and (not isinstance(pin, str) or not _STATEMENT_DIGEST.match(pin)):
            raise SafetyPolicyError(
                "guard.digest must be sha256:<64 lowercase hex> (the guard release statement's)"
            )
        guard = GuardRef(release=ref, digest=pin)
    if ("guard" in checks) != (guard is not None):
        raise SafetyPolicyError('a policy lists the "guard" check exactly when it names a guard')
    return SafetyPolicy(
        checks=tuple(checks),
        rules=rules,
        hold_back_chars=hold_back,
        on_check_failure=cast(Literal["open", "closed"], failure),
        guard=guard,
    )
