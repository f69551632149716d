"""A vLLM engine's prompt logprobs turned into the local engine's form, and refused when the
engine scored anything but the prompt or answered malformed numbers."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.generation.upstream import EngineFailed
from gateway.services.engine_scoring import parse_prompt_logprobs

PROMPT = [5, 9, 2]


def answer(tokens: list[Any], values: list[Any], tops: list[Any]) -> dict[str, Any]:
    return {
        "choices": [
            {"logprobs": {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops}}
        ]
    }


def good() -> dict[str, Any]:
    return answer(
        ["token_id:5", "token_id:9", "token_id:2"],
        [None, -1.5, -0.25],
        [None, {"token_id:9": -1.5, "token_id:7": -0.5}, {"token_id:2": -0.25}],
    )


def test_ids_and_alternatives_come_back_by_token_id() -> None:
    scored = parse_prompt_logprobs("m", PROMPT, good())
    assert scored.token_ids == PROMPT
    assert scored.token_logprobs == [None, -1.5, -0.25]
    assert scored.top_logprobs == [None, {9: -1.5, 7: -0.5}, {2: -0.25}]


@pytest.mark.parametrize(
    "broken",
    [
        # another prompt scored: a right digest of a wrong score
        answer(["token_id:5", "token_id:9", "token_id:3"], [None, -1.0, -1.0], [None, {}, {}]),
        # decoded strings instead of ids
        answer(["a", "b", "c"], [None, -1.0, -1.0], [None, {}, {}]),
        # a logprob that is not a finite number
        answer(["token_id:5", "token_id:9", "token_id:2"], [None, "x", -1.0], [None, {}, {}]),
        answer(["token_id:5", "token_id:9", "token_id:2"], [None, True, -1.0], [None, {}, {}]),
        # lengths that disagree
        answer(["token_id:5", "token_id:9", "token_id:2"], [None, -1.0], [None, {}, {}]),
        # no logprobs at all
        {"choices": [{"text": "x"}]},
        {"choices": []},
    ],
)
def test_engine_answers_that_are_not_the_prompts_scores_are_engine_failures(
    broken: dict[str, Any],
) -> None:
    with pytest.raises(EngineFailed):
        parse_prompt_logprobs("m", PROMPT, broken)
