"""Detector page: paste text, pick a model (or let the gateway try), see the verdict and tokens.

Detection itself is `gateway.services.detection` (the same as `POST /v1/watermark/detect`);
this page turns its token spans into highlighted segments of the pasted text.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Form, Query, Request
from fastapi.responses import Response
from pydantic import SecretStr, ValidationError
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import ReleaseStatus
from gateway.deps import NowDep, SessionDep, StateDep
from gateway.errors import GatewayError
from gateway.ledger.runtime import LedgerRuntime
from gateway.schemas.openai import DetectResponse, TokenSpan, VllmGumbelParams
from gateway.services import call_explanation, detection, provenance, releases
from gateway.web.common import page_router
from gateway.web.csrf import CsrfChecked
from gateway.web.render import render
from gateway.web.sessions import SignedIn, ViewerDep
from watermark.errors import WatermarkError

router = page_router()
MAX_TEXT = 100_000


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    kind: str  # "green", "red", "skip" (not scored) or "plain" (between tokens)
    token_index: int | None = None  # the detector's token position (None for "plain")


def segments(text: str, spans: list[TokenSpan]) -> list[Segment]:
    """The whole pasted text, cut at the scored tokens' character offsets."""
    out: list[Segment] = []
    at = 0
    located = sorted(
        (s for s in spans if s.start is not None and s.end is not None), key=lambda s: s.start or 0
    )
    if not located:
        return [Segment(s.text or "", s.kind, s.token_index) for s in spans] or [
            Segment(text, "plain")
        ]
    for span in located:
        start, end = max(span.start or 0, at), min(span.end or 0, len(text))
        if start > at:
            out.append(Segment(text[at:start], "plain"))
        if end > start:
            out.append(Segment(text[start:end], span.kind, span.token_index))
            at = end
    if at < len(text):
        out.append(Segment(text[at:], "plain"))
    return out


def _models(session: Session, viewer: Principal | None) -> list[str]:
    published = releases.list_releases(session, viewer)
    return sorted({r.repo_id for r in published if r.status == ReleaseStatus.published.value})


def _context(
    session: Session,
    viewer: Principal | None,
    text: str,
    model: str,
    scheme: str = "tg-kgw-v1",
    context_width: int = 4,
) -> dict[str, object]:
    # A vLLM key typed into the form is never put back into the page.
    return {
        "title": "Watermark detector",
        "models": _models(session, viewer),
        "text": text,
        "model": model,
        "scheme": scheme,
        "context_width": context_width,
    }


def _browser_proof(
    request: Request, session: Session, proof: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The attribution's inclusion proof in the shape proof.js checks (base64), with the
    log's published verifier key so the browser checks the checkpoint's signature too."""
    if proof is None:
        return None

    def b64(hexed: str) -> str:
        return base64.b64encode(bytes.fromhex(hexed)).decode("ascii")

    ledger: LedgerRuntime = request.app.state.ledger
    return {
        "index": proof["index"],
        "tree_size": proof["tree_size"],
        "leaf_hash": b64(proof["leaf_hash"]),
        "inclusion_path": [b64(h) for h in proof["inclusion_path"]],
        "checkpoint": proof["checkpoint"],
        "entry": None,
        "vkey": ledger.key(session).verifier.vkey,
    }


@router.get("/detect")
def detect_form(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    model: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """``?model=`` preselects a model: the log entry view links here for its call's model."""
    principal = viewer.principal if viewer else None
    return render(request, "detect.html", _context(session, principal, "", model))


@router.post("/detect", dependencies=[CsrfChecked])
def detect(
    request: Request,
    viewer: SignedIn,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    text: Annotated[str, Form(max_length=MAX_TEXT)],
    model: Annotated[str, Form(max_length=200)] = "",
    scheme: Annotated[Literal["tg-kgw-v1", "vllm-gumbel"], Form()] = "tg-kgw-v1",
    vllm_key: Annotated[str, Form(max_length=24)] = "",
    context_width: Annotated[int, Form(ge=1, le=64)] = 4,
    logprobs: Annotated[str, Form(max_length=call_explanation.MAX_LOGPROBS_CHARS)] = "",
) -> Response:
    principal = viewer.principal
    context = _context(session, principal, text, model, scheme, context_width)
    context["logprobs_json"] = logprobs
    status = 200
    try:
        # Parsed first: a malformed paste is refused before the detector does any work.
        views = call_explanation.parse_logprobs(logprobs) if logprobs.strip() else None
        params = None
        if scheme == "vllm-gumbel" and vllm_key:  # no key: the registered keys are tried
            params = VllmGumbelParams(key=SecretStr(vllm_key), context_width=context_width)
        result: DetectResponse = detection.detect_text(
            session,
            principal,
            text=text,
            model=model or None,
            now=now,
            scheme=scheme,
            vllm_gumbel=params,
        )
        context["result"] = result
        context["segments"] = segments(text, result.spans)
        context["logprobs"] = views
        if views is not None:
            context["token_logprobs"] = call_explanation.align_logprobs(result.spans, text, views)
        if result.attribution is not None:
            a = result.attribution
            service: provenance.ProvenanceService = request.app.state.provenance
            context["credential"] = provenance.describe_for_choice(
                session, service, a.call_id, a.choice_index, text
            )
            context["proof_data"] = _browser_proof(request, session, a.inclusion_proof)
            explained = call_explanation.explain_call(session, principal, a.log_index)
            if explained is not None:
                context["explanation"] = explained
                context["explained_output"] = explained.output(a.choice_index)
    except (GatewayError, WatermarkError) as exc:
        context["error"] = exc.message
        status = int(getattr(exc, "status", 422))
    except ValidationError:  # only the key field can fail here; its value is not repeated
        context["error"] = "the vLLM key must be 1 to 24 characters"
        status = 422
    return render(request, "detect.html", context, status=status)
