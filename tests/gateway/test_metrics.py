"""`/metrics`: request counters by route template, downloads, generations and log gauges."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import Settings
from gateway.deps import rule_of
from tests.scale.conftest import make_account_in

RESOLVE = "/{org}/{name}/resolve/{revision}/{path:path}"


@pytest.fixture
def metrics_app(tmp_path: Path, sqlite_template: Path) -> Iterator[Any]:
    target = tmp_path / "tiergate.db"
    shutil.copyfile(sqlite_template, target)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{target}", log_level="warning"
    )
    app = create_app(settings)
    yield app
    app.state.gateway.engine.dispose()


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_requests_are_counted_by_route_template(metrics_app: Any) -> None:
    with TestClient(metrics_app) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        client.get("/api/releases/acme/nope")  # a path with ids: counted under its template
        client.get("/no/such/route/at/all/here")
        got = samples(client)
    ok = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    assert got[("tiergate_http_requests_total", ok)] == 3
    release = (("method", "GET"), ("route", "/api/releases/{org}/{name}"), ("status", "404"))
    assert got[("tiergate_http_requests_total", release)] == 1
    assert not any("nope" in str(labels) for _name, labels in got)  # never raw ids
    latency = (("le", "+Inf"), ("method", "GET"), ("route", "/healthz"))
    assert got[("tiergate_http_request_duration_seconds_bucket", latency)] == 3
    assert got[("tiergate_database_up", ())] == 1
    assert got[("tiergate_log_entries", ())] == 0
    # The scrape itself is in flight while it is rendered.
    assert got[("tiergate_http_requests_in_flight", ())] == 1


def test_downloads_generations_and_log_gauges(metrics_app: Any, tmp_path: Path) -> None:
    from tests.gateway.release_fixtures import publish_test_release

    started = time.time()  # every entry below, and the checkpoint over them, come later
    engine = metrics_app.state.gateway.engine
    publisher = make_account_in(engine)("pub", "publisher", org="acme")
    with TestClient(metrics_app) as client:
        release = publish_test_release(metrics_app, engine, publisher, tmp_path)
        config = release.files["open"]["config.json"]
        response = client.get("/acme/tiny/resolve/main/config.json")
        assert response.status_code == 200
        assert response.content == config
        metrics_app.state.metrics.record_generation("acme/tiny", 17)
        metrics_app.state.ledger.integrate_now()
        got = samples(client)
        scraped_by = time.time()
    download = (("route", RESOLVE), ("status", "200"))
    assert got[("tiergate_downloads_total", download)] == 1
    assert got[("tiergate_download_bytes_total", ())] == len(config)
    assert got[("tiergate_generations_total", (("model", "acme/tiny"),))] == 1
    assert got[("tiergate_generated_tokens_total", (("model", "acme/tiny"),))] == 17
    entries = got[("tiergate_log_entries", ())]
    assert entries >= 3  # key registered, release created and published, download
    assert got[("tiergate_log_checkpoint_size", ())] == entries
    assert got[("tiergate_log_pending_entries", ())] == 0
    # The checkpoint was signed after the test started, so its age at the scrape cannot
    # exceed that distance: a logical bound, whatever the machine's speed.
    assert 0 <= got[("tiergate_log_checkpoint_age_seconds", ())] <= scraped_by - started


def test_metrics_route_is_public() -> None:
    from fastapi.routing import APIRoute

    from gateway.routes.metrics import router

    # Prometheus scrapes without a token; the reverse proxy keeps /metrics off the internet.
    (route,) = router.routes
    assert isinstance(route, APIRoute)
    assert route.path == "/metrics"
    rules = [rule_of(dep.call) for dep in route.dependant.dependencies]
    assert rules == ["public"]
