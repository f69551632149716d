"""Prometheus metrics: per-process request counters, and log gauges read from the database.

Each gateway process counts its own requests, downloads and generations; Prometheus scrapes
every replica and sums. Everything shared (log size, checkpoint age) is computed from the
database at scrape time, so any replica reports the same values and none keeps shared state
in memory. When several workers share one process tree (``uvicorn --workers N``), set
``PROMETHEUS_MULTIPROC_DIR`` as ``prometheus_client`` documents: the counters then live in
mmap files that one scrape aggregates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "MetricsMiddleware", "route_template"]

UNMATCHED = "<unmatched>"
# Latency buckets from a health probe (ms) to a long streamed download (minutes).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A safety scan of one output takes milliseconds (issue 19's target: <= 5 ms p95 for 512
# tokens), so its buckets resolve that range.
_SCAN_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.1, 1)


def route_template(scope: Scope) -> str:
    """The matched route's path template: bounded label values, never raw ids or paths."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def is_download_route(template: str) -> bool:
    return template.startswith("/dl/") or "/resolve/" in template


class LogCollector(Collector):
    """Gauges derived from the database when scraped: the same answer from every replica."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("tiergate_database_up", "1 if the database answered this scrape")
        try:
            with self.engine.connect() as connection:
                state = connection.execute(
                    text("SELECT next_index, tree_size FROM log_state WHERE id = 1")
                ).first()
                latest = connection.execute(
                    text("SELECT size, created_at FROM log_checkpoints ORDER BY size DESC LIMIT 1")
                ).first()
        except Exception:  # a scrape must answer even with the database down
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        entries, integrated = (int(state[0]), int(state[1])) if state is not None else (0, 0)
        yield GaugeMetricFamily(
            "tiergate_log_entries", "Entries appended to the transparency log", value=entries
        )
        yield GaugeMetricFamily(
            "tiergate_log_pending_entries",
            "Entries appended but not yet in a signed checkpoint",
            value=max(0, entries - integrated),
        )
        if latest is not None:
            yield GaugeMetricFamily(
                "tiergate_log_checkpoint_size",
                "Tree size of the latest checkpoint",
                value=latest[0],
            )
            yield GaugeMetricFamily(
                "tiergate_log_checkpoint_age_seconds",
                "Seconds since the latest checkpoint was signed",
                value=max(0.0, time.time() - _epoch(latest[1])),
            )


def _epoch(value: Any) -> float:
    from datetime import UTC, datetime

    if isinstance(value, str):  # SQLite hands timestamps back as text
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    return time.time()


@dataclass
class GatewayMetrics:
    """One gateway app's metrics, in a registry of its own (tests build many apps per process)."""

    registry: CollectorRegistry
    engine: Engine
    requests: Counter = field(init=False)
    latency: Histogram = field(init=False)
    in_flight: Gauge = field(init=False)
    response_bytes: Counter = field(init=False)
    downloads: Counter = field(init=False)
    download_bytes: Counter = field(init=False)
    generations: Counter = field(init=False)
    generated_tokens: Counter = field(init=False)
    safety_scans: Histogram = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "tiergate_http_requests",
            "HTTP requests by route template",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tiergate_http_request_duration_seconds",
            "Time to the end of the response body",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "tiergate_http_requests_in_flight",
            "Requests being served (drains to 0 during a graceful shutdown)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.response_bytes = Counter(
            "tiergate_http_response_bytes", "Response body bytes sent", ["route"], registry=r
        )
        self.downloads = Counter(
            "tiergate_downloads",
            "File downloads (resolve and link routes; 302 = redirected to storage)",
            ["route", "status"],
            registry=r,
        )
        self.download_bytes = Counter(
            "tiergate_download_bytes", "File bytes sent by the gateway itself", registry=r
        )
        self.generations = Counter(
            "tiergate_generations", "Generation calls served", ["model"], registry=r
        )
        self.generated_tokens = Counter(
            "tiergate_generated_tokens", "Tokens generated", ["model"], registry=r
        )
        self.safety_scans = Histogram(
            "tiergate_safety_scan_seconds",
            "Time to scan one text (an output, a streamed window, a moderation input) for safety",
            buckets=_SCAN_BUCKETS,
            registry=r,
        )
        r.register(LogCollector(self.engine))

    @classmethod
    def create(cls, engine: Engine) -> GatewayMetrics:
        return cls(registry=CollectorRegistry(auto_describe=True), engine=engine)

    def record_generation(self, model: str, tokens: int) -> None:
        """One logged generation call that produced ``tokens`` tokens (the generation
        service calls it as its :class:`~gateway.services.generation_types.GenerationObserver`)."""
        self.generations.labels(model=model).inc()
        self.generated_tokens.labels(model=model).inc(max(0, tokens))

    def record_safety_scan(self, seconds: float) -> None:
        """One safety scan of an output or a streamed window took ``seconds``."""
        self.safety_scans.observe(max(0.0, seconds))

    def render(self) -> bytes:
        """The exposition text; aggregated over worker processes in multiprocess mode."""
        # prometheus_client itself switches to mmap values on this variable (its convention).
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            combined.register(LogCollector(self.engine))
            return generate_latest(combined)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and its body bytes."""

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.in_flight.dec()
            self._observe(scope, status, sent, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, sent: int, seconds: float) -> None:
        m = self.metrics
        route = route_template(scope)
        method = str(scope.get("method", "?"))
        m.requests.labels(method=method, route=route, status=str(status)).inc()
        m.latency.labels(method=method, route=route).observe(seconds)
        m.response_bytes.labels(route=route).inc(sent)
        if is_download_route(route) and method == "GET":
            m.downloads.labels(route=route, status=str(status)).inc()
            if status in (200, 206):
                m.download_bytes.inc(sent)
