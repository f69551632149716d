"""`/log/...`: the transparency log's checkpoints, entries, proofs and per-call receipts."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from gateway.auth.principal import Principal
from gateway.deps import OptionalPrincipal, Public, SessionDep, require_scope
from gateway.ledger.integrate import pending_entries
from gateway.ledger.reads import (
    MAX_PAGE,
    consistency,
    cosigned_checkpoint,
    current_checkpoint,
    inclusion,
    list_entries,
    receipt_for,
)
from gateway.ledger.runtime import LedgerRuntime
from gateway.problems import problem_responses

router = APIRouter(prefix="/log", tags=["log"])


def get_ledger(request: Request) -> LedgerRuntime:
    runtime: LedgerRuntime = request.app.state.ledger
    return runtime


LedgerDep = Annotated[LedgerRuntime, Depends(get_ledger)]
LogReader = Annotated[Principal, Depends(require_scope("log"))]
_NOTE = {"content": {"text/plain": {"schema": {"type": "string"}}}}
# Indices and sizes live in signed 64-bit columns; anything larger is refused before use.
_U63 = (1 << 63) - 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class LogEntryOut(BaseModel):
    index: int
    leaf_hash: str = Field(description="base64 SHA-256(0x00 || entry)")
    entry: str | None = Field(
        description="The canonical JSON entry (hashed as UTF-8), or null if not yours to read."
    )


class LogEntriesPage(BaseModel):
    tree_size: int = Field(description="Size of the latest signed checkpoint.")
    start: int
    end: int
    entries: list[LogEntryOut]


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    inclusion_path: list[str] = Field(description="base64 hashes, leaf sibling first")
    checkpoint: str | None = Field(description="Signed note of this tree size, when signed.")


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    consistency_path: list[str]


class ReceiptOut(BaseModel):
    index: int
    entry: str = Field(description="The canonical JSON entry; its UTF-8 bytes are the leaf.")
    receipt: str = Field(description="c2sp.org/tlog-proof@v1 text against the latest checkpoint.")


@router.get(
    "/checkpoint",
    dependencies=[Public],
    summary="The latest signed checkpoint (C2SP tlog-checkpoint signed note), with any "
    "witness cosignature lines (C2SP tlog-cosignature) appended.",
    response_class=PlainTextResponse,
    responses={200: _NOTE, **problem_responses(503)},
)
def get_checkpoint(session: SessionDep) -> PlainTextResponse:
    return PlainTextResponse(cosigned_checkpoint(session), headers={"Cache-Control": "no-cache"})


@router.get(
    "/vkey",
    dependencies=[Public],
    summary="The log's note verifier key (name+hexid+base64).",
    response_class=PlainTextResponse,
    responses={200: _NOTE, **problem_responses(503)},
)
def get_vkey(session: SessionDep, ledger: LedgerDep) -> PlainTextResponse:
    return PlainTextResponse(ledger.key(session).verifier.vkey + "\n")


@router.get(
    "/entries",
    dependencies=[Public],
    summary="Entries [start, end) of the signed tree; content only for entries you may read.",
    response_model=LogEntriesPage,
    responses=problem_responses(400, 401, 422, 503),
)
def get_entries(
    session: SessionDep,
    principal: OptionalPrincipal,
    start: Annotated[int, Query(ge=0, le=_U63)] = 0,
    end: Annotated[
        int | None, Query(ge=0, le=_U63, description=f"at most start+{MAX_PAGE}")
    ] = None,
) -> LogEntriesPage:
    size, views = list_entries(session, principal, start, end)
    return LogEntriesPage(
        tree_size=size,
        start=start,
        end=start + len(views) if end is None else end,
        entries=[
            LogEntryOut(index=v.index, leaf_hash=_b64(v.leaf_hash), entry=v.entry) for v in views
        ],
    )


@router.get(
    "/proof/inclusion",
    dependencies=[Public],
    summary="Inclusion proof of entry `index` in the tree of `size` leaves (default: latest).",
    response_model=InclusionProofOut,
    responses=problem_responses(400, 422, 503),
)
def get_inclusion_proof(
    session: SessionDep,
    index: Annotated[int, Query(ge=0, le=_U63)],
    size: Annotated[int | None, Query(ge=1, le=_U63)] = None,
) -> InclusionProofOut:
    proof = inclusion(session, index, size)
    return InclusionProofOut(
        index=proof.index,
        tree_size=proof.size,
        leaf_hash=_b64(proof.leaf_hash),
        root_hash=_b64(proof.root_hash),
        inclusion_path=[_b64(h) for h in proof.proof],
        checkpoint=proof.checkpoint,
    )


@router.get(
    "/proof/consistency",
    dependencies=[Public],
    summary="Consistency proof from tree size `from` to `to` (default: latest).",
    response_model=ConsistencyProofOut,
    responses=problem_responses(400, 422, 503),
)
def get_consistency_proof(
    session: SessionDep,
    first: Annotated[int, Query(alias="from", ge=0, le=_U63)],
    second: Annotated[int | None, Query(alias="to", ge=0, le=_U63)] = None,
) -> ConsistencyProofOut:
    size, proof = consistency(session, first, second)
    return ConsistencyProofOut(first=first, second=size, consistency_path=[_b64(h) for h in proof])


@router.get(
    "/receipt/{index}",
    summary="The entry and its c2sp.org/tlog-proof@v1 receipt (entries you may read only).",
    response_model=ReceiptOut,
    responses=problem_responses(400, 401, 403, 404, 422, 503),
)
def get_receipt(
    index: Annotated[int, Path(ge=0, le=_U63)],
    session: SessionDep,
    principal: LogReader,
    ledger: LedgerDep,
) -> ReceiptOut:
    # A caller asking right after the call that logged it should not wait for the loop.
    if index >= current_checkpoint(session).size and pending_entries(session) > 0:
        ledger.integrate_now()
    entry, receipt = receipt_for(session, principal, index)
    return ReceiptOut(index=index, entry=entry.entry, receipt=receipt)
