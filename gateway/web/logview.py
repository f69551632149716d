"""Log explorer: latest checkpoint, visible entries, one entry's inclusion proof, verifier key."""

from __future__ import annotations

import base64
import json
from typing import Annotated

from fastapi import Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlmodel import Session

from gateway.deps import SessionDep
from gateway.ledger.reads import (
    MAX_PAGE,
    can_see,
    current_checkpoint,
    entry_row,
    inclusion,
    list_entries,
    receipt_for,
)
from gateway.ledger.runtime import LedgerRuntime
from gateway.services.call_explanation import explain_entry
from gateway.web.common import page_router
from gateway.web.render import render
from gateway.web.sessions import SignedIn, ViewerDep
from licensing.tlog.merkle import leaf_hash

router = page_router()
PAGE = 50
_U63 = (1 << 63) - 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _vkey(request: Request, session: Session) -> str:
    ledger: LedgerRuntime = request.app.state.ledger
    return ledger.key(session).verifier.vkey


@router.get("/transparency")
def explorer(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    start: Annotated[int | None, Query(ge=0, le=_U63)] = None,
    action: Annotated[str, Query(max_length=64)] = "",
    mine: bool = False,
) -> Response:
    principal = viewer.principal if viewer else None
    checkpoint = current_checkpoint(session)
    size = checkpoint.size
    first = max(0, size - PAGE) if start is None else min(start, size)
    end = min(first + PAGE, size, first + MAX_PAGE)
    _, views = list_entries(session, principal, first, end)
    rows = []
    for view in reversed(views):
        parsed = json.loads(view.entry) if view.entry is not None else None
        if action and (parsed is None or parsed.get("action") != action):
            continue
        if mine and (
            parsed is None
            or principal is None
            or parsed.get("actor", {}).get("name") != principal.username
        ):
            continue
        rows.append({"index": view.index, "leaf": _b64(view.leaf_hash), "entry": parsed})
    context = {
        "title": "Transparency log",
        "checkpoint": checkpoint,
        "vkey": _vkey(request, session),
        "rows": rows,
        "first": first,
        "end": end,
        "size": size,
        "page": PAGE,
        "filters": {"action": action, "mine": mine},
    }
    return render(request, "log.html", context)


@router.get("/transparency/entries/{index}")
def entry(
    request: Request,
    index: Annotated[int, Path(ge=0, le=_U63)],
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    principal = viewer.principal if viewer else None
    row = entry_row(session, index)
    visible = can_see(principal, row)
    proof = inclusion(session, index, None)
    checkpoint = current_checkpoint(session)
    data = {
        "index": proof.index,
        "tree_size": proof.size,
        "leaf_hash": _b64(proof.leaf_hash),
        "inclusion_path": [_b64(h) for h in proof.proof],
        "checkpoint": checkpoint.note,
        # With the entry itself the browser hashes the leaf from the bytes it displays.
        "entry": row.entry if visible else None,
        # The browser checks the checkpoint's signature against the key the log publishes.
        "vkey": _vkey(request, session),
    }
    context = {
        "title": f"Log entry {index}",
        "index": index,
        "entry": json.dumps(json.loads(row.entry), indent=2, sort_keys=True) if visible else None,
        "leaf": _b64(leaf_hash(row.entry.encode("utf-8"))),
        "proof": proof,
        "audit_path": [_b64(h) for h in proof.proof],
        "root": _b64(proof.root_hash),
        "checkpoint": checkpoint,
        "vkey": _vkey(request, session),
        "data": data,
        "signed_in": principal is not None,
        # Safety verdicts and digests of a generation, readable; None for other entries.
        "explanation": explain_entry(index, json.loads(row.entry)) if visible else None,
    }
    return render(request, "log_entry.html", context)


@router.get("/transparency/receipts/{index}")
def receipt(
    index: Annotated[int, Path(ge=0, le=_U63)], viewer: SignedIn, session: SessionDep
) -> Response:
    """The c2sp.org/tlog-proof@v1 receipt of an entry the signed-in person may read."""
    _, text = receipt_for(session, viewer.principal, index)
    return PlainTextResponse(
        text,
        headers={
            "Content-Disposition": f'attachment; filename="tiergate-receipt-{index}.txt"',
            "Cache-Control": "no-store",
        },
    )
