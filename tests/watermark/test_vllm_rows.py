"""The vLLM plugin's batch bookkeeping and per-row bias, with fake BatchUpdates (no vLLM).

The reference is the local engine's :class:`GreenListProcessor` applied to each request on its
own: whatever the engine does to its persistent batch (rows removed, added into freed slots,
moved by condense, swapped), every row's bias must equal that reference, bit for bit.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from watermark._private import engine_rows
from watermark._private.engine_rows import RowTable, parse_request
from watermark.config import PayloadSettings, WatermarkConfig
from watermark.errors import PayloadError, WatermarkConfigError, WatermarkKeyError
from watermark.keys import WatermarkKey
from watermark.keyset import KeySetEntry, WatermarkKeySet, load_keyset, write_keyset
from watermark.processor import GreenListProcessor

torch = pytest.importorskip("torch")

VOCAB = 1009


class Move(enum.Enum):  # vLLM's MoveDirectionality, matched by member name
    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass
class Params:  # the two fields of vllm.SamplingParams the plugin reads
    extra_args: dict[str, Any] | None = None
    temperature: float = 1.0


@dataclass
class Request:
    params: Params
    prompt: list[int]
    output: list[int] = field(default_factory=list)


def _keyset() -> WatermarkKeySet:
    """Four keys covering both context schemes, context widths 1-3, with and without payload."""
    entries = []
    for i, (width, self_seeded, payload) in enumerate(
        [(1, False, True), (2, False, False), (3, True, False), (2, True, True)]
    ):
        key = WatermarkKey(bytes([i + 1]) * 32)
        settings = PayloadSettings(payload_bits=20) if payload else None
        config = WatermarkConfig.create(
            key,
            VOCAB,
            delta=2.0 + i,
            context_width=width,
            self_seeded=self_seeded,
            payload=settings,
        )
        entries.append(KeySetEntry(key, config))
    return WatermarkKeySet(entries)


KEYSET = _keyset()


def _args(entry: KeySetEntry, payload: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {"tiergate_key_id": entry.key.key_id}
    if entry.config.payload is not None:
        args["tiergate_payload"] = payload
    return args


def _table() -> RowTable:
    return RowTable(lambda p: parse_request(p.extra_args, p.temperature, KEYSET), eos_ids=[0])


def _reference(request: Request, logits_row: Any) -> Any:
    """The local engine's processor on this request alone."""
    args = request.params.extra_args or {}
    if "tiergate_key_id" not in args:
        return logits_row.clone()
    entry = KEYSET.find(args["tiergate_key_id"])
    ids = torch.tensor([request.prompt + request.output])
    if ids.shape[1] < entry.config.context_width:
        return logits_row.clone()
    temperature = request.params.temperature
    config = entry.config
    if temperature >= engine_rows.GREEDY_EPS:
        # The plugin adds delta*T before vLLM divides by T; the reference scales the same.
        from dataclasses import replace

        config = replace(config, delta=float(torch.tensor(config.delta * temperature)))
    processor = GreenListProcessor(config, entry.key, payload=args.get("tiergate_payload"))
    return processor(ids, logits_row.unsqueeze(0).clone())[0]


class FakeBatch:
    """A persistent batch with vLLM's InputBatch semantics: adds fill the lowest freed slot,
    then condense moves the highest rows down into the remaining holes."""

    def __init__(self, table: RowTable) -> None:
        self.table = table
        self.slots: list[Request | None] = []
        self._removed: list[int] = []
        self._added: list[tuple[int, Any, list[int] | None, list[int]]] = []
        self._moved: list[tuple[int, int, Move]] = []

    def remove(self, request: Request) -> None:
        index = self.slots.index(request)
        self.slots[index] = None
        self._removed.append(index)

    def add(self, request: Request) -> None:
        if self._removed:
            index = min(self._removed)
            self._removed.remove(index)
            self.slots[index] = request
        else:
            index = len(self.slots)
            self.slots.append(request)
        self._added.append((index, request.params, request.prompt, request.output))

    def swap(self, i: int, j: int) -> None:
        self.slots[i], self.slots[j] = self.slots[j], self.slots[i]
        self._moved.append((i, j, Move.SWAP))

    def step(self) -> None:
        """Condense, hand the update to the table (removed, added, moved)."""
        holes = sorted(self._removed)
        while holes:
            last = (
                max(i for i, r in enumerate(self.slots) if r is not None) if any(self.slots) else -1
            )
            hole = holes[0]
            if hole >= last:
                break
            holes.pop(0)
            self.slots[hole], self.slots[last] = self.slots[last], None
            self._moved.append((last, hole, Move.UNIDIRECTIONAL))
        while self.slots and self.slots[-1] is None:
            self.slots.pop()
        # As in vLLM, a hole filled by a move is no longer reported as removed.
        self.table.update(sorted(holes, reverse=True), self._added, self._moved)
        self._removed, self._added, self._moved = [], [], []

    def check(self, generator: Any) -> None:
        """One decode step: bias fresh logits, compare with the reference, append a token."""
        logits = torch.randn(len(self.slots), VOCAB, generator=generator) * 3
        expected = [_reference(r, logits[i]) for i, r in enumerate(self.slots) if r]
        out = self.table.apply(logits)
        for i, request in enumerate(self.slots):
            assert request is not None
            assert torch.equal(out[i], expected[i]), f"row {i} differs from its reference"
            request.output.append(int(torch.argmax(out[i])))


def _request(rng: random.Random, entry: KeySetEntry | None, temperature: float = 1.0) -> Request:
    prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(0, 5))]
    args = _args(entry, rng.randrange(1 << 20)) if entry is not None else None
    if args is not None and rng.random() < 0.3:
        args["unrelated_arg"] = "kept by vLLM, ignored by us"
    return Request(Params(args, temperature), prompt)


@pytest.mark.parametrize("seed", range(6))
def test_rows_follow_the_persistent_batch_bit_for_bit(seed: int) -> None:
    """Random adds, finishes, swaps and condenses; mixed keys, untagged rows, short prompts."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    batch = FakeBatch(_table())
    live: list[Request] = []
    entries = [*KEYSET, None]
    for _ in range(25):
        for request in list(live):
            if rng.random() < 0.2:
                batch.remove(request)
                live.remove(request)
        for _ in range(rng.randrange(0, 3)):
            temperature = rng.choice([0.0, 1.0, 0.7])
            request = _request(rng, rng.choice(entries), temperature)
            batch.add(request)
            live.append(request)
        if len(batch.slots) >= 2 and rng.random() < 0.3 and not batch._removed:
            i, j = rng.sample(range(len(batch.slots)), 2)
            batch.swap(i, j)
        batch.step()
        if batch.slots:
            batch.check(generator)
    assert set(batch.table.rows) <= set(range(len(batch.slots)))


def test_preempted_request_resumes_without_double_counting() -> None:
    """Removed mid-decode and re-added later (recompute): the context comes from the
    request's own tokens, so the bias after resuming equals the uninterrupted one."""
    rng = random.Random(1)
    generator = torch.Generator().manual_seed(1)
    entry = next(iter(KEYSET))
    request = Request(Params(_args(entry, 12345)), [5, 6, 7])
    batch = FakeBatch(_table())
    batch.add(request)
    batch.step()
    for _ in range(4):
        batch.check(generator)
    batch.remove(request)
    batch.add(_request(rng, entry))  # another request takes its slot meanwhile
    batch.step()
    batch.check(generator)
    batch.add(request)  # resumed: vLLM hands the same prompt and the output so far
    batch.step()
    for _ in range(4):
        batch.check(generator)


def test_fused_kernel_and_torch_ops_give_the_same_rows() -> None:
    """A non-contiguous logits tensor takes the torch path; both must match."""
    generator = torch.Generator().manual_seed(3)
    rng = random.Random(3)
    requests = [_request(rng, e) for e in KEYSET for _ in range(3)]
    for r in requests:
        r.output.extend(rng.randrange(VOCAB) for _ in range(4))
    fused, plain = _table(), _table()
    added = [(i, r.params, r.prompt, r.output) for i, r in enumerate(requests)]
    fused.update([], added, [])
    plain.update([], added, [])
    logits = torch.randn(len(requests), VOCAB, generator=generator)
    a = fused.apply(logits.clone())
    wide = torch.zeros(len(requests), VOCAB * 2)
    wide[:, ::2] = logits
    b = plain.apply(wide[:, ::2])
    assert not wide[:, ::2].is_contiguous()
    assert torch.equal(a, b)


def test_untagged_requests_are_untouched_and_cost_nothing() -> None:
    table = _table()
    table.update([], [(0, Params(None), [1, 2], []), (1, Params({"other": 1}), [3], [])], [])
    assert table.rows == {}
    logits = torch.randn(2, VOCAB)
    assert torch.equal(table.apply(logits.clone()), logits)


def test_temperature_scales_delta_greedy_does_not() -> None:
    entry = KEYSET.find(next(iter(KEYSET)).key.key_id)
    args = _args(entry, 7)
    assert parse_request(args, 0.0, KEYSET).delta == entry.config.delta  # type: ignore[union-attr]
    assert parse_request(args, 0.5, KEYSET).delta == entry.config.delta * 0.5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"tiergate_key_id": "00" * 8, "tiergate_payload": 1}, WatermarkKeyError),
        ({"tiergate_key_id": 5}, WatermarkConfigError),
        ({"tiergate_payload": 3}, WatermarkConfigError),
        ({"tiergate_keyid": "typo"}, WatermarkConfigError),
    ],
)
def test_bad_arguments_are_refused(args: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_request(args, 1.0, KEYSET)


def test_payload_must_match_the_keys_config() -> None:
    with_payload, without = next(iter(KEYSET)), list(KEYSET)[1]
    with pytest.raises(PayloadError):
        parse_request({"tiergate_key_id": with_payload.key.key_id}, 1.0, KEYSET)
    with pytest.raises(PayloadError):
        parse_request(
            {"tiergate_key_id": with_payload.key.key_id, "tiergate_payload": 1 << 20}, 1.0, KEYSET
        )
    with pytest.raises(PayloadError):
        parse_request({"tiergate_key_id": without.key.key_id, "tiergate_payload": 1}, 1.0, KEYSET)
    with pytest.raises(WatermarkConfigError):
        parse_request({"tiergate_key_id": without.key.key_id}, 1.0, None)


def test_unknown_key_reaching_the_engine_ends_the_request_instead_of_going_out_plain() -> None:
    """The API server refuses it first; if one gets through, only end-of-sequence remains."""
    table = _table()
    table.update([], [(0, Params({"tiergate_key_id": "ff" * 8}), [1, 2], [])], [])
    logits = torch.randn(1, VOCAB)
    out = table.apply(logits)
    assert int(torch.argmax(out[0])) == 0
    assert torch.isneginf(out[0, 1:]).all()


def test_keyset_file_roundtrip_and_errors(tmp_path: Any) -> None:
    path = tmp_path / "keys.json"
    write_keyset(path, KEYSET)
    assert path.stat().st_mode & 0o077 == 0
    loaded = load_keyset(path)
    assert loaded.key_ids == KEYSET.key_ids
    assert next(iter(KEYSET)).key.to_hex() not in repr(loaded)
    for bad in (
        "{",
        '{"format": "x", "keys": []}',
        "[]",
        '{"format": "tiergate-watermark-keys/v1", "keys": []}',
    ):
        path.write_text(bad)
        with pytest.raises(WatermarkKeyError):
            load_keyset(path)
    secret = next(iter(KEYSET)).key.to_hex()
    path.write_text(KEYSET.to_json().replace('"key_id": "', '"key_id": "0', 1)[:-3] + secret)
    with pytest.raises(WatermarkKeyError) as caught:
        load_keyset(path)
    assert secret not in str(caught.value)
    other = WatermarkKey(b"k" * 32)
    with pytest.raises(WatermarkKeyError):
        KeySetEntry(other, next(iter(KEYSET)).config)


@pytest.mark.parametrize("temperatures", [(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 0.0, 1.0)])
def test_a_batch_of_one_key_matches_the_reference(temperatures: tuple[float, ...]) -> None:
    """All rows of one key and one delta take one kernel call for the batch; mixed deltas
    fall back to a call per row. Both give each row its own reference bits."""
    rng = random.Random(9)
    generator = torch.Generator().manual_seed(9)
    entry = next(iter(KEYSET))
    requests = [_request(rng, entry, t) for t in temperatures]
    for r in requests:
        r.output.extend(rng.randrange(1, VOCAB) for _ in range(3))
    table = _table()
    table.update([], [(i, r.params, r.prompt, r.output) for i, r in enumerate(requests)], [])
    logits = torch.randn(len(requests), VOCAB, generator=generator)
    expected = [_reference(r, logits[i]) for i, r in enumerate(requests)]
    out = table.apply(logits)
    for i in range(len(requests)):
        assert torch.equal(out[i], expected[i])
