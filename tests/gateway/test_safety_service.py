"""The safety service without a model: policies from statements, checks that cannot load,
and a guard release that fails verification (fail open or closed, and the reason recorded)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gateway.generation.models import ModelNotVerified
from gateway.generation.sampler import Choice
from gateway.services.safety import BLOCKED_TEXT, SafetyService, policy_of_statement
from safety.errors import CheckUnavailableError
from safety.policy import GuardRef, parse_policy
from tests._async import run_async
from tests.safety.fakes import TermCheck


def _policy(failure: str) -> Any:
    return parse_policy(
        {
            "checks": ["wordlist", "guard"],
            "rules": {"*": {"action": "redact"}},
            "on_check_failure": failure,
            "guard": {"release": "acme/guard@1.0.0"},
        }
    )


def _service(**kw: Any) -> SafetyService:
    return SafetyService(None, check_factory=lambda name: TermCheck({"darn": "profanity"}), **kw)  # type: ignore[arg-type]


def _unverified(ref: GuardRef) -> Any:
    raise ModelNotVerified(f"{ref.release}:open failed verification: model.sig does not match")


@pytest.mark.parametrize(("failure", "action"), [("closed", "block"), ("open", "redact")])
def test_a_guard_that_fails_verification_fails_as_the_policy_says(
    failure: str, action: str
) -> None:
    service = _service(guard_loader=_unverified)
    scanner = service.scanner_with(_policy(failure))
    assert "failed verification" in scanner.unavailable["guard"]
    choices = [Choice([1, 2], "oh darn", "stop")]

    async def never(_: list[int]) -> list[Choice]:
        raise AssertionError("no regenerate rule")

    out, records = run_async(service.enforce(scanner, choices, never))
    assert records[0]["applied"] == action
    assert records[0]["failed_checks"][0]["check"] == "guard"
    assert "failed verification" in records[0]["failed_checks"][0]["reason"]
    if action == "block":
        assert out[0].text == BLOCKED_TEXT
        assert out[0].finish_reason == "content_filter"
    else:
        assert out[0].text == "oh [redacted]"
    assert service.log_fields(scanner)["on_check_failure"] == failure


def test_a_refused_guard_is_retried_after_a_while_not_on_every_call() -> None:
    calls: list[str] = []
    now = [0.0]

    def loader(ref: GuardRef) -> Any:
        calls.append(ref.release)
        raise ModelNotVerified("no")

    service = _service(guard_loader=loader, clock=lambda: now[0])
    service.scanner_with(_policy("open"))
    service.scanner_with(_policy("open"))
    assert len(calls) == 1
    now[0] = 61.0
    service.scanner_with(_policy("open"))
    assert len(calls) == 2


def test_a_packaged_check_that_cannot_load_is_unavailable() -> None:
    def factory(name: str) -> Any:
        raise CheckUnavailableError("no wordlist data")

    service = SafetyService(None, check_factory=factory)  # type: ignore[arg-type]
    policy = parse_policy({"checks": ["wordlist"], "rules": {"*": {"action": "annotate"}}})
    scanner = service.scanner_with(policy)
    assert scanner.unavailable == {"wordlist": "unavailable: no wordlist data"}
    assert scanner.scan("x").action == "block"  # closed is the default


def test_the_policy_is_read_from_the_signed_statement() -> None:
    policy = _policy("open")
    payload = json.dumps({"predicate": {"safety_policy": policy.to_dict()}}).encode()
    envelope = json.dumps({"payload": base64.b64encode(payload).decode()})
    assert policy_of_statement(envelope) == policy
    none = json.dumps({"payload": base64.b64encode(b'{"predicate": {}}').decode()})
    assert policy_of_statement(none) is None
    assert policy_of_statement("not json") is None


def test_publish_refuses_a_signed_policy_this_gateway_cannot_enforce() -> None:
    from gateway.services.releases import ReleaseRejected, _check_safety_policy
    from tests.licensing._builders import make_release

    policy = {**_policy("open").to_dict(), "checks": ["wordlist", "vibes"], "guard": None}
    with pytest.raises(ReleaseRejected, match="unknown safety checks"):
        _check_safety_policy(make_release(safety_policy=policy))
    _check_safety_policy(make_release(safety_policy=_policy("open").to_dict()))
    _check_safety_policy(make_release())


def test_a_pinned_guard_resolving_to_another_statement_is_refused() -> None:
    # The attack: the same ORG/NAME@VERSION on another gateway (or a re-registered org) names
    # other weights. The pin in the signed policy refuses them before anything is loaded.
    from gateway.services.safety_guard import check_guard_pin

    pinned = GuardRef(release="acme/guard@1.0.0", digest="sha256:" + "ab" * 32)
    check_guard_pin(pinned, "ab" * 32)  # the pinned statement loads
    check_guard_pin(GuardRef(release="acme/guard@1.0.0"), "cd" * 32)  # unpinned: any
    loaded: list[GuardRef] = []

    def loader(ref: GuardRef) -> Any:
        loaded.append(ref)
        check_guard_pin(ref, "cd" * 32)  # what the gateway's loader finds registered
        raise AssertionError("a mismatched guard must not be loaded")

    policy = parse_policy(
        {
            "checks": ["wordlist", "guard"],
            "rules": {"*": {"action": "redact"}},
            "on_check_failure": "closed",
            "guard": pinned.to_dict(),
        }
    )
    scanner = _service(guard_loader=loader).scanner_with(policy)
    assert loaded == [pinned]
    assert "the policy pins sha256:" + "ab" * 32 in scanner.unavailable["guard"]
    assert scanner.scan("fine").action == "block"  # closed


def test_a_guard_pin_is_part_of_the_policy_digest_and_malformed_pins_are_refused() -> None:
    from safety.errors import SafetyPolicyError

    base = {"checks": ["guard"], "rules": {"*": {"action": "annotate"}}}
    plain = parse_policy({**base, "guard": {"release": "acme/guard@1.0.0"}})
    pinned = parse_policy(
        {**base, "guard": {"release": "acme/guard@1.0.0", "digest": "sha256:" + "0" * 64}}
    )
    assert plain.to_dict()["guard"] == {"release": "acme/guard@1.0.0"}  # old digests unchanged
    assert plain.digest != pinned.digest
    assert parse_policy(pinned.to_dict()) == pinned
    for bad in ("sha256:" + "0" * 63, "SHA256:" + "0" * 64, "0" * 64, 7):
        with pytest.raises(SafetyPolicyError, match=r"guard\.digest"):
            parse_policy({**base, "guard": {"release": "acme/guard@1.0.0", "digest": bad}})
    with pytest.raises(SafetyPolicyError, match="guard must be"):
        parse_policy({**base, "guard": {"release": "acme/guard@1.0.0", "extra": 1}})
