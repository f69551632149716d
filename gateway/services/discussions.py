"""Reports seen as Hugging Face Hub discussions, so `HfApi().create_discussion(...)` files one.

A discussion is a report (:mod:`gateway.services.reports`): the same verification against
the log, the same lifecycle and the same visibility. The mapping, all of it here:

- ``num`` is the report's id (gateway-wide, so a repository's numbers have gaps);
- the category is the title's prefix, ``[bias] ...`` or ``bias: ...`` (any of
  :data:`reports.CATEGORIES`, case-insensitive), else ``other``;
- the quoted output is the first fenced code block of the description (the lines between
  the opening fence and the closing one, joined by newlines); none means no quote;
- the report's description is the title, a blank line, then the description as written, so
  the title is its first line;
- ``status`` is ``open`` while received, triaged or accepted, ``closed`` after;
- ``events``: the description as the author's first comment, the verification statement as a
  comment by ``tiergate``, then the report's comments and one ``status-change`` per lifecycle
  step in the log, in log order;
- ``POST .../comment`` is a report comment (:func:`report_lifecycle.comment_report`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import LogEntry
from gateway.errors import BadRequest, ValidationFailed
from gateway.services import report_lifecycle, reports
from gateway.services.detection import DetectionRuntime
from gateway.services.reports import CATEGORIES, ReportNotFound, ReportView

__all__ = [
    "PAGE_SIZE",
    "DiscussionActionUnsupported",
    "PullRequestUnsupported",
    "comment_discussion",
    "create_discussion",
    "discussion_details",
    "list_discussions",
    "parse_discussion",
]

PAGE_SIZE = 50
MIN_TITLE, MAX_TITLE = 3, 200
_OPEN_STATES = frozenset({"received", "triaged", "accepted"})
_PREFIX = re.compile(r"^\s*(?:\[(?P<bracket>[A-Za-z]+)\]|(?P<colon>[A-Za-z]+)\s*:)\s*")
_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[^\n`]*\n(?P<body>.*?)\n?^(?P=fence)[ \t]*$", re.M | re.S
)
# Log events of a report that are not status changes (comments are read from their rows).
_NOT_STEPS = frozenset({"report.received", "report.commented", "report.linked"})
_STEP_STATUS = {"triaged": "open", "accepted": "open", "rewarded": None}


class PullRequestUnsupported(ValidationFailed):
    code = "discussion_pull_request_unsupported"
    title = "Pull requests are not accepted"


class DiscussionActionUnsupported(BadRequest):
    """Comments, status and title changes: a report moves only by its lifecycle steps."""

    code = "discussion_action_unsupported"
    title = "Not possible on a report"


@dataclass(frozen=True, slots=True)
class ParsedDiscussion:
    category: str
    description: str
    quoted_output: str | None


def parse_discussion(title: str, description: str) -> ParsedDiscussion:
    """Category from the title's prefix, quote from the description's first fenced block."""
    title = title.strip()
    if not MIN_TITLE <= len(title) <= MAX_TITLE:
        raise ValidationFailed(f"a title is {MIN_TITLE} to {MAX_TITLE} characters")
    category = "other"
    found = _PREFIX.match(title)
    if found is not None:
        named = (found.group("bracket") or found.group("colon") or "").lower()
        if named in CATEGORIES:
            category = named
    block = _FENCE.search(description)
    quote = block.group("body") if block is not None else None
    return ParsedDiscussion(category, f"{title}\n\n{description}", quote)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _title(view: ReportView) -> str:
    first = view.description.split("\n", 1)[0].strip()
    return first[:MAX_TITLE] or f"[{view.category}] report {view.id}"


def _status(state: str) -> str:
    return "open" if state in _OPEN_STATES else "closed"


def _author(name: str | None) -> dict[str, Any]:
    # The reporter's name is shown only to insiders (reports.ReportView.reporter).
    return {"name": name or "anonymous", "type": "user"}


def _summary(view: ReportView) -> dict[str, Any]:
    repo_id = view.model.split("@", 1)[0]
    return {
        "num": view.id,
        "title": _title(view),
        "status": _status(view.state),
        "createdAt": _iso(view.created_at),
        "author": _author(view.reporter),
        "repo": {"name": repo_id, "type": "model"},
        "isPullRequest": False,
        "numComments": 2 + len(view.comments),
        "pinned": False,
        "topReactions": [],
        # tiergate's own fields, ignored by huggingface_hub
        "category": view.category,
        "state": view.state,
        "verification": view.verification,
    }


def _comment(event_id: str, at: str, author: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "comment",
        "createdAt": at,
        "author": author,
        "data": {"edited": False, "hidden": False, "latest": {"raw": text, "html": None}},
    }


def _hub_comment(comment: dict[str, Any]) -> dict[str, Any]:
    event = _comment(
        f"comment-{comment['id']}", comment["time"], _author(comment["author"]), comment["text"]
    )
    event["data"]["log_index"] = comment["log_index"]
    return event


def _steps(session: Session, report_id: int) -> list[dict[str, Any]]:
    """The report's lifecycle events, read back from the log."""
    marker = f'"resource":"report:{report_id}"'
    rows = session.exec(
        select(LogEntry)
        .where(col(LogEntry.action).startswith("report."))
        .where(col(LogEntry.entry).contains(marker))
        .order_by(col(LogEntry.idx))
    )
    out = []
    for row in rows:
        entry = json.loads(row.entry)
        if entry.get("resource") != f"report:{report_id}" or row.action in _NOT_STEPS:
            continue
        step = row.action.removeprefix("report.")
        status = _STEP_STATUS.get(step, "closed")
        if status is None:  # "rewarded" is a flag, not a status
            continue
        out.append(
            {
                "id": f"log-{row.idx}",
                "type": "status-change",
                "createdAt": str(entry.get("time", ""))[:19] + "Z",
                "author": {"name": "publisher", "type": "org"},
                "data": {"status": status, "step": step, "log_index": row.idx},
            }
        )
    return out


def _details(session: Session, view: ReportView) -> dict[str, Any]:
    at = _iso(view.created_at)
    events = [
        _comment(f"report-{view.id}", at, _author(view.reporter), view.description),
        _comment(
            f"verification-{view.id}",
            at,
            {"name": "tiergate", "type": "org"},
            view.verification["statement"],
        ),
        *_steps(session, view.id),
        *(_hub_comment(c) for c in view.comments),
    ]
    # Comments and steps interleave in the order the log has them.
    events[2:] = sorted(events[2:], key=lambda e: int(e["data"].get("log_index") or 0))
    return {**_summary(view), "events": events, "diff": None}


def _check_repo(view: ReportView, repo_id: str) -> None:
    if view.model.split("@", 1)[0] != repo_id:
        raise ReportNotFound(f"no discussion {view.id} on {repo_id}")


def create_discussion(
    session: Session,
    principal: Principal,
    runtime: DetectionRuntime,
    *,
    repo_id: str,
    title: str,
    description: str,
    pull_request: bool,
    limits: reports.ReportLimits,
    client_address: str,
    now: datetime,
) -> dict[str, Any]:
    if pull_request:
        raise PullRequestUnsupported("this gateway takes reports as discussions, not pull requests")
    parsed = parse_discussion(title, description)
    view = reports.submit_report(
        session,
        principal,
        runtime,
        model=repo_id,
        category=parsed.category,
        description=parsed.description,
        quoted_output=parsed.quoted_output,
        call_id=None,
        limits=limits,
        client_address=client_address,
        now=now,
    )
    return _details(session, view)


def discussion_details(
    session: Session, principal: Principal | None, repo_id: str, num: int, now: datetime
) -> dict[str, Any]:
    view = reports.get_report(session, principal, num, now)
    _check_repo(view, repo_id)
    return _details(session, view)


def comment_discussion(
    session: Session,
    principal: Principal,
    repo_id: str,
    num: int,
    *,
    comment: str,
    limits: reports.ReportLimits,
    client_address: str,
    now: datetime,
) -> dict[str, Any]:
    """``HfApi.comment_discussion``: a report comment, answered as ``{"newMessage": event}``."""
    _check_repo(reports.get_report(session, principal, num, now), repo_id)
    made = report_lifecycle.comment_report(
        session,
        principal,
        num,
        text=comment,
        limits=limits,
        client_address=client_address,
        now=now,
    )
    return {"newMessage": _hub_comment(made)}


def refuse_action(
    session: Session,
    principal: Principal | None,
    repo_id: str,
    num: int,
    action: str,
    now: datetime,
) -> None:
    """What the Hub does on ``POST .../discussions/{num}/{action}`` has no report equivalent."""
    discussion_details(session, principal, repo_id, num, now)  # 404 first, as for a read
    raise DiscussionActionUnsupported(
        f"a report takes no {action} here; its publisher moves it along with "
        f"POST /api/reports/{num}/transitions (triaged, accepted, fixed, rejected, disclosed)"
    )


def list_discussions(
    session: Session,
    principal: Principal | None,
    repo_id: str,
    *,
    page: int,
    status: str | None,
    author: str | None,
    kind: str | None,
    now: datetime,
) -> dict[str, Any]:
    """One page in the Hub's shape: ``{"discussions": [...], "count": N, "start": S}``."""
    views = [] if kind == "pull_request" else reports.list_reports(session, principal, repo_id, now)
    if status in ("open", "closed"):
        views = [v for v in views if _status(v.state) == status]
    if author is not None:
        views = [v for v in views if v.reporter == author]
    views.reverse()  # newest first, as the Hub lists them
    start = page * PAGE_SIZE
    return {
        "discussions": [_summary(v) for v in views[start : start + PAGE_SIZE]],
        "count": len(views),
        "start": start,
        "numClosedDiscussions": sum(1 for v in views if _status(v.state) == "closed"),
    }
