"""OAuth2 endpoints: client-credentials token, introspection (RFC 7662), revocation (RFC 7009).

Bodies are forms (``application/x-www-form-urlencoded``), as the RFCs require. Errors keep
the RFC 6749 members (``error``, ``error_description``) inside our problem+json shape, so
OAuth clients and tiergate clients both read them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.auth.oauth_server import FormRequest, OAuthReply, TiergateAuthorizationServer
from gateway.deps import NowDep, Public, SessionDep, StateDep
from gateway.errors import BadRequest
from gateway.problems import problem_response, problem_responses
from gateway.services import ratelimit
from gateway.services.oauth import TokenSigner, token_signer
from gateway.state import GatewayState

router = APIRouter(prefix="/oauth", tags=["oauth"], dependencies=[Public])
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_MAX_FIELDS = 16
_MAX_VALUE = 8192
_ERROR_CODES = {
    "invalid_client": "oauth_invalid_client",
    "invalid_request": "oauth_invalid_request",
    "invalid_scope": "oauth_invalid_scope",
    "invalid_grant": "oauth_invalid_grant",
    "unauthorized_client": "oauth_unauthorized_client",
    "unsupported_grant_type": "oauth_unsupported_grant_type",
    "unsupported_token_type": "oauth_unsupported_token_type",
}


def signer_for(state: GatewayState) -> TokenSigner:
    return token_signer(state.settings, state.keyring.oauth_signing_key)


async def _read_form(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _FORM_TYPES:
        raise BadRequest("send the parameters as application/x-www-form-urlencoded")
    raw = await request.form(max_files=0, max_fields=_MAX_FIELDS)
    form: dict[str, str] = {}
    for key, value in raw.multi_items():
        if not isinstance(value, str) or len(value) > _MAX_VALUE:
            raise BadRequest(f"parameter {key[:40]!r} is not a short text value")
        if key in form:
            # RFC 6749 3.2: parameters must not be repeated.
            raise BadRequest(f"parameter {key[:40]!r} is repeated")
        form[key] = value
    headers = {}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]
    return form, headers


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def token_limits(state: GatewayState, address: str, account: str | None) -> list[ratelimit.Limit]:
    settings = state.settings
    return ratelimit.token_limits(
        address,
        account,
        per_address=settings.rate_limit_tokens_per_address,
        per_account=settings.rate_limit_tokens_per_account,
        window_seconds=settings.rate_limit_window_seconds,
    )


def _client_id_hint(form: dict[str, str], headers: dict[str, str]) -> str:
    """The client id the caller claims, for rate limiting only (nothing is trusted here)."""
    auth = headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise BadRequest("malformed HTTP Basic credentials") from exc
        return unquote(decoded.split(":", 1)[0])[:128]
    return form.get("client_id", "")[:128]


def _to_response(request: Request, reply: OAuthReply) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    headers.update({k: v for k, v in reply.headers.items() if k.lower() != "content-type"})
    if reply.status < 400:
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)
    error = str(reply.body.get("error", "invalid_request"))
    description = str(reply.body.get("error_description") or error.replace("_", " "))
    return problem_response(
        request,
        status=reply.status,
        code=_ERROR_CODES.get(error, "oauth_error"),
        title="OAuth error",
        detail=description,
        extra={"error": error, "error_description": description},
        headers=headers,
    )


async def _run(
    request: Request,
    state: StateDep,
    session: SessionDep,
    now: NowDep,
    endpoint: str | None,
) -> JSONResponse:
    form, headers = await _read_form(request)
    server = TiergateAuthorizationServer(session, signer_for(state), now)
    oauth_request = FormRequest(request.url.path, headers, form)
    if endpoint is None:
        reply = await run_in_threadpool(server.create_token_response, oauth_request)
    else:
        reply = await run_in_threadpool(server.create_endpoint_response, endpoint, oauth_request)
    return _to_response(request, reply)


@router.post(
    "/token",
    summary="Client credentials grant: an ES256 JWT access token (RFC 9068).",
    responses=problem_responses(400, 401, 429),
)
async def token(
    request: Request, state: StateDep, session: SessionDep, now: NowDep
) -> JSONResponse:
    form, headers = await _read_form(request)
    client_id = _client_id_hint(form, headers)
    account = f"client:{client_id}" if client_id else None
    limits = token_limits(state, _address(request), account)
    await run_in_threadpool(ratelimit.hit, state.engine, limits, now=now)
    server = TiergateAuthorizationServer(session, signer_for(state), now)
    oauth_request = FormRequest(request.url.path, headers, form)
    reply = await run_in_threadpool(server.create_token_response, oauth_request)
    return _to_response(request, reply)


@router.post(
    "/introspect",
    summary="RFC 7662 token introspection (the calling client authenticates).",
    responses=problem_responses(400, 401),
)
async def introspect(
    request: Request, state: StateDep, session: SessionDep, now: NowDep
) -> JSONResponse:
    return await _run(request, state, session, now, "introspection")


@router.post(
    "/revoke",
    summary="RFC 7009 token revocation (the calling client authenticates).",
    responses=problem_responses(400, 401),
)
async def revoke(
    request: Request, state: StateDep, session: SessionDep, now: NowDep
) -> JSONResponse:
    return await _run(request, state, session, now, "revocation")


@router.get("/jwks", summary="The public keys access tokens are signed with (JWK Set).")
def jwks(state: StateDep) -> dict[str, Any]:
    return signer_for(state).jwks()
