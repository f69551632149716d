"""Unmodified Hugging Face clients against a real server: huggingface_hub 2.x and 0.3x.

Each client runs in a subprocess with a clean environment: huggingface_hub reads its
endpoint, cache and token settings at import time, and a developer's own token must never
reach the test server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    BuiltRelease,
    built_release,
    grant_access,
    publish,
)

OLD_HUB_VERSION = "0.36.*"

CLIENT_SCRIPT = r"""
import json, os, sys
from pathlib import Path
import huggingface_hub as hh
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.utils import GatedRepoError

endpoint, out, token = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
result = {"version": hh.__version__}

def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes().hex()[:64] + str(p.stat().st_size)
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and ".cache" not in p.parts}

# Open tier: no token at all.
snap = snapshot_download("acme/tiny", endpoint=endpoint, cache_dir=out / "cache")
result["open_cache"] = files(snap)
result["snapshot"] = str(snap)
local = snapshot_download("acme/tiny", endpoint=endpoint, cache_dir=out / "cache",
                          local_dir=out / "open")
result["open_local"] = files(local)
one = hf_hub_download("acme/tiny", "config.json", endpoint=endpoint, revision="1.0.0",
                      cache_dir=out / "cache2")
result["config"] = Path(one).read_text()[:20]
# The release's AI BOMs sit beside its files, as a Hub client sees them.
for name in ("aibom.spdx.json", "aibom.cdx.json"):
    result[name] = Path(hf_hub_download("acme/tiny", name, endpoint=endpoint,
                                        cache_dir=out / "cache-bom")).read_text()

# Gated tier before a grant: no token -> 401, token without grant -> 403.
for label, tok in (("anonymous", None), ("no_grant", token)):
    try:
        snapshot_download("acme/tiny", revision="optimized", endpoint=endpoint, token=tok,
                          cache_dir=out / f"cache-{label}")
        result[label] = "downloaded"
    except GatedRepoError as exc:
        result[label] = exc.response.status_code

if len(sys.argv) > 4:  # transformers, pointed at the gateway by HF_ENDPOINT alone
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("acme/tiny")
    tokenizer = AutoTokenizer.from_pretrained("acme/tiny")
    ids = tokenizer("The release gateway", return_tensors="pt").input_ids
    result["generated"] = model.generate(ids, max_new_tokens=3, do_sample=False).shape[-1]
    result["ids"] = ids.shape[-1]
print(json.dumps(result))
"""

GATED_SCRIPT = r"""
import json, sys
from pathlib import Path
from huggingface_hub import snapshot_download
endpoint, out, token = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
path = snapshot_download("acme/tiny", revision="1.0.0-optimized", endpoint=endpoint,
                         token=token, local_dir=out / "optimized")
print(json.dumps({p.relative_to(path).as_posix(): p.stat().st_size
                  for p in Path(path).rglob("*") if p.is_file() and ".cache" not in p.parts}))
"""


def clean_env(tmp_path: Path, extra_path: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_")) and k != "PYTHONPATH"
    }
    env.update(
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_XET="1",
    )
    if extra_path:
        env["PYTHONPATH"] = extra_path
    return env


def run_client(
    script: str, args: list[str], env: dict[str, str], timeout: float = 120
) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="session")
def old_hub(tmp_path_factory: pytest.TempPathFactory) -> str:
    """huggingface_hub 0.3x installed into its own directory (dependencies from the venv)."""
    target = tmp_path_factory.mktemp("hub-0.3x")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), f"huggingface_hub=={OLD_HUB_VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot install huggingface_hub {OLD_HUB_VERSION}: {done.stderr[-500:]}")
    return str(target)


AIBOM_FILES = {"aibom.spdx.json", "aibom.cdx.json"}


def expected_files(built: BuiltRelease, tier: str) -> set[str]:
    """The tier's signed files (and model.sig) plus the release's derived AI BOMs."""
    return set(built.tier_files(tier)) | AIBOM_FILES


@pytest.mark.parametrize("hub", ["2.x", "0.3x"])
@pytest.mark.slow
def test_hub_clients_download_open_and_gated_tiers(
    hub: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    built_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    import httpx

    if hub == "0.3x" and not str(engine.url).startswith("sqlite"):
        pytest.skip("the 0.3x client runs on SQLite only (same server code; CI time)")
    extra = request.getfixturevalue("old_hub") if hub == "0.3x" else None
    env = clean_env(tmp_path, extra)
    # huggingface_hub reads HF_ENDPOINT at import: transformers finds the gateway through it.
    env["HF_ENDPOINT"] = live_server.url
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        publish(built_release, http, make_account("pat", "publisher", org="acme"))
    dev = make_account("dev")
    args = [live_server.url, str(tmp_path), dev.token] + ([] if extra else ["transformers"])
    result = run_client(CLIENT_SCRIPT, args, env)
    assert str(result["version"]).startswith("0.36" if extra else "2.")
    open_files = expected_files(built_release, "open")
    assert set(result["open_cache"]) == open_files  # type: ignore[arg-type]
    assert set(result["open_local"]) == open_files  # type: ignore[arg-type]
    assert result["config"] == built_release.tier_files("open")["config.json"].decode()[:20]
    assert result["anonymous"] == 401
    assert result["no_grant"] == 403
    if not extra:
        assert result["generated"] == result["ids"] + 3  # type: ignore[operator]
    for name in AIBOM_FILES:
        served = httpx.get(f"{live_server.url}/api/releases/acme/tiny/1.0.0/{name}")
        assert served.status_code == 200
        assert result[name] == served.text
        assert json.loads(served.text)  # schema checks: tests/gateway/test_aibom_routes.py

    grant_access(engine, "dev")
    sizes = run_client(GATED_SCRIPT, [live_server.url, str(tmp_path), dev.token], env)
    built = built_release.tier_files("optimized")
    assert set(sizes) == set(built) | AIBOM_FILES  # type: ignore[arg-type]
    assert {n: s for n, s in sizes.items() if n in built} == {n: len(d) for n, d in built.items()}
    for name, data in built.items():
        assert (tmp_path / "optimized" / name).read_bytes() == data

    # The Hub cache snapshot is a tree of symlinks into blobs/: --allow_symlinks.
    pub = tmp_path / "pub.pem"
    pub.write_bytes(built_release.public_pem)
    snapshot = Path(str(result["snapshot"]))
    cached = subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(snapshot),
         "--signature", str(snapshot / "model.sig"), "--public_key", str(pub),
         "--ignore_unsigned_files", "--allow_symlinks"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cached.returncode == 0, cached.stdout + cached.stderr
    # The downloaded tiers verify with model_signing itself (local_dir: real files, no links).
    for tier, folder in (("open", tmp_path / "open"), ("optimized", tmp_path / "optimized")):
        checked = subprocess.run(
            [sys.executable, "-m", "model_signing", "verify", "key", str(folder),
             "--signature", str(folder / "model.sig"), "--public_key", str(pub),
             "--ignore_unsigned_files", "--ignore-paths", str(folder / ".cache")],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, (tier, checked.stdout + checked.stderr)


METADATA_SCRIPT = r"""
import json, sys
from huggingface_hub import HfApi
api = HfApi(endpoint=sys.argv[1], token=False)
def view(m):
    card = m.card_data.to_dict() if m.card_data is not None else {}
    return {"gated": m.gated, "pipeline_tag": m.pipeline_tag, "library_name": m.library_name,
            "tags": m.tags, "license": card.get("license"), "card_tags": card.get("tags")}
print(json.dumps({
    "listed": [view(m) for m in api.list_models(author="acme")],
    "listed_card": [view(m) for m in api.list_models(author="acme", cardData=True)],
    "repo": view(api.model_info("acme/tiny")),
    "open": view(api.model_info("acme/tiny", revision="1.0.0")),
    "optimized": view(api.model_info("acme/tiny", revision="1.0.0-optimized")),
}))
"""

YANKED_SCRIPT = r"""
import json, sys
from pathlib import Path
from huggingface_hub import hf_hub_download, snapshot_download
endpoint, out, token = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
calls = {
    "optimized": lambda: snapshot_download("acme/tiny", revision="1.0.0-optimized",
                                           endpoint=endpoint, token=token, cache_dir=out / "y1"),
    "main": lambda: snapshot_download("acme/tiny", endpoint=endpoint, cache_dir=out / "y2"),
    "file": lambda: hf_hub_download("acme/tiny", "config.json", revision="1.0.0",
                                    endpoint=endpoint, cache_dir=out / "y3"),
}
result = {}
for name, call in calls.items():
    try:
        call()
        result[name] = ["downloaded", ""]
    except Exception as exc:
        result[name] = [type(exc).__name__, str(exc)]
print(json.dumps(result))
"""


@pytest.mark.parametrize("hub", ["2.x", "0.3x"])
@pytest.mark.slow
def test_hub_metadata_from_the_card_and_yanks_as_hub_clients_see_them(
    hub: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    built_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    import httpx

    if hub == "0.3x" and not str(engine.url).startswith("sqlite"):
        pytest.skip("the 0.3x client runs on SQLite only (same server code; CI time)")
    extra = request.getfixturevalue("old_hub") if hub == "0.3x" else None
    env = clean_env(tmp_path, extra)
    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        publish(built_release, http, publisher)
    dev = make_account("dev")
    grant_access(engine, "dev")

    seen = run_client(METADATA_SCRIPT, [live_server.url], env)
    for view in (*seen["listed"], *seen["listed_card"], seen["repo"]):  # type: ignore[misc]
        # The repository has a gated tier whose requests a person reviews (the default).
        assert view["gated"] == "manual", seen
        assert view["pipeline_tag"] == "text-generation"
        assert view["library_name"] == "transformers"
        assert "tiergate" in view["tags"]
        assert "license:apache-2.0" in view["tags"]
    for view in (*seen["listed_card"], seen["repo"], seen["open"]):  # type: ignore[misc]
        assert view["license"] == "apache-2.0"
        assert "tiergate" in view["card_tags"]
    assert seen["open"]["gated"] is False  # type: ignore[index]
    assert seen["optimized"]["gated"] == "manual"  # type: ignore[index]

    with httpx.Client(base_url=live_server.url, timeout=60, headers=publisher.headers) as http:
        first = http.post("/api/releases/acme/tiny/1.0.0/yank", json={"reason": "bad tokenizer"})
        assert first.status_code == 200, first.text
        # A second yank is refused with the reason that stands; nothing is overwritten.
        again = http.post("/api/releases/acme/tiny/1.0.0/yank", json={"reason": "other"})
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "already_yanked"
        assert again.json()["yank_reason"] == "bad tokenizer"
        assert http.get("/api/releases/acme/tiny/1.0.0").json()["yank_reason"] == "bad tokenizer"
    # The CLI says so instead of echoing the new reason it never recorded.
    from click.testing import CliRunner

    from gateway.cli.main import cli

    args = ["--gateway", live_server.url, "--token", publisher.token]
    done = CliRunner().invoke(
        cli, ["release", "yank", "acme/tiny@1.0.0", "--reason", "other", *args]
    )
    assert done.exit_code != 0
    said = done.output + str(done.exception)  # main() prints the error; the group raises it
    assert "was already yanked: bad tokenizer (HTTP 409)" in said
    assert "yanked acme/tiny@1.0.0: other" not in said
    with httpx.Client(base_url=live_server.url, timeout=60, headers=publisher.headers) as http:
        page = http.get("/models/acme/tiny")
        assert page.status_code == 200
        assert "bad tokenizer" in page.text
        assert "Request access" not in page.text
        info = http.get("/api/models/acme/tiny/revision/1.0.0-optimized")
        assert info.status_code == 410
        assert info.headers["x-error-code"] == "RevisionNotFound"
        assert info.headers["x-error-message"] == "acme/tiny@1.0.0 was yanked: bad tokenizer"

    yanked = run_client(YANKED_SCRIPT, [live_server.url, str(tmp_path), dev.token], env)
    for name, (kind, message) in yanked.items():  # type: ignore[attr-defined]
        assert kind == "RevisionNotFoundError", (name, kind, message)
        assert "acme/tiny@1.0.0 was yanked: bad tokenizer" in message, (name, message)
        assert "Internet connection" not in message
