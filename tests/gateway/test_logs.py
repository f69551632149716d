"""Logs never carry credentials, whatever logged them."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import JsonFormatter, ScrubFilter, scrub


@pytest.mark.parametrize(
    "text",
    [
        "token tg_AbCdEfGhIjKlMnOp used",
        "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.payload.sig",
        "GET /dl?sig=abcdef123&x=1",
    ],
)
def test_scrub_masks_credentials(text: str) -> None:
    cleaned = scrub(text)
    assert "AbCdEfGh" not in cleaned
    assert "eyJhbGci" not in cleaned
    assert "abcdef123" not in cleaned


def test_json_formatter_one_object_per_line() -> None:
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "hello %s", ("tg_secretsecret",), None
    )
    ScrubFilter().filter(record)
    line = JsonFormatter().format(record)
    payload = json.loads(line)
    assert payload["message"] == "hello tg_***"
    assert payload["level"] == "info"
