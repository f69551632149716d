"""Link tokens on their own: signing, verification, rotation, and what never reaches a log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.links import (
    LinkClaims,
    LinkExpired,
    LinkInvalid,
    LinkMalformed,
    LinkNotYetValid,
    LinkObject,
    LinkWrongFile,
    client_network,
    in_network,
    sign_link,
    verify_link,
)
from gateway.logs import ScrubFilter, scrub

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEYS = {"1": b"a" * 32, "2": b"b" * 32}


def claims(key_id: str = "1", **changes: object) -> LinkClaims:
    base = LinkClaims(
        link_id="abc",
        key_id=key_id,
        method="GET",
        object=LinkObject("acme/tiny", "1.0.0", "optimized", "model.safetensors", "0" * 64),
        subject=7,
        grant_id=3,
        not_before=int(NOW.timestamp()),
        expires=int((NOW + timedelta(minutes=15)).timestamp()),
    )
    return LinkClaims(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})  # type: ignore[arg-type]


def verify(
    token: str, *, at: datetime = NOW, method: str = "GET", keys: dict[str, bytes] = KEYS
) -> LinkClaims:
    return verify_link(token, keys, now=at, leeway_seconds=30, method=method)


def test_round_trip_and_rotation() -> None:
    old, new = sign_link(claims("1"), KEYS), sign_link(claims("2"), KEYS)
    assert verify(old) == claims("1")
    assert verify(new).key_id == "2"
    assert verify(old, method="HEAD").link_id == "abc"
    with pytest.raises(LinkInvalid):
        verify(old, keys={"2": KEYS["2"]})  # the old key was dropped


def test_time_window_uses_the_given_clock_and_leeway() -> None:
    token = sign_link(claims(), KEYS)
    assert verify(token, at=NOW - timedelta(seconds=29))
    with pytest.raises(LinkNotYetValid):
        verify(token, at=NOW - timedelta(seconds=31))
    assert verify(token, at=NOW + timedelta(minutes=15, seconds=29))
    with pytest.raises(LinkExpired):
        verify(token, at=NOW + timedelta(minutes=15, seconds=30))
    with pytest.raises(LinkWrongFile):
        verify(token, method="POST")


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_refused(position: int, value: int) -> None:
    token = sign_link(claims(), KEYS)
    index = position % len(token)
    changed = token[:index] + chr(value) + token[index + 1 :]
    if changed == token:
        return
    with pytest.raises(GatewayError) as caught:
        verify(changed)
    assert isinstance(caught.value, LinkInvalid | LinkMalformed)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "tgl1",
        "tgl1.1.",
        "tgl1.1.e30.",
        "x.1.e30.AAAA",
        "tgl1.1!.e30.AAAA",
        "a" * 5000,
        # Regression: a non-ASCII payload once escaped as UnicodeEncodeError (a 500).
        "tgl1.1.\x80e30.AAAA",
    ],
)
def test_garbage_is_malformed_not_a_crash(token: str) -> None:
    with pytest.raises(LinkMalformed):
        verify(token)


def test_networks() -> None:
    assert client_network("10.1.2.3") == "10.1.2.0/24"
    assert client_network("2001:db8::1") == "2001:db8::/64"
    assert client_network("testclient") is None
    assert in_network("10.1.2.200", "10.1.2.0/24")
    assert not in_network("10.1.3.1", "10.1.2.0/24")


def test_link_tokens_never_reach_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = sign_link(claims(), KEYS)
    assert token not in scrub(f"GET /dl/acme/tiny/1.0.0/optimized/x?token={token}")
    assert token not in scrub(f"issued {token} for dev")
    logger = logging.getLogger("tiergate.test")
    logger.addFilter(ScrubFilter())
    with caplog.at_level(logging.INFO, logger="tiergate.test"):
        logger.info("link %s", token)
    assert token not in caplog.text
    assert "tgl1.***" in caplog.text
