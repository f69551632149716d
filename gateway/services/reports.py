"""Flaw and bias reports: submit one, read it, list a model's; who may see what, and when.

A report names a model and may quote its output; the quote is checked against the log by
:mod:`gateway.services.report_verification`. Lifecycle steps and links to a yank or a new
version are :mod:`gateway.services.report_lifecycle`; the AVID export is
:mod:`gateway.services.report_avid`.

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

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.db.models import FlawReport, Release, ReportComment, ReportLink, Role, User
from gateway.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from gateway.generation.models import parse_model_name
from gateway.ledger.events import Actor, digest_of, record_event
from gateway.services import catalog, publisher_policy, ratelimit, releases
from gateway.services.detection import DetectionRuntime
from gateway.services.report_verification import not_verified, verify_quote

__all__ = [
    "CATEGORIES",
    "DISCLOSURE_DAYS",
    "InvalidTransition",
    "ReportCategoryInvalid",
    "ReportLimits",
    "ReportNotFound",
    "ReportTooLarge",
    "ReportView",
    "get_report",
    "list_reports",
    "submit_report",
]

log = logging.getLogger("tiergate.reports")
CATEGORIES = ("bias", "toxicity", "harmful", "factuality", "privacy", "security", "other")
DISCLOSURE_DAYS = publisher_policy.DEFAULT_DISCLOSURE_DAYS  # unless the publisher's policy says
MAX_DESCRIPTION_CHARS = 20_000
MAX_QUOTE_CHARS = 100_000
MAX_NOTE_CHARS = 2_000


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
class ReportLimits:
    """How many reports and comments one account and one client address may file per window
    (Settings.rate_limit_reports_*): verification runs a detector, and a flood of reports
    would fill the log and the publisher's queue."""

    per_account: int = 20
    per_address: int = 60
    window_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportLimits:
        return cls(
            per_account=settings.rate_limit_reports_per_account,
            per_address=settings.rate_limit_reports_per_address,
            window_seconds=settings.rate_limit_reports_window_seconds,
        )


def charge_report(
    session: Session, principal: Principal, limits: ReportLimits, address: str, now: datetime
) -> None:
    """One report or comment against the account's and the address's budgets, refused ones
    included (before anything is checked or written)."""
    ratelimit.hit_in(
        session,
        ratelimit.report_limits(
            principal.user_id,
            address,
            per_account=limits.per_account,
            per_address=limits.per_address,
            window_seconds=limits.window_seconds,
        ),
        now=now,
    )


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
    # Yanks and versions the model's org linked the report to: kind, version, log_index, time.
    links: tuple[dict[str, Any], ...] = ()
    comments: tuple[dict[str, Any], ...] = ()  # author (insiders only), text, time, log_index

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["disclose_after"] = _iso(self.disclose_after)
        out["created_at"] = _iso(self.created_at)
        out["links"] = list(self.links)
        out["comments"] = list(self.comments)
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


def can_manage(principal: Principal, report: FlawReport) -> bool:
    if principal.role is Role.admin:
        return True
    return principal.role is Role.publisher and principal.org_id == report.org_id


def visible_report(
    session: Session, principal: Principal | None, report_id: int, now: datetime
) -> FlawReport:
    """The row, if the caller may see it; else the same 404 as for no report at all."""
    report = session.get(FlawReport, report_id, populate_existing=True)
    if report is None or not (_is_insider(principal, report) or _is_public(report, now)):
        raise ReportNotFound(f"no report {report_id}")
    return report


def _links(session: Session, report_id: int) -> tuple[dict[str, Any], ...]:
    rows = session.exec(
        select(ReportLink).where(ReportLink.report_id == report_id).order_by(col(ReportLink.id))
    )
    return tuple(
        {"kind": r.kind, "version": r.version, "log_index": r.log_index, "time": _iso(r.created_at)}
        for r in rows
    )


def _comments(session: Session, report_id: int, insider: bool) -> tuple[dict[str, Any], ...]:
    rows = session.exec(
        select(ReportComment)
        .where(ReportComment.report_id == report_id)
        .order_by(col(ReportComment.id))
    )
    out = []
    for row in rows:
        author = session.get(User, row.author_id) if insider else None
        out.append(
            {
                "id": row.id,
                "author": author.username if author is not None else None,
                "text": row.text,
                "time": _iso(row.created_at),
                "log_index": row.log_index,
            }
        )
    return tuple(out)


def view_of(
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
        links=_links(session, report.id),
        comments=_comments(session, report.id, insider),
    )


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
    limits: ReportLimits,
    client_address: str,
    now: datetime,
) -> ReportView:
    """File a report: charged to the reporter's and the address's budgets first, bounded in
    size before any work, its quote verified, and the receipt logged with its deadline."""
    charge_report(session, principal, limits, client_address, now)
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
        verification = not_verified("the report quotes no model output")
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
        disclose_after=now
        + timedelta(days=publisher_policy.disclosure_days(session, release.org_id)),
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
    return view_of(session, principal, report, now)


def get_report(
    session: Session, principal: Principal | None, report_id: int, now: datetime
) -> ReportView:
    return view_of(session, principal, visible_report(session, principal, report_id, now), now)


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
        view_of(session, principal, r, now)
        for r in rows
        if _is_insider(principal, r) or _is_public(r, now)
    ]
