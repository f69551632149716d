"""A report's life after it is filed: lifecycle steps, links to a yank or a new version, and
comments, each one conditional write and one log event carrying digests, not text.

Steps are taken by the model's org only (``triaged``, ``accepted``, ``rejected``, ``fixed``,
``disclosed``; ``rewarded`` is a flag). A link ties a report to what the publisher did about
it: a yanked version (``yank``) or a newer one (``version``); it is shown on the report and in
its AVID export. Comments (the Hub's discussion comments) are open to whoever may read the
report and charged to the same budget as reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from gateway.auth.principal import Principal
from gateway.db.engine import begin_write
from gateway.db.models import FlawReport, ReleaseStatus, ReportComment, ReportLink
from gateway.errors import Conflict, Forbidden, ValidationFailed
from gateway.ledger.events import Actor, digest_of, record_event
from gateway.services import releases
from gateway.services.reports import (
    MAX_NOTE_CHARS,
    InvalidTransition,
    ReportLimits,
    ReportTooLarge,
    ReportView,
    can_manage,
    charge_report,
    view_of,
    visible_report,
)

__all__ = [
    "LINK_KINDS",
    "STEPS",
    "ReportLinkExists",
    "ReportLinkInvalid",
    "comment_report",
    "link_report",
    "transition_report",
]

MAX_COMMENT_CHARS = 10_000
LINK_KINDS = ("yank", "version")

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
    report = visible_report(session, principal, report_id, now)
    if not can_manage(principal, report):
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
    return view_of(session, principal, report, now)


class ReportLinkInvalid(ValidationFailed):
    """A link to a version that is not of the report's model, or a ``yank`` link to a version
    that is not yanked."""

    code = "report_link_invalid"
    title = "Report link not allowed"


class ReportLinkExists(Conflict):
    code = "report_link_exists"
    title = "Report already linked"


def link_report(
    session: Session,
    principal: Principal,
    report_id: int,
    *,
    kind: str,
    version: str,
    now: datetime,
) -> ReportView:
    """Link a report to a yank of, or a new version of, its model (the model's org only)."""
    begin_write(session)
    report = visible_report(session, principal, report_id, now)
    if not can_manage(principal, report):
        raise Forbidden("only the model's org links a report")
    if kind not in LINK_KINDS:
        raise ReportLinkInvalid(f"kind must be one of {', '.join(LINK_KINDS)}; got {kind!r:.20}")
    release = releases.find_release(session, report.repo_id, version, viewer=principal)
    if kind == "yank" and release.status != ReleaseStatus.yanked.value:
        raise ReportLinkInvalid(f"{release.repo_id}@{release.version} is not yanked")
    if kind == "version" and release.status != ReleaseStatus.published.value:
        raise ReportLinkInvalid(
            f"{release.repo_id}@{release.version} is {release.status}, not a published version"
        )
    link = ReportLink(report_id=report_id, kind=kind, version=release.version, created_at=now)
    try:
        with session.begin_nested():
            session.add(link)
            session.flush()
    except IntegrityError:
        raise ReportLinkExists(
            f"report {report_id} is already linked to {kind} {release.version}"
        ) from None
    link.log_index = record_event(
        session,
        action="report.linked",
        actor=Actor.of(principal),
        resource=f"report:{report_id}",
        now=now,
        org_id=report.org_id,
        fields={
            "report_id": report_id,
            "kind": kind,
            "model": f"{release.repo_id}@{release.version}",
            "release_digest": release.statement_digest,
        },
    )
    session.flush()
    return view_of(session, principal, report, now)


def comment_report(
    session: Session,
    principal: Principal,
    report_id: int,
    *,
    text: str,
    limits: ReportLimits,
    client_address: str,
    now: datetime,
) -> dict[str, Any]:
    """A comment by anyone who may read the report; logged by digest. Returns the comment."""
    charge_report(session, principal, limits, client_address, now)
    if len(text) > MAX_COMMENT_CHARS:
        raise ReportTooLarge(f"a comment is at most {MAX_COMMENT_CHARS} characters")
    if not text.strip():
        raise ValidationFailed("the comment is empty")
    report: FlawReport = visible_report(session, principal, report_id, now)
    row = ReportComment(report_id=report_id, author_id=principal.user_id, text=text, created_at=now)
    session.add(row)
    session.flush()
    row.log_index = record_event(
        session,
        action="report.commented",
        actor=Actor.of(principal),
        resource=f"report:{report_id}",
        now=now,
        org_id=report.org_id,
        fields={"report_id": report_id, "comment_id": row.id, "text_sha256": digest_of(text)},
    )
    session.flush()
    view = view_of(session, principal, report, now)
    return next(c for c in view.comments if c["id"] == row.id)
