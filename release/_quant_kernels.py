"""Tensor-level weight quantization: int8 per output channel, int4 group-wise (packed).

Every function takes and returns ``torch`` tensors; ``torch`` is imported by the caller.
Conventions (the on-disk format documented in ``docs/release_optimized_tier.md``):

* int8: ``qweight`` int8 ``[out, in]`` with values in [-127, 127]; ``scales`` float32
  ``[out]``; ``w ~= qweight * scales[:, None]``.
* int4: ``qweight`` uint8 ``[out, ceil(in / 2)]``, two 4-bit codes per byte, the even input
  column in the low nibble; a code is ``q + 8`` with ``q`` in [-7, 7]; ``scales`` float16
  ``[out, in / group_size]``; ``w[:, j] ~= q[:, j] * scales[:, j // group_size]``.

Both are symmetric (no zero point): weights of trained linear layers are centred on zero, and
symmetric codes let the int8 matmul kernel consume them directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "dequantization_error",
    "dequantize_int4",
    "dequantize_int8",
    "pack_int4",
    "quantize_int4",
    "quantize_int8",
    "relative_error",
    "unpack_int4",
]

# A row of zeros would give scale 0 and 0/0 codes; any positive floor keeps codes at 0.
_MIN_SCALE = 1e-12
# Quantize and measure about a Mi elements at a time: temporaries (float32 copies, float64
# error terms) then stay at a few tens of MiB however large the tensor.
_BLOCK_ELEMENTS = 1 << 20


def _abs_max(w: torch.Tensor, dim: int) -> torch.Tensor:
    """``w.abs().amax(dim)`` without the ``abs`` copy of ``w``."""
    import torch

    low, high = torch.aminmax(w, dim=dim)
    return torch.maximum(low.neg_(), high)


def _row_slices(rows: int, cols: int) -> Iterator[slice]:
    """Consecutive row slices of about ``_BLOCK_ELEMENTS`` elements each."""
    step = max(1, _BLOCK_ELEMENTS // max(1, cols))
    for start in range(0, rows, step):
        yield slice(start, start + step)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 of a ``[out, in]`` weight -> (qweight, scales)."""
    import torch

    out_features, in_features = weight.shape
    q = torch.empty(out_features, in_features, dtype=torch.int8)
    scales = torch.empty(out_features, dtype=torch.float32)
    # Rows are independent: quantizing in blocks gives the same codes with bounded temporaries.
    for rows in _row_slices(out_features, in_features):
        w = weight[rows].detach().to(torch.float32)
        s = (_abs_max(w, dim=1) / 127.0).clamp_min(_MIN_SCALE)
        q[rows] = (w / s[:, None]).round_().clamp_(-127, 127).to(torch.int8)
        scales[rows] = s
    return q, scales


def dequantize_int8(qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """float32 ``[out, in]`` weight from int8 codes and per-row scales."""
    import torch

    return qweight.to(torch.float32) * scales.to(torch.float32)[:, None]


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack signed 4-bit codes (int8 in [-7, 7], ``[out, in]``) two per byte."""
    import torch

    unsigned = (codes.to(torch.int16) + 8).to(torch.uint8)
    if unsigned.shape[1] % 2:
        # Odd width: pad with the code for zero so unpacking can simply drop the last nibble.
        pad = torch.full((unsigned.shape[0], 1), 8, dtype=torch.uint8)
        unsigned = torch.cat([unsigned, pad], dim=1)
    low = unsigned[:, 0::2]
    high = unsigned[:, 1::2]
    return (low | (high << 4)).contiguous()


def unpack_int4(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """Signed int8 codes ``[out, in_features]`` from :func:`pack_int4` output."""
    import torch

    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    codes = torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)
    return codes[:, :in_features]


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-wise symmetric int4 of a ``[out, in]`` weight (``in % group_size == 0``)."""
    import torch

    out_features, in_features = weight.shape
    if group_size <= 0 or in_features % group_size:
        raise ValueError(f"in_features {in_features} is not a multiple of group {group_size}")
    packed = torch.empty(out_features, (in_features + 1) // 2, dtype=torch.uint8)
    scales = torch.empty(out_features, in_features // group_size, dtype=torch.float16)
    for rows in _row_slices(out_features, in_features):
        w = (
            weight[rows]
            .detach()
            .to(torch.float32)
            .reshape(-1, in_features // group_size, group_size)
        )
        # float16 scales: store them as they will be used, so the error we report is real.
        s = (_abs_max(w, dim=2) / 7.0).clamp_min(_MIN_SCALE).to(torch.float16)
        codes = (w / s.to(torch.float32)[:, :, None]).round_().clamp_(-7, 7).to(torch.int8)
        packed[rows] = pack_int4(codes.reshape(-1, in_features))
        scales[rows] = s
    return packed, scales


def dequantize_int4(
    qweight: torch.Tensor, scales: torch.Tensor, in_features: int, group_size: int
) -> torch.Tensor:
    """float32 ``[out, in_features]`` weight from packed int4 codes and group scales."""
    import torch

    codes = unpack_int4(qweight, in_features).to(torch.float32)
    out_features = codes.shape[0]
    grouped = codes.reshape(out_features, -1, group_size) * scales.to(torch.float32)[:, :, None]
    return grouped.reshape(out_features, in_features)


def _as_rows(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().reshape(-1, 1) if tensor.dim() < 2 else tensor.detach()


def _squared_sums(reference: torch.Tensor, approx: torch.Tensor) -> tuple[float, float]:
    """``(||reference||^2, ||reference - approx||^2)`` in float64, two temporaries."""
    import torch

    ref = reference.to(torch.float64)
    diff = approx.to(torch.float64, copy=True).sub_(ref)
    ref_norm = float(torch.linalg.vector_norm(ref))
    return ref_norm * ref_norm, float(torch.linalg.vector_norm(diff)) ** 2


def _ratio(ref_sq: float, diff_sq: float) -> float:
    return 0.0 if ref_sq == 0.0 else math.sqrt(diff_sq) / math.sqrt(ref_sq)


def relative_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``||reference - approx||_F / ||reference||_F`` in float64 (0 for an all-zero reference).

    Summed over blocks of rows, so the float64 temporaries stay small for an embedding
    matrix of gigabytes.
    """
    ref = _as_rows(reference)
    app = approx.detach().reshape(ref.shape)
    ref_sq = diff_sq = 0.0
    for rows in _row_slices(ref.shape[0], ref[0].numel() if ref.shape[0] else 1):
        r, d = _squared_sums(ref[rows], app[rows])
        ref_sq, diff_sq = ref_sq + r, diff_sq + d
    return _ratio(ref_sq, diff_sq)


def dequantization_error(
    weight: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    group_size: int | None = None,
) -> float:
    """:func:`relative_error` of ``weight`` against its int8 (``group_size=None``) or int4
    codes, dequantized a block of rows at a time instead of as a whole float32 copy."""
    out_features, in_features = weight.shape
    ref_sq = diff_sq = 0.0
    for rows in _row_slices(out_features, in_features):
        if group_size is None:
            approx = dequantize_int8(qweight[rows], scales[rows])
        else:
            approx = dequantize_int4(qweight[rows], scales[rows], in_features, group_size)
        r, d = _squared_sums(weight[rows], approx)
        ref_sq, diff_sq = ref_sq + r, diff_sq + d
    return _ratio(ref_sq, diff_sq)
