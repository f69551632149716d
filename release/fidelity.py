"""Fidelity of an optimized tier against its open tier, measured on a probe batch."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.quantize import (
    DEFAULT_MAX_SHARD_SIZE,
    QuantizedTier,
    QuantMethod,
    quantize_model_folder,
)

if TYPE_CHECKING:
    import torch

    from release._progress import ProgressCallback

__all__ = [
    "DEFAULT_PROBE_TEXTS",
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


@dataclass(frozen=True)
class FidelityReport:
    """How close the optimized tier is to the open tier.

    ``top1_agreement``: share of probe positions where both tiers predict the same next token.
    ``mean_kl``: mean KL(open || optimized) of the next-token distributions, in nats.
    ``tensor_errors``: relative Frobenius error of every floating tensor, sorted by name.
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


def measure_fidelity(
    open_dir: str | os.PathLike[str],
    optimized_dir: str | os.PathLike[str],
    *,
    method: str,
    tensor_errors: Sequence[tuple[str, float]] | Mapping[str, float] = (),
    probe_texts: Sequence[str] = DEFAULT_PROBE_TEXTS,
    seq_len: int = 64,
    num_sequences: int = 8,
) -> FidelityReport:
    """Run both tiers on the same probe batch and compare their next-token distributions."""
    import torch

    from release.loader import load_model
    from release.safetensors_check import validate_model_folder

    open_path, opt_path = Path(open_dir), Path(optimized_dir)
    open_model = load_model(open_path)
    vocab = int(open_model.config.vocab_size)
    batch = _probe_batch(open_path, probe_texts, seq_len, num_sequences, vocab)
    with torch.inference_mode():
        reference = open_model(input_ids=batch).logits
    del open_model
    optimized = load_model(opt_path)
    with torch.inference_mode():
        candidate = optimized(input_ids=batch).logits
    agreement, kl = _compare(reference, candidate)
    errors = tuple(sorted(dict(tensor_errors).items()))
    values = [e for _, e in errors]
    open_bytes = validate_model_folder(open_path).weights_bytes
    opt_bytes = validate_model_folder(opt_path).weights_bytes
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
    )


def build_optimized_tier(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: QuantMethod = "int8",
    group_size: int = 64,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    probe_texts: Sequence[str] = DEFAULT_PROBE_TEXTS,
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> OptimizedTier:
    """Quantize ``model_dir`` into ``out_dir`` and measure the result against it.

    ``max_shard_size``: see :func:`~release.quantize.quantize_model_folder`.
    """
    quantized = quantize_model_folder(
        model_dir,
        out_dir,
        method=method,
        group_size=group_size,
        max_shard_size=max_shard_size,
        show_progress=show_progress,
        on_progress=on_progress,
    )
    fidelity = measure_fidelity(
        model_dir,
        out_dir,
        method=method,
        tensor_errors=quantized.tensor_errors,
        probe_texts=probe_texts,
    )
    return OptimizedTier(quantized, fidelity)
