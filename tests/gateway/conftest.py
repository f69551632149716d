"""Fixtures many gateway test modules share."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import generation_release  # noqa: F401 (a fixture)


@pytest.fixture
def published(
    generation_release: BuiltRelease,  # noqa: F811
    client: TestClient,
    make_account: Callable[..., Account],
) -> Account:
    """The generation test release published by `pat`, a publisher of `acme`."""
    publisher = make_account("pat", "publisher", org="acme")
    publish(generation_release, client, publisher)  # type: ignore[arg-type]
    return publisher
