"""What the safety layer did to every output of a release, and what happened to every report
about it, read from the transparency log alone (issue 19, "Done when").

The log is read through a caller-supplied ``get(path, params) -> JSON`` (the CLI passes an
HTTP client's): the checkpoint's signature is checked with the log's verifier key, every
entry up to it is hashed and the Merkle root recomputed, so the summary stands on signed
bytes and not on the gateway's database. Per output: the call, the policy digest, the
categories, what was asked and what was done, the sha256 of each removed span, the failed
and unavailable checks. Per report: its ``report.*`` events in log order, its disclosure
deadline, and whether the deadline has passed with no ``disclosed`` step.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.errors import ValidationFailed

__all__ = [
    "LOG_PAGE",
    "LogAuditFailed",
    "OutputAudit",
    "ReportAudit",
    "SafetyAudit",
    "audit_safety",
    "read_verified_entries",
]

LOG_PAGE = 1000
"""Entries asked for per request (the log routes' page size)."""

# Reads ``path`` with query ``params`` from the log and returns the decoded JSON (or, for the
# checkpoint, the note's text); raises on transport errors.
LogGet = Callable[[str, Mapping[str, Any]], Any]


class LogAuditFailed(ValidationFailed):
    """The log does not verify: a bad checkpoint signature, a missing entry, an entry that
    does not hash to its leaf, or entries that do not hash to the signed root."""

    code = "log_audit_failed"
    title = "Log audit failed"


@dataclass(frozen=True)
class OutputAudit:
    log_index: int
    time: str
    call_id: str
    choice: int
    output_sha256: str | None
    policy_digest: str | None
    language: str | None
    categories: list[str]
    action: str | None  # what the policy asked for
    applied: str | None  # what was done
    removed_sha256: list[str]
    regenerated: bool
    failed_checks: list[dict[str, Any]]
    unavailable_checks: dict[str, str]


@dataclass(frozen=True)
class ReportAudit:
    report_id: int
    received_index: int
    category: str | None
    verification: dict[str, Any]
    disclose_after: str | None
    events: list[dict[str, Any]] = field(default_factory=list)  # step, index, time
    state: str = "received"
    rewarded: bool = False
    # The deadline passed with no "disclosed" step: the report is public by the deadline rule.
    public_by_deadline: bool = False


@dataclass(frozen=True)
class SafetyAudit:
    release: str
    checkpoint_size: int
    checkpoint_origin: str
    entries_read: int
    unreadable_entries: int
    outputs: list[OutputAudit]
    unscanned_calls: list[int]  # logged calls of the release with no safety record
    reports: list[ReportAudit]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        """Outputs per applied action (``none`` when nothing was flagged)."""
        out: dict[str, int] = {}
        for output in self.outputs:
            key = output.applied or "none"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))


def _b64(value: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise LogAuditFailed(f"{what} is not base64") from None


def read_verified_entries(
    get: LogGet, vkey: str
) -> tuple[Any, list[tuple[int, dict[str, Any] | None]]]:
    """The signed checkpoint and every entry up to it (``None`` where this reader may not see
    the entry), after checking the signature and recomputing the root from the leaves."""
    from licensing.errors import TransparencyLogError
    from licensing.tlog.checkpoint import open_checkpoint
    from licensing.tlog.merkle import leaf_hash, root_from_leaf_hashes
    from licensing.tlog.note import Verifier

    try:
        verifier = Verifier.from_vkey(vkey.strip())
        checkpoint = open_checkpoint(str(get("/log/checkpoint", {})), [verifier])
    except TransparencyLogError as exc:
        raise LogAuditFailed(f"the checkpoint does not verify: {exc}") from None
    leaves: list[bytes] = []
    entries: list[tuple[int, dict[str, Any] | None]] = []
    while len(leaves) < checkpoint.size:
        start = len(leaves)
        end = min(start + LOG_PAGE, checkpoint.size)
        page = get("/log/entries", {"start": start, "end": end})
        for item in page.get("entries", []) if isinstance(page, Mapping) else []:
            index = len(leaves)
            if item.get("index") != index:
                raise LogAuditFailed(f"entry {index} is missing (got {item.get('index')})")
            claimed = _b64(item.get("leaf_hash", ""), f"entry {index}'s leaf hash")
            raw = item.get("entry")
            parsed: dict[str, Any] | None = None
            if raw is not None:
                if not hmac.compare_digest(leaf_hash(str(raw).encode("utf-8")), claimed):
                    raise LogAuditFailed(f"entry {index} does not hash to its leaf hash")
                parsed = json.loads(raw)
            leaves.append(claimed)
            entries.append((index, parsed))
        if len(leaves) == start:
            raise LogAuditFailed(f"the log returned no entries from {start}")
    if not hmac.compare_digest(root_from_leaf_hashes(leaves), checkpoint.root_hash):
        raise LogAuditFailed(f"the {checkpoint.size} entries do not hash to the signed root")
    return checkpoint, entries


def _matches(model: object, repo_id: str, version: str | None) -> bool:
    if isinstance(model, Mapping):
        found_repo, found_version = model.get("repo_id"), model.get("version")
    elif isinstance(model, str) and "@" in model:
        found_repo, found_version = model.split("@", 1)
    else:
        return False
    return found_repo == repo_id and (version is None or found_version == version)


def _outputs(index: int, entry: Mapping[str, Any]) -> tuple[list[OutputAudit], bool]:
    fields = entry.get("fields", {})
    call = fields.get("safety")
    if not isinstance(call, Mapping):
        return [], False
    unavailable = dict(call.get("unavailable_checks") or {})
    out = []
    for choice, output in enumerate(fields.get("outputs") or []):
        verdict = output.get("safety") or {}
        out.append(
            OutputAudit(
                log_index=index,
                time=str(entry.get("time", "")),
                call_id=str(fields.get("call_id", "")),
                choice=choice,
                output_sha256=output.get("sha256"),
                policy_digest=verdict.get("policy_digest", call.get("policy_digest")),
                language=verdict.get("language"),
                categories=list(verdict.get("categories") or []),
                action=verdict.get("action"),
                applied=verdict.get("applied"),
                removed_sha256=list(verdict.get("removed_sha256") or []),
                regenerated=bool(verdict.get("regenerated", False)),
                failed_checks=list(verdict.get("failed_checks") or []),
                unavailable_checks=unavailable,
            )
        )
    return out, True


def audit_safety(
    entries: list[tuple[int, dict[str, Any] | None]],
    *,
    repo_id: str,
    version: str | None,
    checkpoint_size: int,
    checkpoint_origin: str,
    now: datetime,
) -> SafetyAudit:
    """Summarise verified ``entries`` for ``repo_id`` (every version when ``version`` is
    ``None``): each scanned output, each call logged without a safety record, each report."""
    outputs: list[OutputAudit] = []
    unscanned: list[int] = []
    reports: dict[int, dict[str, Any]] = {}
    unreadable = 0
    for index, entry in entries:
        if entry is None:
            unreadable += 1
            continue
        action = str(entry.get("action", ""))
        fields = entry.get("fields") or {}
        if action == "generation.completed" and _matches(fields.get("model"), repo_id, version):
            found, scanned = _outputs(index, entry)
            outputs.extend(found)
            if not scanned:
                unscanned.append(index)
        elif action == "report.received" and _matches(fields.get("model"), repo_id, version):
            reports[int(fields["report_id"])] = {
                "report_id": int(fields["report_id"]),
                "received_index": index,
                "category": fields.get("category"),
                "verification": dict(fields.get("verification") or {}),
                "disclose_after": fields.get("disclose_after"),
                "events": [{"step": "received", "index": index, "time": entry.get("time")}],
            }
        elif action.startswith("report.") and fields.get("report_id") in reports:
            step = fields.get("step") or action.removeprefix("report.")
            event = {"step": step, "index": index, "time": entry.get("time")}
            event.update({k: fields[k] for k in ("version", "from") if k in fields})
            reports[int(fields["report_id"])]["events"].append(event)
    return SafetyAudit(
        release=repo_id if version is None else f"{repo_id}@{version}",
        checkpoint_size=checkpoint_size,
        checkpoint_origin=checkpoint_origin,
        entries_read=len(entries),
        unreadable_entries=unreadable,
        outputs=outputs,
        unscanned_calls=unscanned,
        reports=[_report(raw, now) for _, raw in sorted(reports.items())],
    )


# Steps that change a report's state; "rewarded" is a flag, "linked"/"commented" are notes.
_STATE_STEPS = ("received", "triaged", "accepted", "rejected", "fixed", "disclosed")


def _report(raw: dict[str, Any], now: datetime) -> ReportAudit:
    steps = [e["step"] for e in raw["events"]]
    state = next((s for s in reversed(steps) if s in _STATE_STEPS), "received")
    deadline = raw.get("disclose_after")
    public_by_deadline = False
    if isinstance(deadline, str) and "disclosed" not in steps:
        try:
            when = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None:
            public_by_deadline = now >= (when if when.tzinfo else when.replace(tzinfo=UTC))
    return ReportAudit(
        report_id=raw["report_id"],
        received_index=raw["received_index"],
        category=raw.get("category"),
        verification=raw["verification"],
        disclose_after=deadline,
        events=raw["events"],
        state=state,
        rewarded="rewarded" in steps,
        public_by_deadline=public_by_deadline,
    )
