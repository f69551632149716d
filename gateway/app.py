"""`create_app(settings)`: the gateway's FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from gateway import __version__
from gateway.api_docs import install_api_docs
from gateway.config import Settings
from gateway.db.engine import make_engine
from gateway.db.migrate import upgrade
from gateway.db.timeutil import utcnow
from gateway.keyring import Keyring, ensure_writable_dir, load_keyring
from gateway.ledger.runtime import LedgerRuntime
from gateway.metrics import GatewayMetrics, MetricsMiddleware
from gateway.middleware import (
    BodyLimitMiddleware,
    JsonContentTypeMiddleware,
    RequestContextMiddleware,
)
from gateway.openapi import install_openapi
from gateway.problems import install_problem_handlers
from gateway.routes import access as access_routes
from gateway.routes import accounts, admin, clients, health, keys, oauth, releases
from gateway.routes import card_revisions as card_revision_routes
from gateway.routes import detect as detect_routes
from gateway.routes import discussions as discussion_routes
from gateway.routes import engine_keys as engine_key_routes
from gateway.routes import evaluations as evaluation_routes
from gateway.routes import hub as hub_routes
from gateway.routes import hub_refs as hub_ref_routes
from gateway.routes import links as link_routes
from gateway.routes import log as log_routes
from gateway.routes import metrics as metrics_routes
from gateway.routes import moderations as moderation_routes
from gateway.routes import openai as openai_routes
from gateway.routes import provenance as provenance_routes
from gateway.routes import publisher_policy as publisher_policy_routes
from gateway.routes import reasoning as reasoning_routes
from gateway.routes import reports as report_routes
from gateway.routes import watermark_keys as watermark_key_routes
from gateway.services.detection import DetectionRuntime
from gateway.services.detection import register_runtime as register_detection_runtime
from gateway.services.generation import GenerationService
from gateway.services.prompt_scoring import PromptScoring
from gateway.services.provenance import ProvenanceService
from gateway.state import GatewayState, SchemaStatus
from gateway.storage.factory import make_blob_store
from gateway.web.routes import install_web

log = logging.getLogger("tiergate.app")

# Paths whose request bodies are not JSON (binary uploads, OAuth forms).
NON_JSON_PREFIXES = ("/api/uploads/", "/oauth/")


def _is_json_route(path: str) -> bool:
    return path.startswith(("/api/", "/v1/")) and not path.startswith(NON_JSON_PREFIXES)


def prepare_data_dir(settings: Settings) -> None:
    """Create the data dir (and blob dir); a clear error when it is not writable."""
    ensure_writable_dir(settings.data_dir, what="data directory")
    ensure_writable_dir(settings.resolved_blob_dir, what="blob directory")


def try_migrate(state: GatewayState) -> bool:
    """Apply migrations once; record the outcome for /readyz instead of crashing."""
    with state.schema.lock:
        if state.schema.ready:
            return True
        try:
            upgrade(state.engine)
        except Exception as exc:  # database down: keep serving 503s and retry
            state.schema.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("database not ready: %s", state.schema.last_error)
            return False
        state.schema.ready = True
        state.schema.last_error = None
        return True


async def _migrate_until_ready(state: GatewayState) -> None:
    while not await asyncio.to_thread(try_migrate, state):
        await asyncio.sleep(state.settings.db_retry_seconds)
    log.info("database schema is current")


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    keyring: Keyring | None = None,
) -> FastAPI:
    """Build the gateway. Nothing is read from the environment here: ``settings`` is all."""
    prepare_data_dir(settings)
    state = GatewayState(
        settings=settings,
        engine=engine if engine is not None else make_engine(settings.resolved_database_url),
        keyring=keyring if keyring is not None else load_keyring(settings.resolved_keys_dir),
        schema=SchemaStatus(ready=not settings.auto_migrate),
        blobs=make_blob_store(settings),
    )
    ledger = LedgerRuntime.for_gateway(state)
    metrics = GatewayMetrics.create(state.engine)
    generation = GenerationService(state, observer=metrics)
    detector = DetectionRuntime(
        state.keyring.watermark_master_key,
        generation.cache,
        ledger.integrate_now,
        detections_per_account=settings.rate_limit_detections_per_account,
        window_seconds=settings.rate_limit_window_seconds,
    )
    register_detection_runtime(state.engine, detector)
    # Content Credentials: the signing chain is checked now, so a gateway never starts
    # signing with a certificate a C2PA reader would refuse (expired, wrong chain, no EKU).
    provenance = ProvenanceService.for_gateway(
        settings, state.engine, settings.resolved_keys_dir, now=utcnow()
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task: asyncio.Task[None] | None = None
        if settings.auto_migrate and not try_migrate(state):
            task = asyncio.create_task(_migrate_until_ready(state))
        # Engine replicas are checked (health, canary) before calls need them; a failed check
        # only marks the replica, and calls re-check it on their own.
        checks = asyncio.create_task(generation.check_engines())
        try:
            async with ledger.running(state.schema):
                yield
        finally:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
            await generation.engines.aclose()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="tiergate",
        version=__version__,
        description="Tiered model releases, gated access, watermarking and transparency logs.",
        lifespan=lifespan,
        docs_url=None,  # served from installed assets by install_api_docs, not a CDN
        redoc_url=None,
    )
    app.state.gateway = state
    app.state.ledger = ledger
    app.state.generation = generation
    app.state.scoring = PromptScoring(generation)
    app.state.detection = detector
    app.state.provenance = provenance
    app.state.metrics = metrics
    install_problem_handlers(app)
    install_api_docs(app)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    app.include_router(accounts.router)
    app.include_router(admin.router)
    app.include_router(keys.router)
    app.include_router(releases.router)
    app.include_router(access_routes.router)
    app.include_router(clients.router)
    app.include_router(oauth.router)
    app.include_router(log_routes.router)
    app.include_router(link_routes.router)
    app.include_router(openai_routes.router)
    app.include_router(detect_routes.router)
    app.include_router(moderation_routes.router)
    app.include_router(watermark_key_routes.router)
    app.include_router(engine_key_routes.router)
    app.include_router(provenance_routes.router)
    app.include_router(report_routes.router)
    app.include_router(evaluation_routes.router)
    app.include_router(card_revision_routes.router)
    app.include_router(publisher_policy_routes.router)
    app.include_router(reasoning_routes.router)
    app.include_router(discussion_routes.router)
    app.include_router(provenance_routes.well_known)
    # Web pages (HTML, `/`, `/models/...`, `/static/...`); also renders page errors as HTML.
    install_web(app)
    app.include_router(hub_ref_routes.router)
    # Last: `/{org}/{name}/resolve/...` (Hub compatible) has the shape of a catch-all.
    app.include_router(hub_routes.router)

    # Order: the outermost middleware is added last. Request ids wrap everything so even a
    # 413 from the body limit carries one.
    app.add_middleware(JsonContentTypeMiddleware, applies=_is_json_route)
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_body_bytes,
        limits=[("/api/uploads/", settings.max_upload_chunk_bytes)],
    )
    # Inside the request-id middleware, outside the body limit: 413s are counted too.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestContextMiddleware)
    install_openapi(app, _is_json_route)
    return app
