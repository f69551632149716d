"""The hold-back window: split terms are caught, nothing past the window is held."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.policy import parse_policy
from safety.scanner import REDACTION, SafetyScanner
from safety.stream import HoldBackStream
from tests.safety.fakes import TermCheck, WholeTextCheck


def _scanner(action: str = "redact", window: int = 16, **checks: Any) -> SafetyScanner:
    policy = parse_policy(
        {
            "checks": ["wordlist"],
            "rules": {"*": {"action": "annotate"}, "hate": {"action": action}},
            "hold_back_chars": window,
        }
    )
    return SafetyScanner(policy, checks or {"wordlist": TermCheck({"slurx": "hate"})})


def _run(stream: HoldBackStream, pieces: list[str]) -> list[str]:
    out = []
    for piece in pieces:
        out.append(stream.feed(piece))
        assert stream.held <= stream.window  # never more than the window waits
    out.append(stream.finish())
    return out


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_a_term_split_across_chunks_is_caught_and_redacted() -> None:
    stream = HoldBackStream(_scanner())
    pieces = ["hello there, you ", "sl", "ur", "x and then some more words ", "to finish"]
    sent = _run(stream, pieces)
    assert "".join(sent) == f"hello there, you {REDACTION} and then some more words to finish"
    assert not any("sl" in s and "ur" in s for s in sent)
    outcome = stream.outcome
    assert outcome.text == "".join(sent)
    assert outcome.removed_sha256 == (_sha("slurx"),)
    assert outcome.verdict.flagged == ("hate",)
    assert outcome.verdict.action == "redact"


def test_text_goes_out_once_more_than_a_window_is_held() -> None:
    stream = HoldBackStream(_scanner(window=16))  # step 2, lag 14
    assert stream.feed("abcdefghijklmnop") == ""  # exactly the window: held
    assert stream.feed("qr") == "abcd"  # down to the lag behind the edge
    assert stream.held == 14
    assert stream.feed("s") == ""  # within the window again: no scan, nothing out
    assert stream.finish() == "efghijklmnopqrs"


def test_window_zero_releases_every_piece_at_once() -> None:
    stream = HoldBackStream(_scanner(window=0))
    assert stream.feed("abc") == "abc"
    assert stream.held == 0


def test_block_stops_the_stream_and_logs_the_digest_of_what_was_withheld() -> None:
    stream = HoldBackStream(_scanner(action="block", window=8))
    sent = _run(stream, ["fine text here ", "then slurx", " and more after it"])
    text = "fine text here then slurx and more after it"
    released = "".join(sent)
    assert text.startswith(released)
    assert "slurx" not in released
    assert stream.outcome.blocked
    assert stream.outcome.verdict.action == "block"
    assert stream.outcome.removed_sha256 == (_sha(text[len(released) :]),)


def test_regenerate_in_a_stream_removes_like_redact() -> None:
    stream = HoldBackStream(_scanner(action="regenerate", window=8))
    sent = _run(stream, ["one slurx two three four"])
    assert "".join(sent) == f"one {REDACTION} two three four"
    assert stream.outcome.verdict.action == "redact"


def test_a_whole_text_score_is_kept_as_the_highest_seen() -> None:
    policy = parse_policy(
        {
            "checks": ["classifier"],
            "rules": {"hate": {"action": "block", "threshold": 0.5}},
            "hold_back_chars": 4,
        }
    )
    scanner = SafetyScanner(policy, {"classifier": WholeTextCheck("grr", "hate", 0.4)})
    stream = HoldBackStream(scanner)
    _run(stream, ["a grr b ", "c d e f g"])
    assert stream.outcome.verdict.scores == {"hate": 0.4}
    assert not stream.outcome.blocked


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet="ab ", max_size=40),
    suffix=st.text(alphabet="ab ", max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=7), max_size=30),
    window=st.integers(min_value=6, max_value=40),  # lag (7/8 of it) >= the term's length
)
def test_any_chunking_gives_the_same_redacted_text(
    prefix: str, suffix: str, cuts: list[int], window: int
) -> None:
    text = prefix + "slurx" + suffix
    pieces, cursor = [], 0
    for cut in cuts:
        pieces.append(text[cursor : cursor + cut])
        cursor += cut
    pieces.append(text[cursor:])
    stream = HoldBackStream(_scanner(window=window))
    sent = "".join(_run(stream, [p for p in pieces if p]))
    assert sent == prefix + REDACTION + suffix
    assert stream.outcome.removed_sha256 == (_sha("slurx"),)


def test_feeding_after_finish_is_refused() -> None:
    stream = HoldBackStream(_scanner())
    stream.finish()
    with pytest.raises(RuntimeError):
        stream.feed("x")
