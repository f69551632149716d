"""A stand-in vLLM OpenAI server for the engine-seam tests: vLLM's completions shape, streamed
and not, watermarking with the real watermark library, and failures on demand.

It speaks what the gateway uses of vLLM 0.32 (``/health``, ``/v1/models`` with
``max_model_len``, ``/v1/completions`` with ``return_token_ids`` and ``vllm_xargs``) and
samples token ids from flat logits through ``watermark.build_logits_processors`` with the
key the request names, so the gateway's canary and detector see real watermarked ids. The
``mode`` attribute switches behaviour between requests; ``requests`` records every body
received and ``aborted`` counts streams whose client went away before the end.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import LiveServer

CONTEXT_ERROR = (
    "This model's maximum context length is 512 tokens. However, you requested 900 tokens "
    "(12 in the messages, 888 in the completion)."
)


@dataclass
class FakeVllm:
    """One fake engine replica. ``keys``: key id -> (config, key) it can watermark with."""

    tokenizer: Any
    served_model_name: str
    keys: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    mode: str = "ok"
    max_model_len: int = 512
    token_delay_s: float = 0.0
    # Text put before every answer (a reasoning model's trace), streamed 3 characters a chunk.
    think: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    aborted: int = 0
    completed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: LiveServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> FakeVllm:
        self.server = LiveServer(self.app())
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    # ------------------------------------------------------------------ sampling

    def sample(self, body: dict[str, Any]) -> list[int]:
        import torch

        from watermark import build_logits_processors

        prompt = list(body["prompt"])
        steps = int(body.get("max_tokens") or 16)
        xargs = body.get("vllm_xargs") or {}
        vocab = len(self.tokenizer)
        eos = self.tokenizer.eos_token_id
        processors = None
        if self.mode != "plain" and "tiergate_key_id" in xargs:
            config, key = self.keys[xargs["tiergate_key_id"]]
            processors = build_logits_processors(
                config, key, payload=[int(xargs["tiergate_payload"])]
            )
            vocab = config.vocab_size
        generator = torch.Generator().manual_seed(int(body.get("seed") or 0))
        ids = list(prompt)
        for _ in range(steps):
            scores = torch.zeros(1, vocab)
            if eos is not None:
                scores[0, eos] = -float("inf")  # never ends early: finish is "length"
            if processors is not None:
                scores = processors(torch.tensor([ids]), scores)
            token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
            ids.append(token)
        return ids[len(prompt) :]

    # ------------------------------------------------------------------ the app

    def _refusal(self, body: dict[str, Any]) -> Response | None:
        xargs = body.get("vllm_xargs") or {}
        if self.mode == "500":
            return JSONResponse({"error": {"message": "engine exploded", "code": 500}}, 500)
        if self.mode == "context":
            return JSONResponse({"error": {"message": CONTEXT_ERROR, "code": 400}}, 400)
        key_id = xargs.get("tiergate_key_id")
        if key_id is not None and key_id not in self.keys and self.mode != "plain":
            message = f"tiergate watermark: no watermark key with id {key_id!r} in this key set"
            return JSONResponse({"error": {"message": message, "code": 400}}, 400)
        return None

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return Response(status_code=503 if self.mode == "unhealthy" else 200)

        async def models(request: Request) -> Response:
            card = {"id": self.served_model_name, "max_model_len": self.max_model_len}
            return JSONResponse({"object": "list", "data": [card]})

        async def completions(request: Request) -> Response:
            body = await request.json()
            with self.lock:
                self.requests.append(body)
            if self.mode == "hang":
                await asyncio.sleep(30)
            refusal = self._refusal(body)
            if refusal is not None:
                return refusal
            ids = await asyncio.to_thread(self.sample, body)
            if body.get("stream"):
                return StreamingResponse(self._stream(ids), media_type="text/event-stream")
            text = self.think + self.tokenizer.decode(ids, skip_special_tokens=True)
            choice = {"index": 0, "text": text, "token_ids": ids, "finish_reason": "length"}
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(ids)}
            return JSONResponse(
                {"id": "cmpl-fake", "object": "text_completion", "model": body["model"],
                 "choices": [choice], "usage": usage}
            )  # fmt: skip

        return Starlette(
            routes=[
                Route("/health", health),
                Route("/v1/models", models),
                Route("/v1/completions", completions, methods=["POST"]),
            ]
        )

    async def _stream(self, ids: list[int]) -> AsyncIterator[bytes]:
        def chunk(text: str, token_ids: list[int], finish: str | None) -> bytes:
            choice = {"index": 0, "text": text, "token_ids": token_ids, "finish_reason": finish}
            return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()

        finished = False
        sent = ""
        try:
            for start in range(0, len(self.think), 3):
                yield chunk(self.think[start : start + 3], [], None)
            for i, token in enumerate(ids):
                if self.mode == "die" and i == 3:
                    raise RuntimeError("engine process died")  # uvicorn drops the connection
                if self.mode == "error_chunk" and i == 3:
                    error = {"error": {"message": "engine core died", "code": 500}}
                    yield f"data: {json.dumps(error)}\n\n".encode()
                    finished = True
                    return
                text = self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
                yield chunk(text[len(sent) :], [token], None)
                sent = text
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
            yield chunk("", [], "length")
            yield b"data: [DONE]\n\n"
            finished = True
            with self.lock:
                self.completed += 1
        finally:
            if not finished:
                with self.lock:
                    self.aborted += 1
