"""Content Credentials through a real server with the `openai` client, checked with c2pa-python.

A developer generates (plain, streamed, chat); each choice carries a C2PA manifest signed by
the gateway that c2pa-rs validates as Trusted against the root published at the well-known
URL, with a hard binding over the text; the public soft-binding resolution API finds it again
by binding value and by the text alone, with an inclusion proof that verifies against the
signed checkpoint; the text wrapper round-trips and is applied only when asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.services.provenance import (
    DIGITAL_SOURCE_TYPE,
    SOFT_BINDING_ALG,
    HardBindingMismatch,
    ManifestUntrusted,
    VerifiedCredential,
    embed_in_text,
    extract_from_text,
    verify_credential,
    verify_text_credential,
)
from gateway.services.provenance_certs import ensure_local_ca
from gateway.services.release_credentials import RELEASE_ASSET_FORMAT
from licensing.tlog.checkpoint import parse_checkpoint
from licensing.tlog.merkle import verify_inclusion
from licensing.tlog.note import Verifier, open_note
from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

pytestmark = pytest.mark.e2e
PROMPT = "The release gateway"


def _client(server: LiveServer, make_account: Callable[..., Account], built: BuiltRelease) -> Any:
    import openai

    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=server.url, timeout=120) as http:
        publish(built, http, publisher)
    dev = make_account("dev")
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=dev.token, max_retries=0)


def _verified(credential: dict[str, Any], text: str, root: bytes) -> VerifiedCredential:
    store = base64.b64decode(credential["manifest"])
    return verify_text_credential(store, text, trust_anchor=root)


def offline_args(tmp_path: Path) -> list[str]:
    return [
        "provenance", "verify", str(tmp_path / "text.txt"),
        "--manifest", str(tmp_path / "m.c2pa"), "--root", str(tmp_path / "root.pem"),
        "--proof", str(tmp_path / "match.json"), "--checkpoint-vkey", f"@{tmp_path / 'log.vkey'}",
    ]  # fmt: skip


def _check_proof(server: LiveServer, proof: dict[str, Any], log_index: int) -> None:
    """The inclusion proof leads to the root of a checkpoint the log's key signed."""
    assert proof["index"] == log_index
    vkey = httpx.get(f"{server.url}/log/vkey", timeout=30).text.strip()
    note = open_note(proof["checkpoint"], [Verifier.from_vkey(vkey)])
    checkpoint = parse_checkpoint(note.text)
    assert checkpoint.size == proof["tree_size"]
    assert checkpoint.root_hash.hex() == proof["root_hash"]
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        checkpoint.root_hash,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_completions_carry_content_credentials_that_resolve_by_binding_and_by_content(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    app: Any,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    client = _client(live_server, make_account, generation_release)
    root = httpx.get(f"{live_server.url}/.well-known/tiergate/c2pa-root.pem", timeout=30)
    assert root.status_code == 200
    assert root.content.startswith(b"-----BEGIN CERTIFICATE-----")

    made = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=200, seed=21)
    # Into a signed checkpoint now: the integrator's timer lags on a loaded machine, and a
    # match's proof is null until the call is integrated.
    app.state.ledger.integrate_now()
    text = made.choices[0].text
    ext = made.model_extra["tiergate"]
    (credential,) = ext["content_credentials"]
    assert "\ufeff" not in text  # never embedded unless asked for
    checked = _verified(credential, text, root.content)
    assert checked.state == "Trusted"
    assert checked.manifest_id == credential["manifest_id"]
    (action,) = checked.assertion("c2pa.actions.v2")["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    generation = checked.assertion("org.tiergate.generation")
    assert generation["model"] == ext["model"] == f"{MODEL}:open"
    assert generation["call_id"] == made.id
    assert generation["log_index"] == ext["log_index"]
    assert generation["call_tag"] == ext["payload"]
    assert re.fullmatch("[0-9a-f]{64}", generation["release_statement_digest"])
    assert generation["receipt_url"].endswith(f"/log/receipt/{ext['log_index']}")
    soft = checked.assertion("c2pa.soft-binding")
    assert soft["alg"] == SOFT_BINDING_ALG
    assert soft["blocks"][0]["value"] == credential["soft_binding"]["value"]

    # Tampered text fails the hard binding; another CA's root does not vouch for the signer.
    with pytest.raises(HardBindingMismatch):
        _verified(credential, text.replace(" ", "  ", 1), root.content)
    *_, other_root = ensure_local_ca(tmp_path / "elsewhere", made_at())
    with pytest.raises(ManifestUntrusted):
        _verified(credential, text, other_root.read_bytes())

    api = f"{live_server.url}/c2pa/v1"
    algs = httpx.get(f"{api}/services/supportedAlgorithms", timeout=30).json()
    assert algs["watermarks"] == [{"alg": SOFT_BINDING_ALG}]

    # By binding value: the manifest, its log index and a proof that verifies.
    by_value = httpx.get(
        f"{api}/matches/byBinding",
        params={"alg": SOFT_BINDING_ALG, "value": credential["soft_binding"]["value"]},
        timeout=60,
    ).json()
    (match,) = by_value["matches"]
    assert match["manifestId"] == credential["manifest_id"]
    _check_proof(live_server, match["tiergate"]["inclusion_proof"], ext["log_index"])
    store = httpx.get(f"{api}/manifests/{match['manifestId']}", timeout=30)
    assert store.headers["content-type"] == "application/c2pa"
    assert store.content == base64.b64decode(credential["manifest"])

    # By content: nothing but the text (no metadata), and no account.
    by_text = httpx.post(
        f"{api}/matches/byContent",
        content=text.encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
        timeout=120,
    )
    assert by_text.status_code == 200, by_text.text
    (found,) = by_text.json()["matches"]
    assert found["manifestId"] == credential["manifest_id"]
    assert found["similarityScore"] == 100
    _check_proof(live_server, found["tiergate"]["inclusion_proof"], ext["log_index"])
    recovered = httpx.get(f"{api}/manifests/{found['manifestId']}", timeout=30).content
    assert verify_text_credential(recovered, text, trust_anchor=root.content).state == "Trusted"
    # Offline, as a detector would: the text, the store, the match and the two public keys.
    files = {"text.txt": text.encode(), "m.c2pa": recovered, "root.pem": root.content}
    files["match.json"] = by_text.content
    files["log.vkey"] = httpx.get(f"{live_server.url}/log/vkey", timeout=30).content
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    offline = CliRunner().invoke(cli, [*offline_args(tmp_path), "--json"])
    assert offline.exit_code == 0, offline.output
    report = json.loads(offline.output)
    assert (report["call_id"], report["log_index"]) == (made.id, ext["log_index"])
    (tmp_path / "text.txt").write_bytes(text.encode() + b".")
    tampered = CliRunner().invoke(cli, offline_args(tmp_path))
    assert tampered.exit_code == 6, tampered.output
    # Pasted with its wrapper still in it: the wrapper is set aside, the watermark resolves.
    wrapped = httpx.post(
        f"{api}/matches/byContent",
        content=embed_in_text(text, recovered).encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
        timeout=120,
    )
    assert [m["manifestId"] for m in wrapped.json()["matches"]] == [credential["manifest_id"]]

    # The release's tier has a Content Credential too: a sidecar bound to its model.sig.
    built = generation_release
    sidecar = httpx.get(
        f"{live_server.url}/api/releases/{built.repo_id}/{built.version}/tiers/open"
        "/content-credential",
        timeout=30,
    )
    assert sidecar.status_code == 200, sidecar.text
    model_sig = built.tier_files("open")["model.sig"]
    release = verify_credential(
        sidecar.content, model_sig, RELEASE_ASSET_FORMAT, trust_anchor=root.content
    )
    claims = release.assertion("org.tiergate.release")
    assert claims["release_statement_digest"] == generation["release_statement_digest"]
    assert claims["model"] == f"{MODEL}:open"
    weights = {p: hashlib.sha256(b).hexdigest() for p, b in built.tier_files("open").items()}
    assert {f["path"]: f["sha256"] for f in claims["files"]}.items() <= weights.items()
    with pytest.raises(HardBindingMismatch):
        verify_credential(
            sidecar.content, model_sig + b" ", RELEASE_ASSET_FORMAT, trust_anchor=root.content
        )
    missing = httpx.get(
        f"{live_server.url}/api/releases/{built.repo_id}/{built.version}/tiers/nope"
        "/content-credential",
        timeout=30,
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "release_tier_not_found")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_streamed_and_chat_credentials_and_the_text_wrapper_on_request(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    client = _client(live_server, make_account, generation_release)
    root = httpx.get(f"{live_server.url}/.well-known/tiergate/c2pa-root.pem", timeout=30).content

    # Streamed, not embedded: the last chunk's credentials bind the text as streamed.
    streamed, last = "", None
    for chunk in client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=40, stream=True, seed=22
    ):
        streamed += chunk.choices[0].text
        last = chunk
    assert last is not None
    (credential,) = last.model_extra["tiergate"]["content_credentials"]
    assert "\ufeff" not in streamed
    assert _verified(credential, streamed, root).state == "Trusted"

    # Streamed with the wrapper asked for: it arrives as the choice's last piece of text.
    wrapped, last = "", None
    for chunk in client.completions.create(
        model=MODEL,
        prompt=PROMPT,
        max_tokens=40,
        stream=True,
        seed=23,
        extra_body={"c2pa_embed": True},
    ):
        wrapped += chunk.choices[0].text
        last = chunk
    assert last is not None
    store, clean = extract_from_text(wrapped)
    assert store is not None
    (credential,) = last.model_extra["tiergate"]["content_credentials"]
    assert store == base64.b64decode(credential["manifest"])
    assert verify_text_credential(store, clean, trust_anchor=root).state == "Trusted"

    # Chat, two choices, embedded: each message carries its own credential in its text.
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Explain the log."}],
        max_tokens=16,
        n=2,
        extra_body={"c2pa_embed": True},
    )
    credentials = chat.model_extra["tiergate"]["content_credentials"]
    assert [c["choice_index"] for c in credentials] == [0, 1]
    for choice, credential in zip(chat.choices, credentials, strict=True):
        content = choice.message.content
        assert content is not None
        store, clean = extract_from_text(content)
        assert store == base64.b64decode(credential["manifest"])
        checked = verify_text_credential(store, clean, trust_anchor=root)
        assert checked.assertion("org.tiergate.generation")["choice_index"] == choice.index
        # The wrapper is not part of what is bound: the text with it fails the hard binding.
        with pytest.raises(HardBindingMismatch):
            verify_text_credential(store, content, trust_anchor=root)


def made_at() -> Any:
    from gateway.db.timeutil import utcnow

    return utcnow()
