"""`GET /metrics`: Prometheus exposition of this replica's counters and the log's gauges.

Public like the probes, so Prometheus needs no token; the reverse proxy in infra/ refuses it
from outside (only in-cluster scrapers reach a replica directly). It reveals counts and
latencies, never ids, paths or secrets: labels are route templates.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.deps import Public
from gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    dependencies=[Public],
    summary="Prometheus metrics (requests by route, downloads, generations, log size and age).",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    registry: GatewayMetrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
