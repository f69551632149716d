"""A publisher exports their model's watermark key and detects offline with the CLI alone.

Before this command, `tiergate watermark detect` needed a key file nobody could produce
without writing Python against the gateway's master key.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.cli.main import cli
from gateway.db.models import LogEntry
from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

pytestmark = pytest.mark.e2e


def _export(server: LiveServer, account: Account, out: Path, *extra: str) -> Any:
    return CliRunner().invoke(
        cli,
        ["watermark", "export-key", f"{MODEL}:open", "--out", str(out), "--json", *extra],
        env={"TIERGATE_GATEWAY": server.url, "TIERGATE_TOKEN": account.token},
    )


def _said(result: Any) -> str:
    """What the user sees: output, or the error `main()` prints as one line."""
    return str(result.output) + str(result.exception or "")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_publisher_exports_the_key_and_detects_offline(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
    tmp_path: Path,
) -> None:
    publisher = make_account("pat", "publisher", org="acme")
    dev = make_account("dev")
    rival = make_account("rival", "publisher", org="beta")
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(generation_release, http, publisher)
        # Nothing served yet: no key was ever used, so there is nothing to export.
        assert _export(live_server, publisher, tmp_path / "early").exit_code != 0
        made = http.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": "The release gateway", "max_tokens": 200, "seed": 3},
            headers=dev.headers,
        )
        assert made.status_code == 200, made.text
    text = made.json()["choices"][0]["text"]

    # Developers and other orgs' publishers get nothing.
    refused = _export(live_server, dev, tmp_path / "dev")
    assert refused.exit_code != 0
    assert "HTTP 403" in _said(refused)
    other = _export(live_server, rival, tmp_path / "rival")
    assert other.exit_code != 0
    assert "HTTP 403" in _said(other)
    assert not (tmp_path / "dev").exists()
    assert not (tmp_path / "rival").exists()

    out = tmp_path / "wm"
    result = _export(live_server, publisher, out)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    key_file, config = Path(row["key_file"]), Path(row["config"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert row["key_id"] == made.json()["tiergate"]["watermark_key_id"]
    # A second export into the same folder does not overwrite the key silently.
    again = _export(live_server, publisher, out)
    assert again.exit_code != 0
    assert "--force" in _said(again)

    detected = CliRunner().invoke(
        cli,
        ["watermark", "detect", "--text", text, "--config", str(config), "--key-file",
         str(key_file), "--tokenizer", str(generation_release.out_dir / "open"), "--json"],
    )  # fmt: skip
    assert detected.exit_code == 0, detected.output
    verdict = json.loads(detected.output)
    assert verdict["watermarked"]
    assert verdict["p_value"] < 1e-6

    # Each export is on the record: who exported which key (never the key itself).
    with Session(engine) as session:
        entries = session.exec(
            select(LogEntry).where(LogEntry.action == "watermark.key_exported")
        ).all()
    assert len(entries) == 2
    logged = json.loads(entries[0].entry)
    assert logged["actor"]["name"] == "pat"
    assert logged["fields"] == {"key_id": row["key_id"]}
    assert row["key_id"] in entries[0].entry
    assert key_file.read_text().strip() not in entries[0].entry
