"""Fidelity of an optimized artifact against its open tier, measured through transformers.

Both tiers are loaded the way a user loads them (:func:`release.loader.load_model`:
``from_pretrained`` for compressed-tensors and plain folders, transformers' GGUF loader for
GGUF) and run on the same batch of held-out text: prose that ships with Python itself (the Zen
of Python and the docstrings of a few standard-library modules), never the tiny models'
training text nor a calibration text. Reported: top-1 agreement, mean KL(open || optimized),
and the perplexity of each tier on that text, whose ratio (optimized / open) is the figure the
targets are stated in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from release.errors import UnknownOptimizationError
from release.quantize import (
    DEFAULT_GROUP_SIZE,
    DEFAULT_MAX_SHARD_SIZE,
    QuantizedTier,
    quantize_model_folder,
)

if TYPE_CHECKING:
    import torch

    from release._progress import ProgressCallback
    from release.calibration import CalibrationMethod, CalibrationText

TierWriter = Literal["standard", "tiergate"]

__all__ = [
    "DEFAULT_PROBE_TEXTS",
    "write_optimized_artifact",
    "HELD_OUT_SOURCE",
    "held_out_texts",
    "FidelityReport",
    "OptimizedTier",
    "build_optimized_tier",
    "measure_fidelity",
]

# General prose, not the tiny models' training text, so the figure is not flattered by it.
DEFAULT_PROBE_TEXTS: tuple[str, ...] = (
    "The release of a model is a promise: the weights you download are the weights we tested.",
    "Every file of a tier is hashed, listed in a manifest and signed by the publisher.",
    "A quantized model stores its linear layers as small integers with one scale per row.",
    "Developers request access to the optimized tier with a signed usage attestation.",
    "The watermark is applied when tokens are sampled, and every call is logged.",
    "Norms and embeddings stay in higher precision; they are small and sensitive.",
    "The quick brown fox jumps over the lazy dog while the river runs to the sea.",
    "Fidelity is reported as top one agreement and mean KL divergence on this batch.",
)


HELD_OUT_SOURCE = "python-stdlib: Zen of Python + argparse, json, fractions, textwrap docs"
_HELD_OUT_MODULES = ("argparse", "json", "fractions", "textwrap")


def held_out_texts() -> tuple[str, ...]:
    """Held-out English prose from the Python standard library (present wherever we run)."""
    import ast
    import codecs
    import importlib
    import importlib.util
    import inspect

    texts: list[str] = []
    spec = importlib.util.find_spec("this")
    if spec is not None and spec.origin:
        # Importing `this` prints the Zen; its source holds it rot13-encoded in `s`.
        tree = ast.parse(Path(spec.origin).read_text("utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and len(node.value.value) > 200
            ):
                texts.append(codecs.decode(node.value.value, "rot13"))
    for name in _HELD_OUT_MODULES:
        doc = inspect.getdoc(importlib.import_module(name))
        if doc:
            texts.append(doc)
    return tuple(texts) or DEFAULT_PROBE_TEXTS


@dataclass(frozen=True)
class FidelityReport:
    """How close the optimized tier is to the open tier.

    ``top1_agreement``: share of probe positions where both tiers predict the same next token.
    ``mean_kl``: mean KL(open || optimized) of the next-token distributions, in nats.
    ``tensor_errors``: relative Frobenius error of every floating tensor, sorted by name.
    ``perplexity_open`` / ``perplexity_optimized``: on the probe text (held-out prose by
    default), through ``engine``; ``perplexity_ratio`` is optimized / open.
    """

    method: str
    open_weights_bytes: int
    optimized_weights_bytes: int
    size_ratio: float
    probe_positions: int
    top1_agreement: float
    mean_kl: float
    max_tensor_error: float
    mean_tensor_error: float
    tensor_errors: tuple[tuple[str, float], ...]
    perplexity_open: float = 0.0
    perplexity_optimized: float = 0.0
    engine: str = "transformers"
    text: str = ""

    @property
    def perplexity_ratio(self) -> float:
        return self.perplexity_optimized / self.perplexity_open if self.perplexity_open else 0.0

    def to_dict(self, *, include_tensor_errors: bool = False) -> dict[str, Any]:
        """Plain values rounded to 6 significant digits, for the signed statement and card."""

        def r(x: float) -> float:
            return float(f"{x:.6g}")

        out: dict[str, Any] = {
            "method": self.method,
            "open_weights_bytes": self.open_weights_bytes,
            "optimized_weights_bytes": self.optimized_weights_bytes,
            "size_ratio": r(self.size_ratio),
            "probe_positions": self.probe_positions,
            "top1_agreement": r(self.top1_agreement),
            "mean_kl": r(self.mean_kl),
            "max_tensor_error": r(self.max_tensor_error),
            "mean_tensor_error": r(self.mean_tensor_error),
            "perplexity_open": r(self.perplexity_open),
            "perplexity_optimized": r(self.perplexity_optimized),
            "perplexity_ratio": r(self.perplexity_ratio),
            "engine": self.engine,
            "text": self.text,
        }
        if include_tensor_errors:
            out["tensor_errors"] = {name: r(err) for name, err in self.tensor_errors}
        return out

    def meets(self, *, max_size_ratio: float, min_top1_agreement: float) -> bool:
        """Whether the tier is at least as small and as faithful as asked."""
        return self.size_ratio <= max_size_ratio and self.top1_agreement >= min_top1_agreement


@dataclass(frozen=True)
class OptimizedTier:
    """The optimized tier as built, with its measured fidelity."""

    quantized: QuantizedTier
    fidelity: FidelityReport


def _probe_batch(
    model_dir: Path, texts: Sequence[str], seq_len: int, num_sequences: int, vocab_size: int
) -> torch.Tensor:
    """``[num_sequences, seq_len]`` token ids: the texts, tokenized, in consecutive windows."""
    import torch

    ids: list[int] = []
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(os.fspath(model_dir), local_files_only=True)
        for text in texts:
            ids.extend(tokenizer(text)["input_ids"])
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        ids = []  # no usable tokenizer: fall back to fixed pseudo-random ids below
    # A tokenizer larger than the embedding table would crash the forward pass; such ids
    # say nothing about fidelity anyway.
    ids = [i for i in ids if 0 <= i < vocab_size]
    need = seq_len * num_sequences
    if not ids:
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, vocab_size, (num_sequences, seq_len), generator=generator)
    while len(ids) < need:
        ids = ids + ids
    return torch.tensor(ids[:need], dtype=torch.long).reshape(num_sequences, seq_len)


def _compare(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float]:
    import torch

    ref = torch.log_softmax(reference.to(torch.float64), dim=-1)
    cand = torch.log_softmax(candidate.to(torch.float64), dim=-1)
    agree = (ref.argmax(-1) == cand.argmax(-1)).to(torch.float64).mean()
    kl = (ref.exp() * (ref - cand)).sum(-1).clamp_min(0.0).mean()
    return float(agree), float(kl)


def _perplexity(logits: torch.Tensor, batch: torch.Tensor) -> float:
    """exp(mean next-token NLL) over every window position that has a next token."""
    import math

    import torch

    logp = torch.log_softmax(logits[:, :-1].to(torch.float64), dim=-1)
    nll = -logp.gather(-1, batch[:, 1:].unsqueeze(-1)).mean()
    return math.exp(float(nll))


def _label_perplexity(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """exp(mean NLL) of ``labels`` under a classifier's ``[batch, labels]`` logits."""
    import math

    import torch

    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return math.exp(float(-logp.gather(-1, labels.unsqueeze(-1)).mean()))


def measure_fidelity(
    open_dir: str | os.PathLike[str],
    optimized_dir: str | os.PathLike[str],
    *,
    method: str,
    tensor_errors: Sequence[tuple[str, float]] | Mapping[str, float] = (),
    probe_texts: Sequence[str] | None = None,
    seq_len: int = 64,
    num_sequences: int = 8,
) -> FidelityReport:
    """Run both tiers on the same probe batch and compare their next-token distributions.

    ``probe_texts``: :func:`held_out_texts` by default.
    """
    import torch

    from release.loader import load_model
    from release.safetensors_check import validate_model_folder

    open_path, opt_path = Path(open_dir), Path(optimized_dir)
    open_model = load_model(open_path)
    vocab = int(open_model.config.vocab_size)
    texts = held_out_texts() if probe_texts is None else probe_texts
    batch = _probe_batch(open_path, texts, seq_len, num_sequences, vocab)
    with torch.inference_mode():
        reference = open_model(input_ids=batch).logits
    del open_model
    optimized = load_model(opt_path)
    with torch.inference_mode():
        candidate = optimized(input_ids=batch).logits
    agreement, kl = _compare(reference, candidate)
    if reference.dim() == 2:
        # A sequence classifier (a guard model): one label distribution per sequence and no
        # next token to predict, so the perplexity is over the open tier's top label.
        labels = reference.argmax(-1)
        ppl_open, ppl_opt = (
            _label_perplexity(reference, labels),
            _label_perplexity(candidate, labels),
        )
    else:
        ppl_open, ppl_opt = _perplexity(reference, batch), _perplexity(candidate, batch)
    errors = tuple(sorted(dict(tensor_errors).items()))
    values = [e for _, e in errors]
    open_bytes = validate_model_folder(open_path).weights_bytes
    opt_bytes = _weights_bytes(opt_path)
    return FidelityReport(
        method=method,
        open_weights_bytes=open_bytes,
        optimized_weights_bytes=opt_bytes,
        size_ratio=opt_bytes / max(1, open_bytes),
        probe_positions=int(batch.numel()),
        top1_agreement=agreement,
        mean_kl=kl,
        max_tensor_error=max(values, default=0.0),
        mean_tensor_error=sum(values) / len(values) if values else 0.0,
        tensor_errors=errors,
        perplexity_open=ppl_open,
        perplexity_optimized=ppl_opt,
        engine="transformers",
        text=HELD_OUT_SOURCE if probe_texts is None else "caller's probe texts",
    )


def _weights_bytes(tier_dir: Path) -> int:
    from release.loader import tier_format
    from release.safetensors_check import validate_model_folder

    if tier_format(tier_dir) == "gguf":
        return sum(p.stat().st_size for p in tier_dir.glob("*.gguf"))
    return validate_model_folder(tier_dir).weights_bytes


def write_optimized_artifact(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: str = "int8",
    group_size: int | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    tier_format: TierWriter = "standard",
    calibration: CalibrationMethod | None = None,
    calibration_text: CalibrationText | None = None,
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> QuantizedTier:
    """Write one optimized artifact (``method``: a name of :data:`release.formats.OPTIMIZATIONS`).

    ``calibration`` applies to the compressed-tensors artifacts only (see
    :mod:`release.calibration`); ``None`` picks :func:`release.calibration.default_calibration`
    (GPTQ, SmoothQuant first for int8 on Llama-style models; round-to-nearest past its memory
    bound).

    ``tier_format="tiergate"`` writes the private format of releases built before the
    standard formats (``int8``, ``int4``, ``bf16`` only), kept for tests and comparisons.
    """
    from release.formats import parse_optimizations

    if tier_format == "tiergate":
        if method not in ("int8", "int4", "bf16"):
            raise UnknownOptimizationError(f"the tiergate format has no {method!r}")
        return quantize_model_folder(
            model_dir,
            out_dir,
            method=method,  # type: ignore[arg-type]
            group_size=group_size or DEFAULT_GROUP_SIZE,
            max_shard_size=max_shard_size,
            show_progress=show_progress,
            on_progress=on_progress,
        )
    (optimization,) = parse_optimizations(method)
    if optimization.engine == "gguf":
        from release.gguf_export import write_gguf_tier

        assert optimization.gguf_type is not None
        return write_gguf_tier(
            model_dir,
            out_dir,
            quant_type=optimization.gguf_type,
            show_progress=show_progress,
            on_progress=on_progress,
        )
    if optimization.engine == "compressed-tensors":
        from release.calibration import default_calibration
        from release.compressed import DEFAULT_CT_GROUP_SIZE, write_compressed_tier

        ct_method: Literal["int8", "int4"] = "int8" if optimization.name == "int8" else "int4"
        return write_compressed_tier(
            model_dir,
            out_dir,
            method=ct_method,
            group_size=group_size or DEFAULT_CT_GROUP_SIZE,
            calibration=(
                default_calibration(model_dir, ct_method) if calibration is None else calibration
            ),
            calibration_text=calibration_text,
            max_shard_size=max_shard_size,
            show_progress=show_progress,
            on_progress=on_progress,
        )
    return quantize_model_folder(
        model_dir,
        out_dir,
        method="bf16",
        max_shard_size=max_shard_size,
        show_progress=show_progress,
        on_progress=on_progress,
    )


def build_optimized_tier(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: str = "int8",
    group_size: int | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    probe_texts: Sequence[str] | None = None,
    tier_format: TierWriter = "standard",
    calibration: CalibrationMethod | None = None,
    calibration_text: CalibrationText | None = None,
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> OptimizedTier:
    """Write one optimized artifact of ``model_dir`` into ``out_dir`` and measure it against
    ``model_dir`` through transformers (see :func:`write_optimized_artifact`)."""
    quantized = write_optimized_artifact(
        model_dir,
        out_dir,
        method=method,
        group_size=group_size,
        max_shard_size=max_shard_size,
        tier_format=tier_format,
        calibration=calibration,
        calibration_text=calibration_text,
        show_progress=show_progress,
        on_progress=on_progress,
    )
    fidelity = measure_fidelity(
        model_dir,
        out_dir,
        method=quantized.method,
        tensor_errors=quantized.tensor_errors,
        probe_texts=probe_texts,
    )
    return OptimizedTier(quantized, fidelity)
