"""The plugin inside a real vLLM server, driven with the ``openai`` client.

The reference is the local engine: the same model in transformers with the watermark
library's :class:`GreenListProcessor`. Greedy requests with a strong delta choose, at every
step, the best token of the green list; replaying vLLM's output through the local model and
processor (teacher forcing) must pick the same token at every step, except at a float near-tie
of the two engines' model outputs (a gap under 1e-3; a mask that differed would show a gap of
about delta). Sampled requests are seeded, so every outcome here is deterministic.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.vllm.conftest import Server
from watermark.detector import detect
from watermark.keyset import KeySetEntry
from watermark.payload import detect_payload
from watermark.processor import GreenListProcessor

torch = pytest.importorskip("torch")
openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PROMPTS = [
    "The release gateway keeps",
    "A model card describes the tiers",
    "Detectors compute",
    "The quick brown fox jumps over the lazy dog near the river bank. Links expire",
]
NEAR_TIE = 1e-3


@pytest.fixture(scope="module")
def client(vllm_server: Server) -> Any:
    return openai.OpenAI(base_url=f"{vllm_server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def local(vllm_server: Server) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(vllm_server.model_dir), dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(vllm_server.model_dir))


def _xargs(entry: KeySetEntry | None, payload: int | None = None) -> dict[str, Any] | None:
    if entry is None:
        return None
    args: dict[str, Any] = {"tiergate_key_id": entry.key.key_id}
    if entry.config.payload is not None:
        args["tiergate_payload"] = payload
    return args


def _complete(
    client: Any,
    prompt: list[int],
    *,
    max_tokens: int,
    xargs: dict[str, Any] | None,
    temperature: float = 0.0,
    seed: int | None = None,
    n: int = 1,
) -> list[list[int]]:
    extra: dict[str, Any] = {"return_token_ids": True, "ignore_eos": True}
    if xargs is not None:
        extra["vllm_xargs"] = xargs
    response = client.completions.create(
        model="tiny",
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        n=n,
        extra_body=extra,
    )
    choices = sorted(response.choices, key=lambda c: c.index)
    return [list(c.model_extra["token_ids"]) for c in choices]


def _check_greedy(
    local: tuple[Any, Any],
    prompt: list[int],
    output: list[int],
    entry: KeySetEntry | None,
    payload: int | None,
) -> int:
    """Replay ``output`` through the local engine; returns the number of exact steps."""
    model = local[0]
    ids = torch.tensor([prompt + output])
    with torch.no_grad():
        logits = model(ids).logits[0]
    processor = None
    if entry is not None:
        tag = payload if entry.config.payload is not None else None
        processor = GreenListProcessor(entry.config, entry.key, payload=tag)
    exact = 0
    for t, token in enumerate(output):
        position = len(prompt) + t
        row = logits[position - 1].unsqueeze(0).clone()
        if processor is not None:
            row = processor(ids[:, :position], row)
        best = int(torch.argmax(row[0]))
        if best == token:
            exact += 1
            continue
        gap = float(row[0, best] - row[0, token])
        assert gap < NEAR_TIE, (
            f"step {t}: vLLM chose {token}, the local engine {best} (gap {gap:.3f}): "
            "the green lists differ"
        )
    return exact


def _encode(local: tuple[Any, Any], text: str) -> list[int]:
    return list(local[1](text)["input_ids"])


@pytest.mark.parametrize("which", ["strong_left", "strong_self", "gateway", None])
def test_greedy_tokens_equal_the_local_engine(
    client: Any, local: tuple[Any, Any], vllm_server: Server, which: str | None
) -> None:
    """Both context schemes, widths 1-3, payload and zero-bit, and an untagged request."""
    entry = getattr(vllm_server.keys, which) if which else None
    exact = total = 0
    for i, text in enumerate(PROMPTS[:3]):
        prompt = _encode(local, text)
        payload = 0x5A5A5 + i
        [output] = _complete(client, prompt, max_tokens=40, xargs=_xargs(entry, payload))
        exact += _check_greedy(local, prompt, output, entry, payload)
        total += len(output)
    assert exact >= 0.9 * total


def test_sampled_completion_is_detected_with_its_call_tag(
    client: Any, local: tuple[Any, Any], vllm_server: Server
) -> None:
    entry = vllm_server.keys.gateway
    prompt = _encode(local, PROMPTS[0])
    payload = 0xBEEF1
    [marked] = _complete(
        client, prompt, max_tokens=200, xargs=_xargs(entry, payload), temperature=1.0, seed=7
    )
    [plain] = _complete(client, prompt, max_tokens=200, xargs=None, temperature=1.0, seed=7)
    result = detect_payload(
        prompt + marked, entry.config, entry.key, payload, prompt_length=len(prompt)
    )
    assert result.p_value < 1e-6, result
    wrong = detect_payload(
        prompt + marked, entry.config, entry.key, payload ^ 0xFFFFF, prompt_length=len(prompt)
    )
    assert wrong.p_value > result.p_value * 1e6
    untagged = detect_payload(
        prompt + plain, entry.config, entry.key, payload, prompt_length=len(prompt)
    )
    assert untagged.p_value > 1e-6, untagged


def test_n_choices_all_carry_the_call_tag(
    client: Any, local: tuple[Any, Any], vllm_server: Server
) -> None:
    """vLLM fans ``n`` out into child requests sharing one ``extra_args``: one call tag."""
    entry = vllm_server.keys.gateway
    prompt = _encode(local, PROMPTS[1])
    payload = 0x13579
    choices = _complete(
        client, prompt, max_tokens=200, xargs=_xargs(entry, payload), temperature=1.0, seed=11,
        n=3,
    )  # fmt: skip
    assert len(choices) == 3
    assert len({tuple(c) for c in choices}) == 3
    for output in choices:
        result = detect_payload(
            prompt + output, entry.config, entry.key, payload, prompt_length=len(prompt)
        )
        assert result.p_value < 1e-6, result


def test_sampled_n_choices_with_a_strong_key_stay_in_the_green_list(
    client: Any, local: tuple[Any, Any], vllm_server: Server
) -> None:
    """With delta 30 a sampled token is green unless its logit beats the best green one by
    ~30: every scored token of every choice must be green under the local engine's lists."""
    entry = vllm_server.keys.strong_self
    prompt = _encode(local, PROMPTS[2])
    choices = _complete(
        client, prompt, max_tokens=60, xargs=_xargs(entry), temperature=1.0, seed=5, n=2
    )
    assert choices[0] != choices[1]
    for output in choices:
        result = detect(prompt + output, entry.config, entry.key, prompt_length=len(prompt))
        flags = list(result.flags)
        assert 0 not in flags, flags
        assert flags.count(1) >= 20


@pytest.mark.parametrize(
    ("xargs", "message"),
    [
        ({"tiergate_key_id": "00" * 8, "tiergate_payload": 1}, "no watermark key with id"),
        ({"tiergate_key_id": "KEY", "tiergate_payload": 1 << 20}, "payload must be in"),
        ({"tiergate_key_id": "KEY"}, "send tiergate_payload"),
        ({"tiergate_key_id": "KEY", "tiergate_payload": 1, "tiergate_delta": 9}, "unknown"),
        ({"tiergate_payload": 5}, "tiergate_key_id must be given"),
    ],
)
def test_bad_watermark_arguments_are_refused_before_sampling(
    client: Any, vllm_server: Server, xargs: dict[str, Any], message: str
) -> None:
    entry = vllm_server.keys.gateway
    args = {k: (entry.key.key_id if v == "KEY" else v) for k, v in xargs.items()}
    with pytest.raises(openai.BadRequestError) as caught:
        _complete(client, [5, 6, 7], max_tokens=4, xargs=args)
    text = str(caught.value)
    assert message in text
    for key in vllm_server.keys.keyset:
        assert key.key.to_hex() not in text


def test_concurrent_requests_of_different_lengths_with_preemption(
    client: Any, local: tuple[Any, Any], vllm_server: Server
) -> None:
    """Requests join and leave the persistent batch at different steps (removals, condense
    moves, slots reused), the small KV cache preempts and recomputes some, and prefixes are
    shared through the prefix cache; every row must still get exactly its own watermark."""
    keys = vllm_server.keys
    jobs: list[dict[str, Any]] = []
    for i in range(12):
        kind = ("strong_left", "strong_self", "gateway", "plain")[i % 4]
        text = PROMPTS[i % len(PROMPTS)] + (" and" * (i % 3))
        jobs.append(
            {
                "kind": kind,
                "entry": getattr(keys, kind) if kind != "plain" else None,
                "prompt": _encode(local, text),
                "payload": 0x10000 + 977 * i,
                "sampled": kind == "gateway",
                "max_tokens": 200 if kind == "gateway" else (40, 80, 120, 160)[(i // 4 + i) % 4],
            }
        )

    def run(job: dict[str, Any]) -> list[int]:
        [out] = _complete(
            client,
            job["prompt"],
            max_tokens=job["max_tokens"],
            xargs=_xargs(job["entry"], job["payload"]),
            temperature=1.0 if job["sampled"] else 0.0,
            seed=100 + job["payload"] if job["sampled"] else None,
        )
        return out

    # Whether the cache runs out depends on how the 12 requests overlap in the scheduler,
    # which timing decides: run the batch again (every run fully checked) until one preempts.
    before = _preemptions(vllm_server)
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            outputs = list(pool.map(run, jobs))
        for job, output in zip(jobs, outputs, strict=True):
            assert len(output) == job["max_tokens"]
            if job["sampled"]:
                entry = job["entry"]
                result = detect_payload(
                    job["prompt"] + output, entry.config, entry.key, job["payload"],
                    prompt_length=len(job["prompt"]),
                )  # fmt: skip
                assert result.p_value < 1e-6, (job["kind"], result)
            else:
                _check_greedy(local, job["prompt"], output, job["entry"], job["payload"])
        if _preemptions(vllm_server) > before:
            break
    assert _preemptions(vllm_server) > before, "the KV cache was meant to force preemption"


def test_prefix_cache_hits_change_nothing(
    client: Any, local: tuple[Any, Any], vllm_server: Server
) -> None:
    """A long prompt sent twice: the second time its full KV blocks come from the prefix
    cache (not recomputed), yet the plugin reads the same context and the output is equal."""
    entry = vllm_server.keys.strong_left
    text = " ".join(PROMPTS * 3)
    prompt = _encode(local, text)
    assert len(prompt) > 64  # at least two full 32-token blocks to share
    before = _metric(vllm_server, "vllm:prefix_cache_hits_total")
    first = _complete(client, prompt, max_tokens=30, xargs=_xargs(entry, 4242))
    second = _complete(client, prompt, max_tokens=30, xargs=_xargs(entry, 4242))
    assert _metric(vllm_server, "vllm:prefix_cache_hits_total") > before
    assert first == second
    _check_greedy(local, prompt, first[0], entry, 4242)


def test_streamed_tokens_equal_the_whole_completion(
    client: Any, local: tuple[Any, Any], vllm_server: Server
) -> None:
    entry = vllm_server.keys.gateway
    prompt = _encode(local, PROMPTS[1])
    xargs = _xargs(entry, 777)
    [whole] = _complete(client, prompt, max_tokens=40, xargs=xargs)
    stream = client.completions.create(
        model="tiny",
        prompt=prompt,
        max_tokens=40,
        temperature=0.0,
        stream=True,
        extra_body={"return_token_ids": True, "ignore_eos": True, "vllm_xargs": xargs},
    )
    streamed: list[int] = []
    for chunk in stream:
        for choice in chunk.choices:
            streamed.extend((choice.model_extra or {}).get("token_ids") or [])
    assert streamed == whole


def _metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+]+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def _preemptions(server: Server) -> float:
    return _metric(server, "vllm:num_preemptions_total")
