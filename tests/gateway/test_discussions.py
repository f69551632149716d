"""An unmodified `huggingface_hub` client files and reads reports as Hub discussions, against a
real server (SQLite and PostgreSQL): the same verification against the log, lifecycle and
visibility as `/api/reports`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.ledger.events import digest_of
from gateway.services.discussions import parse_discussion
from tests.conftest import Account, LiveServer
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401
from tests.gateway.test_hub import clean_env, run_client
from tests.gateway.test_reports import (  # noqa: F401
    entries,
    generate,
    settings,
    step,
)

CLIENT = r"""
import json, sys
from huggingface_hub import HfApi
from huggingface_hub.utils import HfHubHTTPError

endpoint, token, quote = sys.argv[1], sys.argv[2], sys.argv[3]
api = HfApi(endpoint=endpoint, token=token)
out = {}

def shape(d):
    return {"num": d.num, "title": d.title, "status": d.status, "author": d.author,
            "repo": d.repo_id, "pr": d.is_pull_request,
            "events": [[e.type, getattr(e, "content", None) or getattr(e, "new_status", None)]
                       for e in getattr(d, "events", [])]}

made = api.create_discussion("acme/chatty", "[bias] stereotypes a group",
                             description="It said:\n\n```text\n" + quote + "\n```\n")
out["genuine"] = shape(made)
fake = api.create_discussion("acme/chatty", "Wrong answer",
                             description="```\nI never said this at all, honestly.\n```")
out["fake"] = shape(fake)
said = api.comment_discussion("acme/chatty", made.num, "Same here, **twice**.")
out["comment"] = [said.type, said.content, said.author]
out["listed"] = [shape(d) for d in api.get_repo_discussions("acme/chatty")]
listed = api.get_repo_discussions
out["closed"] = [d.num for d in listed("acme/chatty", discussion_status="closed")]
out["prs"] = [d.num for d in listed("acme/chatty", discussion_type="pull_request")]
for label, call in (
    ("pr", lambda: api.create_discussion("acme/chatty", "a pull", pull_request=True)),
    ("other_repo", lambda: api.get_discussion_details("acme/other", made.num)),
    ("anonymous", lambda: HfApi(endpoint=endpoint, token=False).get_discussion_details(
        "acme/chatty", 1)),
    ("status", lambda: api.change_discussion_status("acme/chatty", made.num, "closed")),
    ("long_comment", lambda: api.comment_discussion("acme/chatty", made.num, "x" * 10_001)),
    ("anonymous_comment", lambda: HfApi(endpoint=endpoint, token=False).comment_discussion(
        "acme/chatty", made.num, "me too")),
    ("no_model", lambda: api.create_discussion("acme/nothing", "[bias] x y z")),
):
    try:
        call()
        out[label] = "ok"
    except HfHubHTTPError as exc:
        out[label] = [exc.response.status_code, exc.response.json().get("code")]
print(json.dumps(out))
"""

AFTER_STEPS = r"""
import json, sys
from huggingface_hub import HfApi
endpoint, token = sys.argv[1], sys.argv[2]
api = HfApi(endpoint=endpoint, token=token)
d = api.get_discussion_details("acme/chatty", 1)
print(json.dumps({"status": d.status, "events": [[e.type, getattr(e, "new_status", None)]
                                                 for e in d.events],
                  "closed": [x.num for x in api.get_repo_discussions("acme/chatty",
                                                                     discussion_status="closed")]}))
"""


def test_huggingface_hub_files_reads_and_lists_reports_as_discussions(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    tmp_path: Path,
    engine: Engine,
) -> None:
    dev = make_account("dev")
    made = generate(client, dev)
    quote = made["choices"][0]["text"]
    index = made["tiergate"]["log_index"]
    env = clean_env(tmp_path)
    out: dict[str, Any] = run_client(CLIENT, [live_server.url, dev.token, quote], env)

    genuine = out["genuine"]
    assert genuine["num"] == 1
    assert genuine["status"] == "open"
    assert genuine["author"] == "dev"
    assert genuine["title"] == "[bias] stereotypes a group"
    assert genuine["repo"] == "acme/chatty"
    assert genuine["events"][1] == ["comment", f"genuine output of {MODEL}, logged call {index}"]
    assert genuine["events"][0][1].startswith("[bias] stereotypes a group\n\nIt said:")
    fake = out["fake"]
    assert fake["num"] == 2
    assert fake["events"][1][1].startswith("not verified: the text is not a logged output")
    assert [d["num"] for d in out["listed"]] == [2, 1]  # newest first
    assert out["closed"] == []
    assert out["prs"] == []
    assert out["pr"] == [422, "discussion_pull_request_unsupported"]
    assert out["other_repo"] == [404, "report_not_found"]
    assert out["anonymous"] == [404, "report_not_found"]  # private until disclosed
    assert out["no_model"][0] == 404
    assert out["comment"] == ["comment", "Same here, **twice**.", "dev"]
    assert out["status"] == [400, "discussion_action_unsupported"]
    assert out["long_comment"] == [413, "report_too_large"]
    assert out["anonymous_comment"][0] == 401

    # The same reports through the report API, with the category from the title.
    one = client.get("/api/reports/1", headers=dev.headers).json()
    assert one["category"] == "bias"
    assert one["quoted_output"] == quote
    assert one["verification"]["method"] == "output_digest"
    [comment] = one["comments"]
    assert (comment["author"], comment["text"]) == ("dev", "Same here, **twice**.")
    [logged] = [e for e in entries(engine, "report.commented")]
    assert logged["fields"]["text_sha256"] == digest_of("Same here, **twice**.")
    assert "Same here" not in json.dumps(logged)
    two = client.get("/api/reports/2", headers=dev.headers).json()
    assert two["category"] == "other"
    assert two["quoted_output"] == "I never said this at all, honestly."

    assert step(client, published, 1, step="triaged").status_code == 200
    assert step(client, published, 1, step="rejected").status_code == 200
    after: dict[str, Any] = run_client(AFTER_STEPS, [live_server.url, dev.token], env)
    assert after["status"] == "closed"
    assert after["events"][2:] == [
        ["comment", None],  # new_status of a comment; its text is checked above
        ["status-change", "open"],
        ["status-change", "closed"],
    ]
    assert after["closed"] == [1]


@pytest.mark.parametrize(
    ("title", "description", "category", "quote"),
    [
        ("[Bias] x", "no block", "bias", None),
        ("toxicity: rude", "```\nyou fool\n```", "toxicity", "you fool"),
        (
            "[spam] hi",
            "~~~md\nline one\nline two\n~~~\n```\nsecond\n```",
            "other",
            "line one\nline two",
        ),
        ("plain title", "```\n```", "other", ""),
        ("colon: none", "x", "other", None),
    ],
)
def test_title_prefix_and_first_fenced_block(
    title: str, description: str, category: str, quote: str | None
) -> None:
    parsed = parse_discussion(title, description)
    assert (parsed.category, parsed.quoted_output) == (category, quote)
    assert parsed.description == f"{title}\n\n{description}"


def test_titles_out_of_bounds_are_refused() -> None:
    from gateway.errors import ValidationFailed

    for title in ("ab", "x" * 201, "   "):
        with pytest.raises(ValidationFailed):
            parse_discussion(title, "")
