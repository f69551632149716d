"""The witness's HTTP surface: ``POST /add-checkpoint`` as c2sp.org/tlog-witness defines it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.witness.store import WitnessStore
from licensing.errors import (
    WitnessConflictError,
    WitnessError,
    WitnessForbiddenError,
    WitnessProofInvalidError,
    WitnessRequestMalformedError,
)
from licensing.tlog.cosignature import CosignatureSigner
from licensing.tlog.note import Verifier
from licensing.tlog.witness import MAX_REQUEST_BYTES, add_checkpoint, parse_add_checkpoint

__all__ = ["create_witness_app"]


async def _read_bounded(request: Request) -> bytes:
    # Bound the body before buffering it: the witness is reachable by anyone.
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_REQUEST_BYTES:
            raise WitnessRequestMalformedError("request body is too large")
        chunks.append(chunk)
    return b"".join(chunks)


def create_witness_app(
    signer: CosignatureSigner,
    logs: Mapping[str, Sequence[Verifier]],
    store: WitnessStore,
    *,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """An ASGI app that cosigns checkpoints of ``logs`` (origin -> trusted log keys)."""

    async def add(request: Request) -> Response:
        body = b""
        try:
            body = await _read_bounded(request)
            parsed = parse_add_checkpoint(body)
            # The state update fsyncs: off the event loop.
            line = await run_in_threadpool(
                store.update,
                lambda latest: add_checkpoint(parsed, logs, latest, signer, now=int(clock())),
            )
        except WitnessConflictError as exc:
            return PlainTextResponse(
                f"{exc.known_size}\n", status_code=409, media_type="text/x.tlog.size"
            )
        except WitnessError as exc:
            if isinstance(exc, WitnessProofInvalidError | WitnessForbiddenError):
                store.record_refusal(exc, body)
            return PlainTextResponse(f"{exc.code}: {exc}\n", status_code=exc.status)
        return PlainTextResponse(line)

    async def vkey(_: Request) -> Response:
        return PlainTextResponse(signer.verifier().vkey + "\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add, methods=["POST"]),
            Route("/vkey", vkey, methods=["GET"]),
        ]
    )
