"""Pieces of a generation call kept out of the service class: the chat stream's split into
reasoning and content, and the watermark a served tier is given on first use."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy.engine import Engine

from gateway.generation.keys import tier_keyset_entry
from gateway.generation.models import LoadedModel
from gateway.generation.reasoning import ReasoningMarkers, ReasoningSplitter
from gateway.services.generation_types import GenerationResult, StreamEvent, StreamPiece
from gateway.services.text_detectability import check_generation_allowed
from gateway.state import GatewayState

__all__ = ["ensure_call_watermark", "split_reasoning_stream"]


def ensure_call_watermark(engine: Engine, state: GatewayState, loaded: LoadedModel) -> None:
    """Give ``loaded`` its tier's watermark key and configuration (once: kept in its extras)."""
    if "config" in loaded.extras:
        return
    ref = loaded.ref
    # Issue 18: no watermarking where detection from text would be unreliable (one rule,
    # in text_detectability; raises TextDetectionUnreliable).
    check_generation_allowed(engine, ref.release_id)
    settings = state.settings
    entry = tier_keyset_entry(
        state.keyring.watermark_master_key,
        ref.repo_id,
        ref.version,
        ref.tier,
        vocab_size=loaded.vocab_size,
        tokenizer=loaded.tokenizer,
        delta=settings.watermark_delta,
        payload_bits=settings.watermark_payload_bits,
    )
    config = entry.config
    loaded.extras["key"] = entry.key
    loaded.extras["config_json"] = config.to_json()  # logged with every call
    loaded.extras["config"] = config


async def split_reasoning_stream(
    events: AsyncIterator[StreamEvent], markers: ReasoningMarkers, inside: bool
) -> AsyncIterator[StreamEvent]:
    """Chat: each choice's pieces split into reasoning and content (one splitter a choice),
    whichever engine produced them; what a splitter still holds goes out before the result."""
    splitters: dict[int, ReasoningSplitter] = {}
    try:
        async for event in events:
            if isinstance(event, GenerationResult):
                for index, held in sorted(splitters.items()):
                    for kind, text in held.finish():
                        yield StreamPiece(index, text, kind)
                yield event
                continue
            if event.choice not in splitters:
                splitters[event.choice] = ReasoningSplitter(markers, inside=inside)
            for kind, text in splitters[event.choice].feed(event.text):
                yield StreamPiece(event.choice, text, kind)
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()  # the engine's stream ends with this one
