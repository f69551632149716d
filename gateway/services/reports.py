"""Flaw and bias reports: submit one, verify its quoted output against the log, move it along.

A report names a model and may quote its output. The quote is checked against the log, first
by output digest (every ``generation.completed`` entry carries the sha256 of each output text,
and each logged choice's row in ``generation_calls`` carries it too, indexed),
then by watermark attribution (:mod:`gateway.services.detection`). A verified report says
"genuine output of ORG/NAME@VERSION, logged call N" with the entry's inclusion proof; anything
else says "not verified" and why. The answer names only the entry's public facts (call id,
log index, model, time, proof): never the other call's prompt, requester or other outputs.

Every lifecycle step is a log event (``report.received``, ``report.triaged``, ...), carrying
digests, not the report's text, so a publisher cannot silently drop a report, and the report
itself stays private until it is disclosed. A report is readable by its reporter and by the
model's org; by everyone once disclosed or once its disclosure deadline has passed (computed
when read, so no job has to run).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.engine import begin_write
from gateway.db.models import FlawReport, GenerationCall, LogEntry, Release, Role, User
from gateway.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from gateway.generation.models import parse_model_name
from gateway.ledger.events import Actor, digest_of, record_event
from gateway.ledger.reads import inclusion
from gateway.services import catalog, releases
from gateway.services.detection import DetectionRuntime, detect

__all__ = [
    "CATEGORIES",
    "DISCLOSURE_DAYS",
    "InvalidTransition",
    "ReportCategoryInvalid",
    "ReportNotFound",
    "ReportTooLarge",
    "ReportView",
    "avid_report",
    "get_report",
    "list_reports",
    "submit_report",
    "transition_report",
]

log = logging.getLogger("tiergate.reports")
CATEGORIES = ("bias", "toxicity", "harmful", "factuality", "privacy", "security", "other")
DISCLOSURE_DAYS = 90
MAX_DESCRIPTION_CHARS = 20_000
MAX_QUOTE_CHARS = 100_000
MAX_NOTE_CHARS = 2_000

# state -> the steps a publisher may take from it ("rewarded" is a flag, set once).
_NEXT: dict[str, frozenset[str]] = {
    "received": frozenset({"triaged", "rejected", "disclosed"}),
    "triaged": frozenset({"accepted", "rejected", "disclosed"}),
    "accepted": frozenset({"fixed", "disclosed"}),
    "fixed": frozenset({"disclosed"}),
    "rejected": frozenset({"disclosed"}),
    "disclosed": frozenset(),
}
STEPS = ("triaged", "accepted", "rejected", "fixed", "disclosed", "rewarded")
_REWARDABLE = frozenset({"accepted", "fixed", "disclosed"})


class ReportNotFound(NotFound):
    """No such report, or one the caller may not see yet (the same answer for both)."""

    code = "report_not_found"
    title = "No such report"


class ReportCategoryInvalid(ValidationFailed):
    code = "report_category_invalid"
    title = "Unknown report category"


class ReportTooLarge(PayloadTooLarge):
    code = "report_too_large"
    title = "Report too large"


class InvalidTransition(Conflict):
    """A lifecycle step that is not allowed from the report's current state."""

    code = "report_transition_invalid"
    title = "Report step not allowed"


@dataclass(frozen=True, slots=True)
class ReportView:
    """What a reader of a report sees."""

    id: int
    model: str
    category: str
    description: str
    quoted_output: str | None
    call_id: str | None
    verification: dict[str, Any]
    state: str
    fixed_version: str | None
    rewarded: bool
    public: bool
    disclose_after: datetime
    created_at: datetime
    reporter: str | None  # shown to the model's org and the reporter only
    log_index: int  # of the ``report.received`` event

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["disclose_after"] = _iso(self.disclose_after)
        out["created_at"] = _iso(self.created_at)
        return out


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_public(report: FlawReport, now: datetime) -> bool:
    return report.disclosed_at is not None or now >= report.disclose_after


def _is_insider(principal: Principal | None, report: FlawReport) -> bool:
    """The reporter, the model's org (publisher role), or an admin."""
    if principal is None:
        return False
    if principal.role is Role.admin or principal.user_id == report.reporter_id:
        return True
    return principal.role is Role.publisher and principal.org_id == report.org_id


def _can_manage(principal: Principal, report: FlawReport) -> bool:
    if principal.role is Role.admin:
        return True
    return principal.role is Role.publisher and principal.org_id == report.org_id


def _view(
    session: Session, principal: Principal | None, report: FlawReport, now: datetime
) -> ReportView:
    assert report.id is not None
    insider = _is_insider(principal, report)
    reporter = None
    if insider:
        user = session.get(User, report.reporter_id)
        reporter = user.username if user is not None else None
    model = report.repo_id + (f"@{report.version}" if report.version else "")
    return ReportView(
        id=report.id,
        model=model,
        category=report.category,
        description=report.description,
        quoted_output=report.quoted_output,
        call_id=report.call_id,
        verification=json.loads(report.verification),
        state=report.state,
        fixed_version=report.fixed_version,
        rewarded=report.rewarded,
        public=_is_public(report, now),
        disclose_after=report.disclose_after,
        created_at=report.created_at,
        reporter=reporter,
        log_index=report.log_index if report.log_index is not None else -1,
    )


# ------------------------------------------------------------------ verification


def _proof(session: Session, index: int) -> dict[str, Any] | None:
    try:
        found = inclusion(session, index, None)
    except Exception:  # not integrated yet, or no checkpoint: the index still stands
        return None
    return {
        "index": found.index,
        "tree_size": found.size,
        "leaf_hash": found.leaf_hash.hex(),
        "root_hash": found.root_hash.hex(),
        "inclusion_path": [h.hex() for h in found.proof],
        "checkpoint": found.checkpoint,
    }


def _not_verified(reason: str) -> dict[str, Any]:
    return {"status": "not_verified", "statement": f"not verified: {reason}", "reason": reason}


def _verified(
    session: Session,
    *,
    method: str,
    model: str,
    call_id: str,
    log_index: int,
    time: str,
    **more: Any,
) -> dict[str, Any]:
    return {
        "status": "verified",
        "method": method,
        "statement": f"genuine output of {model}, logged call {log_index}",
        "model": model,
        "call_id": call_id,
        "log_index": log_index,
        "time": time,
        "inclusion_proof": _proof(session, log_index),
        **more,
    }


def _by_digest(
    session: Session, release: Release, quote: str, call_id: str | None
) -> dict[str, Any] | None:
    """The logged call whose output has exactly the quote's sha256, if any.

    Found by the indexed per-choice digest (``generation_calls.text_sha256``), then confirmed
    against the log entry itself: the entry, not the index, is what the answer vouches for."""
    digest = digest_of(quote)
    query = (
        select(LogEntry)
        .join(GenerationCall, col(GenerationCall.log_index) == col(LogEntry.idx))
        .where(GenerationCall.text_sha256 == digest)
        .where(GenerationCall.release_id == release.id)
        .where(LogEntry.action == "generation.completed")
        .where(LogEntry.org_id == release.org_id)
        .order_by(col(LogEntry.idx))
    )
    if call_id is not None:
        query = query.where(GenerationCall.call_id == call_id)
    for row in session.exec(query):
        fields = json.loads(row.entry).get("fields", {})
        model = fields.get("model", {})
        if model.get("repo_id") != release.repo_id or model.get("version") != release.version:
            continue
        if call_id is not None and fields.get("call_id") != call_id:
            continue
        if not any(o.get("sha256") == digest for o in fields.get("outputs", [])):
            continue  # the digest was in another field (a prompt digest): not an output
        return _verified(
            session,
            method="output_digest",
            model=f"{release.repo_id}@{release.version}",
            call_id=str(fields.get("call_id")),
            log_index=row.idx,
            time=json.loads(row.entry).get("time", ""),
            output_sha256=digest,
        )
    return None


def _by_watermark(
    session: Session,
    principal: Principal,
    runtime: DetectionRuntime,
    release: Release,
    quote: str,
    call_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    result = detect(
        session,
        principal,
        runtime,
        text=quote,
        token_ids=None,
        model=f"{release.repo_id}@{release.version}",
        alpha=1e-6,
        now=now,
    )
    call = result.attribution
    if not result.watermarked:
        return _not_verified(
            f"the text is not a logged output of {release.repo_id}@{release.version}, and its "
            f"watermark test does not attribute it (verdict {result.verdict}, "
            f"{result.tokens_scored} tokens scored, p={result.p_value:.3g})"
        )
    if call is None:
        return _not_verified("the watermark is present but no single logged call is attributed")
    if call_id is not None and call.call_id != call_id:
        return _not_verified(f"the watermark attributes the text to another call than {call_id}")
    name = f"{release.repo_id}@{release.version}"
    return {
        **_verified(
            session,
            method="watermark",
            model=name,
            call_id=call.call_id,
            log_index=call.log_index,
            time=call.time,
            p_value=call.p_value,
            tokens_scored=result.tokens_scored,
        ),
        "inclusion_proof": call.inclusion_proof,
    }


def verify_quote(
    session: Session,
    principal: Principal,
    runtime: DetectionRuntime,
    release: Release,
    quote: str,
    call_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Digest first (exact and cheap), then the watermark (edited or partial quotes)."""
    try:  # a proof needs the call's entry in a signed tree; a call may have just been logged
        runtime.integrate()
    except Exception as exc:  # the log being unavailable must not hide the verification
        log.warning("log integration before a proof failed: %s", type(exc).__name__)
    found = _by_digest(session, release, quote, call_id)
    if found is not None:
        return found
    return _by_watermark(session, principal, runtime, release, quote, call_id, now)


# ------------------------------------------------------------------ use cases


def _release_named(session: Session, principal: Principal | None, model: str) -> Release:
    if ":" in model:
        raise ValidationFailed(f"name the model as ORG/NAME[@VERSION], not a tier: {model!r:.200}")
    repo_id, version, _ = parse_model_name(model)
    if version is not None:
        return releases.find_release(session, repo_id, version, viewer=principal)
    return catalog.current_release(session, repo_id, principal)


def submit_report(
    session: Session,
    principal: Principal,
    runtime: DetectionRuntime,
    *,
    model: str,
    category: str,
    description: str,
    quoted_output: str | None,
    call_id: str | None,
    now: datetime,
) -> ReportView:
    if category not in CATEGORIES:
        raise ReportCategoryInvalid(
            f"category must be one of {', '.join(CATEGORIES)}; got {category!r:.50}"
        )
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ReportTooLarge(f"description is over {MAX_DESCRIPTION_CHARS} characters")
    if quoted_output is not None and len(quoted_output) > MAX_QUOTE_CHARS:
        raise ReportTooLarge(f"quoted output is over {MAX_QUOTE_CHARS} characters")
    if not description.strip():
        raise ValidationFailed("describe the flaw: description is empty")
    if call_id is not None and (len(call_id) > 40 or not call_id.isascii()):
        raise ValidationFailed("call_id is not a call id of this gateway")
    release = _release_named(session, principal, model)
    if quoted_output is None or not quoted_output.strip():
        verification = _not_verified("the report quotes no model output")
    else:
        verification = verify_quote(
            session, principal, runtime, release, quoted_output, call_id, now
        )
    version = release.version if "@" in model else None
    report = FlawReport(
        repo_id=release.repo_id,
        version=version,
        org_id=release.org_id,
        reporter_id=principal.user_id,
        category=category,
        description=description,
        quoted_output=quoted_output,
        call_id=call_id,
        verification=json.dumps(verification),
        state="received",
        disclose_after=now + timedelta(days=DISCLOSURE_DAYS),
        created_at=now,
    )
    session.add(report)
    session.flush()
    report.log_index = record_event(
        session,
        action="report.received",
        actor=Actor.of(principal),
        resource=f"report:{report.id}",
        now=now,
        org_id=release.org_id,
        fields={
            "report_id": report.id,
            "model": f"{release.repo_id}@{release.version}",
            "category": category,
            "description_sha256": digest_of(description),
            "quote_sha256": digest_of(quoted_output) if quoted_output else None,
            "verification": {
                "status": verification["status"],
                "method": verification.get("method"),
                "log_index": verification.get("log_index"),
            },
            "disclose_after": _iso(report.disclose_after),
        },
    )
    session.flush()
    return _view(session, principal, report, now)


def get_report(
    session: Session, principal: Principal | None, report_id: int, now: datetime
) -> ReportView:
    report = session.get(FlawReport, report_id)
    if report is None or not (_is_insider(principal, report) or _is_public(report, now)):
        raise ReportNotFound(f"no report {report_id}")
    return _view(session, principal, report, now)


def list_reports(
    session: Session, principal: Principal | None, model: str, now: datetime
) -> list[ReportView]:
    """The reports about ``ORG/NAME`` the caller may see, oldest first."""
    repo_id, _, _ = parse_model_name(model)
    releases.split_repo_id(repo_id)
    rows = session.exec(
        select(FlawReport).where(FlawReport.repo_id == repo_id).order_by(col(FlawReport.id))
    )
    return [
        _view(session, principal, r, now)
        for r in rows
        if _is_insider(principal, r) or _is_public(r, now)
    ]


def transition_report(
    session: Session,
    principal: Principal,
    report_id: int,
    *,
    step: str,
    version: str | None,
    note: str | None,
    now: datetime,
) -> ReportView:
    """One lifecycle step by the model's org, as one conditional write and one log event."""
    begin_write(session)
    report = session.get(FlawReport, report_id, populate_existing=True)
    if report is None or not (_is_insider(principal, report) or _is_public(report, now)):
        raise ReportNotFound(f"no report {report_id}")
    if not _can_manage(principal, report):
        raise Forbidden("only the model's org moves a report along")
    if step not in STEPS:
        raise ValidationFailed(f"step must be one of {', '.join(STEPS)}; got {step!r:.50}")
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ReportTooLarge(f"note is over {MAX_NOTE_CHARS} characters")
    was = report.state
    values: dict[str, Any]
    where: list[Any]
    if step == "rewarded":
        if was not in _REWARDABLE or report.rewarded:
            raise InvalidTransition(
                f"report {report_id} is {was}{' and rewarded' if report.rewarded else ''}: "
                "only an accepted report is rewarded, once",
                extra={"state": was},
            )
        values = {"rewarded": True}
        where = [col(FlawReport.rewarded).is_(False), FlawReport.state == was]
    else:
        if step not in _NEXT[was]:
            raise InvalidTransition(
                f"report {report_id} is {was}; it cannot become {step}", extra={"state": was}
            )
        values = {"state": step}
        if step == "fixed":
            if version is None:
                raise ValidationFailed("a fix names the version that fixes it")
            fixed = releases.find_release(session, report.repo_id, version, viewer=principal)
            values["fixed_version"] = fixed.version
        if step == "disclosed":
            values["disclosed_at"] = now
        where = [FlawReport.state == was]
    done = session.execute(
        update(FlawReport).where(col(FlawReport.id) == report_id, *where).values(**values)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(report)
        raise InvalidTransition(
            f"report {report_id} changed meanwhile; it is now {report.state}",
            extra={"state": report.state},
        )
    fields: dict[str, Any] = {"report_id": report_id, "from": was, "step": step}
    if "fixed_version" in values:
        fields["version"] = values["fixed_version"]
    if note:
        fields["note_sha256"] = digest_of(note)
    record_event(
        session,
        action=f"report.{step}",
        actor=Actor.of(principal),
        resource=f"report:{report_id}",
        now=now,
        org_id=report.org_id,
        fields=fields,
    )
    session.refresh(report)
    return _view(session, principal, report, now)


# ------------------------------------------------------------------ AVID export

# category -> (AVID risk domain, SEP view entry); names as the AVID taxonomy (v0.2) spells them.
_AVID_TAXONOMY: dict[str, tuple[str, str]] = {
    "bias": ("Ethics", "E0100: Bias/ Discrimination"),
    "toxicity": ("Ethics", "E0301: Toxicity"),
    "factuality": ("Ethics", "E0402: Generative Misinformation"),
    "harmful": ("Performance", "P0400: Safety"),
    "privacy": ("Performance", "P0300: Privacy"),
    "security": ("Security", "S0100: Software Vulnerability"),
}


def avid_report(view: ReportView) -> dict[str, Any]:
    """The report in the AVID report format (the shape of ``avidtools.datamodels.report``),
    with the log verification as its metric. Built from what the reader may already see."""
    check = view.verification
    metrics = []
    if check["status"] == "verified":
        method = check["method"]
        metrics.append(
            {
                "name": "output verified against the tiergate transparency log",
                "detection_method": {
                    "type": "Significance Test" if method == "watermark" else "Static Threshold",
                    "name": "watermark attribution" if method == "watermark" else "sha256 digest",
                },
                "results": {
                    k: check[k]
                    for k in ("statement", "call_id", "log_index", "p_value", "output_sha256")
                    if k in check
                },
            }
        )
    domain, sep = _AVID_TAXONOMY.get(view.category, (None, None))
    org = view.model.split("/", 1)[0]
    return {
        "data_type": "AVID",
        "data_version": "0.2",
        "metadata": {"report_id": f"tiergate-report-{view.id}"},
        "affects": {
            "developer": [org],
            "deployer": [org],
            "artifacts": [{"type": "Model", "name": view.model}],
        },
        "problemtype": {
            "classof": "LLM Evaluation",
            "type": "Issue",
            "description": {"lang": "eng", "value": f"{view.category}: {check['statement']}"},
        },
        "metrics": metrics,
        "references": [],
        "description": {"lang": "eng", "value": view.description},
        "impact": {
            "avid": {
                "risk_domain": [domain] if domain else [],
                "sep_view": [sep] if sep else [],
                "lifecycle_view": ["L06: Deployment"],
                "taxonomy_version": "0.2",
            }
        },
        "credit": [{"lang": "eng", "value": view.reporter}] if view.reporter else [],
        "reported_date": view.created_at.date().isoformat(),
    }
