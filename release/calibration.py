"""Calibration of the compressed-tensors tiers on text: SmoothQuant smoothing and GPTQ.

Round-to-nearest looks at weights only. Two standard methods use activations from a
calibration text, and both keep the output plain compressed-tensors (no new tensor kinds):

- **smoothing** (SmoothQuant, what llm-compressor pairs with W8A8): W8A8 quantizes each
  linear layer's *input* per token at run time, and a few input channels with large values
  set every token's step. Per channel ``j`` of an input, ``s_j = max|X_j|^a / max|W_j|^(1-a)``
  moves range from activations to weights: the producer of the input is divided by ``s``
  (an RMSNorm's weight, or ``up_proj``'s rows for ``down_proj``, since ``act(gate) * up`` is
  linear in ``up``) and the consumers' weight columns multiplied by it. The model computes
  the same function; the factors fold into weights the checkpoint already has.
- **GPTQ** (error compensation): each weight column is rounded in turn and its rounding
  error spread over the columns not yet rounded, weighted by the inverse Hessian
  ``H = sum X^T X`` of the layer's input, so the layer's *output* on the calibration text
  moves least. Static groups, no activation reordering (reordering needs a ``g_idx`` tensor).

Statistics come from one forward pass of the open model over the calibration text (hooks on
the quantized linear layers; inputs shared by several layers, such as q/k/v, are counted
once). Cost: the open model in float32 plus one ``in x in`` float32 Hessian per distinct
input, held until the tier is written (``docs/benchmarks.md`` records the measured peak).

The default text is :mod:`pydoc_data.topics` (the language reference topics that ship with
CPython); it shares no text with :func:`release.fidelity.held_out_texts` (module docstrings
and the Zen of Python), which a test checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from release._gptq import gptq_quantize
from release._gptq import inverse_hessian as inverse_hessian
from release.errors import CalibrationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_SOURCE",
    "Calibration",
    "CalibrationMethod",
    "CalibrationText",
    "calibrate",
    "default_calibration",
    "default_calibration_text",
    "gptq_quantize",
    "read_calibration_text",
]

CalibrationMethod = Literal["none", "gptq", "smoothquant", "smoothquant+gptq"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = (
    "none",
    "gptq",
    "smoothquant",
    "smoothquant+gptq",
)
DEFAULT_CALIBRATION_SOURCE = "python-stdlib: pydoc_data.topics (the language reference)"
# A publisher's file is read whole: bound it before reading.
MAX_CALIBRATION_BYTES = 64 * 2**20
# Architectures whose norms are `weight * x / rms(x)` (no bias, no `1 + weight` as Gemma's)
# and whose blocks use these module names: smoothing folds into them exactly.
_SMOOTHABLE = frozenset({"llama", "mistral", "qwen2"})
_SMOOTH_MAPS = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp.up_proj", ("mlp.down_proj",)),
)
# What calibration may hold in memory: the open model in float32 plus one float32 Hessian
# per distinct linear input (a 7B Llama would need ~50 GB). Past it, statistics are gathered
# one block at a time (release.calibration_layerwise, ~2 GB for a 7B Llama); past that too,
# the default is round-to-nearest, which streams one tensor at a time.
DEFAULT_CALIBRATION_MEMORY_BYTES = 8 * 2**30
_MIN_FACTOR = 1e-5


@dataclass(frozen=True)
class CalibrationText:
    """A calibration corpus: where it comes from, its sha256 and the texts."""

    source: str
    sha256: str
    texts: tuple[str, ...] = field(repr=False)


def _text_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n\n".join(texts).encode("utf-8")).hexdigest()


def default_calibration_text() -> CalibrationText:
    """The Python language reference topics that ship with CPython (:mod:`pydoc_data`)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        raise CalibrationError(
            "no default calibration text (pydoc_data is not installed); pass one"
        ) from None
    texts = tuple(str(topics[name]) for name in sorted(topics))
    return CalibrationText(DEFAULT_CALIBRATION_SOURCE, _text_digest(texts), texts)


def read_calibration_text(path: str | os.PathLike[str]) -> CalibrationText:
    """A publisher's calibration text: one UTF-8 file, paragraphs separated by blank lines."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_CALIBRATION_BYTES:
            raise CalibrationError(f"{file.name}: {size} bytes, more than {MAX_CALIBRATION_BYTES}")
        raw = file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{file.name}: cannot read the calibration text: {exc}") from None
    texts = tuple(p.strip() for p in raw.split("\n\n") if p.strip())
    if not texts:
        raise CalibrationError(f"{file.name}: the calibration text is empty")
    return CalibrationText(f"file: {file.name}", _text_digest(texts), texts)


@dataclass(frozen=True)
class Calibration:
    """What the writer applies, tensor by tensor.

    ``column_factors``: weight name -> factor to multiply its input columns by;
    ``row_divisors``: tensor name (a norm's weight, ``up_proj``'s weight or bias) -> factor
    to divide its output channels by; ``hessians``: module -> ``H`` of its (smoothed) input,
    for GPTQ; ``record``: what goes into the signed release statement and the card.
    """

    method: CalibrationMethod
    text: CalibrationText
    tokens: int
    smoothing_strength: float | None
    column_factors: Mapping[str, torch.Tensor]
    row_divisors: Mapping[str, torch.Tensor]
    hessians: Mapping[str, torch.Tensor]
    smoothed_modules: int = 0

    def record(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {
            "calibration": self.method,
            "calibration_text": self.text.source,
            "calibration_sha256": self.text.sha256,
            "calibration_tokens": self.tokens,
        }
        if self.smoothing_strength is not None:
            out["smoothing_strength"] = f"{self.smoothing_strength:g}"
        return out

    def transform(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` with this calibration's smoothing folded in (float32 when changed)."""
        import torch

        divisor = self.row_divisors.get(name)
        factor = self.column_factors.get(name)
        if divisor is None and factor is None:
            return tensor
        out = tensor.to(torch.float32)
        if divisor is not None:
            out = out / (divisor if out.dim() == 1 else divisor.unsqueeze(1))
        if factor is not None:
            out = out * factor.unsqueeze(0)
        return out


def _calibration_batch(model_dir: Path, text: CalibrationText, seq_len: int, count: int) -> Any:
    import torch
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(model_dir), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"calibration needs the model's tokenizer: {exc}") from None
    ids: list[int] = []
    for chunk in text.texts:
        ids.extend(tokenizer(chunk)["input_ids"])
        if len(ids) >= seq_len * count:
            break
    if len(ids) < seq_len:
        raise CalibrationError(f"the calibration text is shorter than {seq_len} tokens")
    windows = min(count, len(ids) // seq_len)
    return torch.tensor(ids[: windows * seq_len], dtype=torch.long).reshape(windows, seq_len)


class _Collector:
    """Forward pre-hooks accumulating, per distinct linear input, ``X^T X`` and ``max|X|``."""

    def __init__(self) -> None:
        self.hessians: dict[str, torch.Tensor] = {}
        self.absmax: dict[str, torch.Tensor] = {}
        self.alias: dict[str, str] = {}  # module -> the module whose input it shares
        self._last: tuple[Any, str] | None = None

    def hook(self, name: str) -> Any:
        import torch

        def pre_hook(_module: Any, args: tuple[Any, ...]) -> None:
            x = args[0]
            if self._last is not None and self._last[0] is x:
                self.alias[name] = self._last[1]
                return
            self._last = (x, name)
            flat = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
            if name not in self.hessians:
                self.hessians[name] = torch.zeros(flat.shape[1], flat.shape[1])
                self.absmax[name] = torch.zeros(flat.shape[1])
            self.hessians[name].addmm_(flat.T, flat)
            torch.maximum(self.absmax[name], flat.abs().amax(0), out=self.absmax[name])

        return pre_hook

    def new_batch(self) -> None:
        """Forget the last input: a tensor of one batch is never shared with the next."""
        self._last = None

    def owner(self, name: str) -> str:
        return self.alias.get(name, name)


def _collect(
    model_dir: Path, modules: Collection[str], batch: Any
) -> tuple[_Collector, str, Mapping[str, Any]]:
    import torch

    from release.loader import load_model

    model = load_model(model_dir)
    model_type = str(getattr(model.config, "model_type", ""))
    collector = _Collector()
    handles = [
        model.get_submodule(name).register_forward_pre_hook(collector.hook(name))
        for name in sorted(modules, key=_module_order(model))
    ]
    try:
        with torch.inference_mode():
            for window in batch.split(4):
                collector.new_batch()
                model(input_ids=window)
    finally:
        for handle in handles:
            handle.remove()
    # Smoothing needs each weight's per-input-column max only, not a copy of the weight.
    weights = {name: _column_absmax(model, name) for name in modules}
    del model
    return collector, model_type, weights


def _column_absmax(model: Any, name: str) -> torch.Tensor:
    """``max_i |W[i, j]|`` per input column ``j`` of ``name``'s weight."""
    import torch

    weight: torch.Tensor = model.get_submodule(name).weight
    return weight.detach().abs().amax(0).to(torch.float32)


def _module_order(model: Any) -> Any:
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return lambda name: order.get(name, -1)


def _smoothing(
    collector: _Collector,
    weights: Mapping[str, torch.Tensor],  # module -> per-input-column max |W|
    modules: Collection[str],
    strength: float,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(column factors, row divisors, per-owner input divisors) for every mapping whose
    consumers are all quantized."""
    import torch

    columns: dict[str, torch.Tensor] = {}
    rows: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    prefixes = {m.rsplit(".", 2)[0] for m in modules if ".self_attn." in m or ".mlp." in m}
    for prefix in sorted(prefixes):
        for producer, consumers in _SMOOTH_MAPS:
            names = [f"{prefix}.{c}" for c in consumers]
            if not all(n in modules for n in names):
                continue
            owner = collector.owner(names[0])
            if owner not in collector.absmax:
                continue
            w_max = torch.stack([weights[n] for n in names]).amax(0)
            a_max = collector.absmax[owner]
            s = (a_max.pow(strength) / w_max.clamp_min(_MIN_FACTOR).pow(1 - strength)).clamp_min(
                _MIN_FACTOR
            )
            s = torch.where(a_max > 0, s, torch.ones_like(s))
            rows[f"{prefix}.{producer}.weight"] = s
            if producer.endswith("_proj"):
                rows[f"{prefix}.{producer}.bias"] = s
            for n in names:
                columns[f"{n}.weight"] = s
            inputs[owner] = s
    return columns, rows, inputs


def _calibration_input(
    root: Path,
    method: CalibrationMethod,
    text: CalibrationText | None,
    smoothing_strength: float,
    seq_len: int,
    num_sequences: int,
) -> tuple[CalibrationText, Any]:
    """The options checked, then the corpus and its token batch (both calibration paths)."""
    if method not in CALIBRATION_METHODS or method == "none":
        raise CalibrationError(f"calibration method {method!r} is not one of gptq, smoothquant…")
    if not 0.0 < smoothing_strength < 1.0:
        raise CalibrationError(f"smoothing strength {smoothing_strength} is not in (0, 1)")
    corpus = text or default_calibration_text()
    return corpus, _calibration_batch(root, corpus, seq_len, num_sequences)


def _smooths(method: CalibrationMethod, model_type: str) -> bool:
    """Whether ``method`` smooths; refused where smoothing cannot fold exactly."""
    smooth = method.startswith("smoothquant")
    if smooth and model_type not in _SMOOTHABLE:
        raise CalibrationError(
            f"smoothing folds into {', '.join(sorted(_SMOOTHABLE))} norms only, not {model_type}"
        )
    return smooth


def _gptq_hessians(
    collector: _Collector, modules: Collection[str], smoothed: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The GPTQ step's statistics: each distinct input's Hessian (by the module that owns
    the input) and the owner of each of ``modules`` that has one. ``smoothed``: the
    smoothing factors by owner; the smoothed input is X / s, so H' = diag(1/s) H diag(1/s).
    Both calibration paths use it, so they give bit-identical Hessians."""
    import torch

    by_owner: dict[str, torch.Tensor] = {}
    owners: dict[str, str] = {}
    for name in modules:
        owner = collector.owner(name)
        if owner not in collector.hessians:
            continue
        if owner not in by_owner:
            h = collector.hessians[owner]
            s = smoothed.get(owner)
            by_owner[owner] = h / torch.outer(s, s) if s is not None else h
        owners[name] = owner
    return by_owner, owners


def calibrate(
    model_dir: str | os.PathLike[str],
    modules: Collection[str],
    *,
    method: CalibrationMethod,
    text: CalibrationText | None = None,
    smoothing_strength: float = 0.5,
    seq_len: int = 128,
    num_sequences: int = 32,
) -> Calibration:
    """Statistics of ``modules`` (the linear layers to quantize) on the calibration text.

    ``smoothquant`` needs a Llama-style architecture (see ``_SMOOTHABLE``); others are refused
    with :class:`~release.errors.CalibrationError` rather than smoothed wrongly.
    """
    root = Path(model_dir)
    corpus, batch = _calibration_input(
        root, method, text, smoothing_strength, seq_len, num_sequences
    )
    collector, model_type, weights = _collect(root, modules, batch)
    smooth = _smooths(method, model_type)
    columns, rows, inputs = (
        _smoothing(collector, weights, modules, smoothing_strength) if smooth else ({}, {}, {})
    )
    hessians: dict[str, torch.Tensor] = {}
    if method.endswith("gptq"):
        by_owner, owners = _gptq_hessians(collector, modules, inputs)
        hessians = {name: by_owner[owner] for name, owner in owners.items()}
    return Calibration(
        method=method,
        text=corpus,
        tokens=int(batch.numel()),
        smoothing_strength=smoothing_strength if smooth else None,
        column_factors=columns,
        row_divisors=rows,
        hessians=hessians,
        smoothed_modules=len(columns),
    )


def _config_number(config: Mapping[str, object], *keys: str) -> int | None:
    """The first of ``keys`` a model config sets to a positive integer."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def calibration_memory_bytes(config: dict[str, object]) -> int | None:
    """Estimated peak of :func:`calibrate` for a model ``config.json``, or None if unknown.

    The open model in float32 plus, per block, the Hessians of its linear layers' distinct
    inputs: three of width ``hidden`` (attention in, attention out, MLP in) and one of width
    ``intermediate`` (MLP out), float32.
    """
    hidden = _config_number(config, "hidden_size", "n_embd", "d_model")
    layers = _config_number(config, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _config_number(config, "vocab_size")
    if hidden is None or layers is None or vocab is None:
        return None
    inner = _config_number(config, "intermediate_size", "n_inner") or 4 * hidden
    params = layers * (4 * hidden * hidden + 3 * hidden * inner) + vocab * hidden
    hessians = layers * (3 * hidden * hidden + inner * inner)
    return 4 * (params + hessians)


def default_calibration(
    model_dir: str | os.PathLike[str],
    method: Literal["int8", "int4"],
    *,
    memory_bytes: int = DEFAULT_CALIBRATION_MEMORY_BYTES,
) -> CalibrationMethod:
    """The calibration a build uses when the publisher did not choose one.

    GPTQ for both methods, with SmoothQuant first for int8 where smoothing folds exactly
    (``_SMOOTHABLE``: a GPT-2 int8 build would otherwise be refused). Past ``memory_bytes``
    for the whole-model pass the statistics are gathered one block at a time (the same
    result, :mod:`release.calibration_layerwise`); round-to-nearest only when even that would
    need more (or the config cannot say), so a default build stays memory-bounded whatever
    the model's size. An explicit choice is never changed.
    """
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "none"
    if not isinstance(config, dict):
        return "none"
    needed = calibration_memory_bytes(config)
    if needed is None:
        return "none"
    if needed > memory_bytes:
        # Past the bound, calibration runs one block at a time (release.calibration_layerwise,
        # chosen by the writer from the same estimate); past that one too, round-to-nearest.
        from release.calibration_layerwise import layerwise_memory_bytes

        layerwise = layerwise_memory_bytes(config)
        if layerwise is None or layerwise > memory_bytes:
            return "none"
    if method == "int8" and config.get("model_type") in _SMOOTHABLE:
        return "smoothquant+gptq"
    return "gptq"
