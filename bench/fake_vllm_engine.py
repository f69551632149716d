"""A stand-in vLLM OpenAI server for measuring the gateway's own CPU without an engine.

    python bench/fake_vllm_engine.py --model DIR --keyset keys.json --served-name NAME \
        --port P [--token-interval-ms 5]

Streamed ``/v1/completions`` answer vLLM-shaped chunks (one token per chunk, ``token_ids``
since the request asks for ``return_token_ids``, a finish chunk, a usage chunk when
``stream_options.include_usage`` is set, ``[DONE]``) at a fixed rate per stream, from a
canned token sequence decoded once at start; so the engine's CPU per token is tiny and
constant, and what the gateway spends per call and per token can be read on its own.
Non-streamed requests (the gateway's canary) are sampled from flat logits through the real
watermark library with the key the request names, so the canary passes exactly as it would
on vLLM with the plugin. ``/health`` and ``/v1/models`` (with ``max_model_len``) as vLLM.

Used by ``bench/gateway_vllm_overhead.py --fake-engine``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# A fixed English-ish text the canned stream cycles through (decoded per token at start).
CANNED = (
    "The release gateway signs every tier of a model and logs each call it serves, so a "
    "reader can later prove which call produced a text and under which licence it was made. "
)


class FakeEngine:
    def __init__(self, model: Path, keyset: Path, served: str, interval_s: float) -> None:
        from gateway.generation.models import ModelCache
        from watermark.keyset import load_keyset

        self.tokenizer = ModelCache._load_tokenizer(model)
        self.keyset = load_keyset(keyset)
        self.served = served
        self.interval_s = interval_s
        ids = [int(t) for t in self.tokenizer(CANNED * 8)["input_ids"]]
        texts: list[str] = []
        done = ""
        for i in range(len(ids)):
            text = self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
            texts.append(text[len(done) :])
            done = text
        self.canned = list(zip(ids, texts, strict=True))

    # ------------------------------------------------------------------ the canary

    def sample(self, body: dict[str, Any]) -> list[int]:
        import torch

        from watermark import build_logits_processors

        xargs = body.get("vllm_xargs") or {}
        entry = self.keyset.find(str(xargs.get("tiergate_key_id")))
        processors = build_logits_processors(
            entry.config, entry.key, payload=[int(xargs["tiergate_payload"])]
        )
        generator = torch.Generator().manual_seed(int(body.get("seed") or 0))
        ids = [int(t) for t in body["prompt"]]
        start = len(ids)
        for _ in range(int(body.get("max_tokens") or 16)):
            scores = processors(torch.tensor([ids]), torch.zeros(1, entry.config.vocab_size))
            ids.append(int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator)))
        return ids[start:]

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/health":
            await self._reply(send, 200, b"")
        elif path == "/v1/models":
            card = {"id": self.served, "object": "model", "max_model_len": 512}
            await self._reply(send, 200, json.dumps({"object": "list", "data": [card]}).encode())
        elif path == "/v1/completions":
            raw = b""
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            body = json.loads(raw)
            if body.get("stream"):
                await self._stream(body, send)
            else:
                ids = await asyncio.to_thread(self.sample, body)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                choice = {"index": 0, "text": text, "token_ids": ids, "finish_reason": "length"}
                usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(ids)}
                answer = {"id": "cmpl-fake", "object": "text_completion", "model": self.served,
                          "choices": [choice], "usage": usage}  # fmt: skip
                await self._reply(send, 200, json.dumps(answer).encode())
        else:
            await self._reply(send, 404, b'{"error": {"message": "not found"}}')

    @staticmethod
    async def _reply(send: Send, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, body: dict[str, Any], send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        steps = int(body.get("max_tokens") or 16)
        head = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                "model": self.served}  # fmt: skip
        offset = int(body.get("seed") or 0) % len(self.canned)
        next_at = time.monotonic()
        for i in range(steps):
            token, text = self.canned[(offset + i) % len(self.canned)]
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None,
                      "stop_reason": None, "token_ids": [token]}  # fmt: skip
            data = json.dumps({**head, "choices": [choice]})
            await send(
                {"type": "http.response.body", "body": f"data: {data}\n\n".encode(),
                 "more_body": True}
            )  # fmt: skip
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        final = {"index": 0, "text": "", "logprobs": None, "finish_reason": "length",
                 "stop_reason": None, "token_ids": []}  # fmt: skip
        tail = f"data: {json.dumps({**head, 'choices': [final]})}\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": steps,
                     "total_tokens": len(body["prompt"]) + steps}  # fmt: skip
            tail += f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
        tail += "data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail.encode()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--keyset", type=Path, required=True)
    parser.add_argument("--served-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-interval-ms", type=float, default=5.0)
    args = parser.parse_args()
    import uvicorn

    engine = FakeEngine(args.model, args.keyset, args.served_name, args.token_interval_ms / 1e3)
    uvicorn.run(engine, host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
