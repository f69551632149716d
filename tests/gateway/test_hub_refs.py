"""`HfApi.list_repo_refs` and `HfApi.whoami` against the gateway, through the real client.

Without refs a developer had no way, from the tools they use, to learn that an `optimized`
revision exists; `whoami` answered 404.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    BuiltRelease,
    built_release,
    publish,
)
from tests.gateway.test_hub import clean_env, run_client

REFS_SCRIPT = r"""
import json, sys
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
endpoint, token = sys.argv[1], sys.argv[2]
api = HfApi(endpoint=endpoint)
refs = api.list_repo_refs("acme/tiny", token=False)
me = api.whoami(token=token, cache=False)
try:
    api.whoami(token="tg_not_a_token", cache=False)
    bad = "accepted"
except HfHubHTTPError as exc:
    bad = exc.response.status_code
print(json.dumps({
    "branches": {r.name: r.target_commit for r in refs.branches},
    "tags": {r.name: r.target_commit for r in refs.tags},
    "me": me, "bad": bad,
}))
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_list_repo_refs_and_whoami_through_huggingface_hub(
    tmp_path: Path,
    built_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        publish(built_release, http, publisher)
        info = http.get("/api/models/acme/tiny/revision/optimized").json()
        open_info = http.get("/api/models/acme/tiny").json()
    result = run_client(REFS_SCRIPT, [live_server.url, publisher.token], clean_env(tmp_path))
    branches, tags = result["branches"], result["tags"]
    assert isinstance(branches, dict)
    assert isinstance(tags, dict)
    assert branches["main"] == branches["open"] == open_info["sha"]
    assert branches["optimized"] == info["sha"]
    assert tags["1.0.0"] == tags["1.0.0-open"] == open_info["sha"]
    assert tags["1.0.0-optimized"] == info["sha"]
    me = result["me"]
    assert isinstance(me, dict)
    assert (me["name"], me["type"]) == ("pat", "user")
    assert me["orgs"] == [{"type": "org", "name": "acme"}]
    assert result["bad"] == 401


def test_refs_of_an_unknown_repository_are_404(client: object) -> None:
    response = client.get("/api/models/acme/nothing/refs")  # type: ignore[attr-defined]
    assert response.status_code == 404
