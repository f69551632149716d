"""The scanner: verdicts, actions, and check failures (with fake checks)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from safety.findings import Finding
from safety.policy import parse_policy
from safety.scanner import REDACTION, SafetyScanner
from tests.safety.fakes import BrokenCheck, FakeLangId, TermCheck, WholeTextCheck


def _policy(**over: Any) -> Any:
    data: dict[str, Any] = {
        "checks": ["langid", "wordlist"],
        "rules": {"*": {"action": "annotate", "threshold": 0.5}},
    }
    data.update(over)
    return parse_policy(data)


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_clean_text_has_no_action() -> None:
    scanner = SafetyScanner(
        _policy(), {"langid": FakeLangId(), "wordlist": TermCheck({"x": "hate"})}
    )
    verdict = scanner.scan("bonjour")
    assert verdict.action is None
    assert verdict.flagged == ()
    assert verdict.language == "fr"
    assert scanner.apply("bonjour", verdict) == ("bonjour", [])


def test_langid_runs_first_and_its_language_reaches_the_other_checks() -> None:
    words = TermCheck({"zut": "profanity"})
    scanner = SafetyScanner(_policy(), {"langid": FakeLangId("fr"), "wordlist": words})
    scanner.scan("zut alors")
    assert words.contexts[0].language == "fr"


def test_annotate_keeps_the_text_and_reports_scores() -> None:
    scanner = SafetyScanner(
        _policy(), {"langid": FakeLangId(), "wordlist": TermCheck({"zut": "profanity"})}
    )
    verdict = scanner.scan("oh zut")
    assert verdict.flagged == ("profanity",)
    assert verdict.action == "annotate"
    assert scanner.apply("oh zut", verdict) == ("oh zut", [])
    log = verdict.to_log()
    assert log["scores"] == {"profanity": "1"}
    assert log["categories"] == ["profanity"]
    assert log["policy_digest"] == scanner.policy.digest


def test_redact_replaces_each_flagged_span_and_logs_its_digest_only() -> None:
    policy = _policy(rules={"*": {"action": "annotate"}, "hate": {"action": "redact"}})
    words = TermCheck({"slurx": "hate", "darn": "profanity"})
    scanner = SafetyScanner(policy, {"langid": FakeLangId(), "wordlist": words})
    text = "a slurx and darn and SLURX"
    verdict = scanner.scan(text)
    assert verdict.action == "redact"
    assert verdict.flagged == ("hate", "profanity")
    out, removed = scanner.apply(text, verdict)
    assert out == f"a {REDACTION} and darn and {REDACTION}"
    assert removed == [_sha("slurx"), _sha("SLURX")]
    assert "slurx" not in str(verdict.to_log()).lower()


def test_overlapping_spans_are_removed_once() -> None:
    policy = _policy(rules={"*": {"action": "redact"}})
    words = TermCheck({"bad word": "hate", "word here": "hate"})
    scanner = SafetyScanner(policy, {"langid": FakeLangId(), "wordlist": words})
    out, removed = scanner.apply("a bad word here.", scanner.scan("a bad word here."))
    assert out == f"a {REDACTION}."
    assert removed == [_sha("bad word here")]


def test_below_threshold_is_scored_but_not_flagged() -> None:
    policy = _policy(checks=["classifier"], rules={"hate": {"action": "block", "threshold": "0.8"}})
    scanner = SafetyScanner(policy, {"classifier": WholeTextCheck("grr", "hate", 0.7)})
    verdict = scanner.scan("grr")
    assert verdict.scores == {"hate": 0.7}
    assert verdict.action is None


def test_block_returns_no_text_and_the_digest_of_all_of_it() -> None:
    policy = _policy(checks=["classifier"], rules={"hate": {"action": "block"}})
    scanner = SafetyScanner(policy, {"classifier": WholeTextCheck("grr", "hate", 0.9)})
    verdict = scanner.scan("grr grr")
    assert verdict.action == "block"
    assert scanner.apply("grr grr", verdict) == ("", [_sha("grr grr")])


def test_a_whole_text_finding_under_redact_removes_the_whole_text() -> None:
    policy = _policy(checks=["classifier"], rules={"hate": {"action": "redact"}})
    scanner = SafetyScanner(policy, {"classifier": WholeTextCheck("grr", "hate", 0.9)})
    assert scanner.apply("grr", scanner.scan("grr")) == (REDACTION, [_sha("grr")])


def test_strongest_action_wins() -> None:
    policy = _policy(
        checks=["wordlist", "classifier"],
        rules={"hate": {"action": "regenerate"}, "profanity": {"action": "redact"}},
    )
    checks = {
        "wordlist": TermCheck({"darn": "profanity"}),
        "classifier": WholeTextCheck("darn", "hate", 1),
    }
    assert SafetyScanner(policy, checks).scan("darn").action == "regenerate"


def test_check_failure_open_passes_and_records() -> None:
    policy = _policy(checks=["wordlist", "classifier"], on_check_failure="open")
    scanner = SafetyScanner(policy, {"wordlist": TermCheck({}), "classifier": BrokenCheck()})
    verdict = scanner.scan("hello")
    assert verdict.action is None
    assert not verdict.blocked_by_failure
    assert [(f.check, f.reason) for f in verdict.failures] == [
        ("classifier", "RuntimeError: model file missing")
    ]
    assert verdict.to_log()["failed_checks"] == [
        {"check": "classifier", "reason": "RuntimeError: model file missing"}
    ]


def test_check_failure_closed_blocks_and_records() -> None:
    policy = _policy(checks=["wordlist", "classifier"], on_check_failure="closed")
    scanner = SafetyScanner(policy, {"wordlist": TermCheck({}), "classifier": BrokenCheck()})
    verdict = scanner.scan("hello")
    assert verdict.action == "block"
    assert verdict.blocked_by_failure
    assert scanner.apply("hello", verdict) == ("", [_sha("hello")])


def test_a_check_the_host_could_not_load_is_a_failure() -> None:
    policy = _policy(checks=["wordlist", "guard"], guard={"release": "acme/guard@1.0.0"})
    verdict = SafetyScanner(policy, {"wordlist": TermCheck({})}).scan("hello")
    assert verdict.failures[0].check == "guard"
    assert verdict.action == "block"


class _Liar:
    name = "wordlist"
    categories = frozenset({"hate"})

    def scan(self, text: str, context: object) -> list[Finding]:
        return [
            Finding("wordlist", "not_a_category", 0.9),
            Finding("wordlist", "hate", 0.9, (0, 999)),
            Finding("wordlist", "hate", 7.0, (0, 1)),
        ]


def test_findings_that_make_no_sense_are_dropped_and_the_check_marked_failed() -> None:
    policy = _policy(checks=["wordlist"], on_check_failure="open")
    verdict = SafetyScanner(policy, {"wordlist": _Liar()}).scan("hello")
    assert [(f.category, f.score, f.span) for f in verdict.findings] == [("hate", 1.0, (0, 1))]
    assert verdict.failures[0].reason == "2 bad findings"


@pytest.mark.parametrize("threshold", ["0.5", 0.5])
def test_thresholds_travel_as_decimal_strings(threshold: object) -> None:
    policy = parse_policy(
        {"checks": ["wordlist"], "rules": {"*": {"action": "annotate", "threshold": threshold}}}
    )
    assert policy.to_dict()["rules"]["*"]["threshold"] == "0.5"
    assert parse_policy(policy.to_dict()) == policy
