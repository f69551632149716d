"""Text deltas of streamed choices: tokens in, the text that is safe to send out.

Each choice of a stream decodes its own tokens; the end of the text that a stop sequence
starts with, and an incomplete UTF-8 sequence (U+FFFD until its last byte arrives), are held
back until they are known not to be part of a stop. What was sent is always a prefix of the
choice's final text, so the rest can be sent when generation ends and the client has exactly
what was logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.generation.sampler import apply_stop

__all__ = ["ChoiceText", "StreamTexts"]


@dataclass
class ChoiceText:
    """One choice of a stream: its tokens so far, what was sent, whether it has ended."""

    index: int
    ids: list[int] = field(default_factory=list)
    sent: str = ""
    ended: bool = False

    def rest(self, final: str) -> str:
        """What to send when generation ends, so the client has all of ``final``."""
        if final.startswith(self.sent) and len(final) > len(self.sent):
            rest = final[len(self.sent) :]
            self.sent = final
            return rest
        return ""


class StreamTexts:
    """The choices of one stream, fed one decoding step (a token per choice) at a time."""

    def __init__(self, tokenizer: Any, choices: int, stop: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        eos = tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        self.choices = [ChoiceText(i) for i in range(choices)]

    @property
    def done(self) -> bool:
        return all(choice.ended for choice in self.choices)

    def step(self, tokens: list[int]) -> list[tuple[int, str]]:
        """(choice index, text) to send after one step; ended choices ignore their padding."""
        out = []
        for choice, token in zip(self.choices, tokens, strict=False):
            if choice.ended:
                continue
            if token in self.eos:
                choice.ended = True
                continue
            choice.ids.append(token)
            delta = self._delta(choice)
            if delta:
                out.append((choice.index, delta))
        return out

    def _delta(self, choice: ChoiceText) -> str:
        decoded = self.tokenizer.decode(choice.ids, skip_special_tokens=True)
        text, stopped = apply_stop(decoded, self.stop)
        if stopped:
            choice.ended = True
            ready = text
        else:
            ready = text[: len(text) - _held(text, self.stop)].rstrip("\ufffd")
        if len(ready) > len(choice.sent) and ready.startswith(choice.sent):
            delta = ready[len(choice.sent) :]
            choice.sent = ready
            return delta
        return ""


def _held(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that a stop sequence starts with (held back)."""
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:size]):
                held = size
                break
    return held
