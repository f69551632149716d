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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
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


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 of a ``[out, in]`` weight -> (qweight, scales)."""
    import torch

    w = weight.detach().to(torch.float32)
    scales = (w.abs().amax(dim=1) / 127.0).clamp_min(_MIN_SCALE)
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scales.contiguous()


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
    w = weight.detach().to(torch.float32).reshape(out_features, -1, group_size)
    scales = (w.abs().amax(dim=2) / 7.0).clamp_min(_MIN_SCALE)
    # float16 scales: store them as they will be used, so the error we report is the real one.
    scales = scales.to(torch.float16)
    codes = torch.round(w / scales.to(torch.float32)[:, :, None]).clamp_(-7, 7).to(torch.int8)
    return pack_int4(codes.reshape(out_features, in_features)), scales.contiguous()


def dequantize_int4(
    qweight: torch.Tensor, scales: torch.Tensor, in_features: int, group_size: int
) -> torch.Tensor:
    """float32 ``[out, in_features]`` weight from packed int4 codes and group scales."""
    import torch

    codes = unpack_int4(qweight, in_features).to(torch.float32)
    out_features = codes.shape[0]
    grouped = codes.reshape(out_features, -1, group_size) * scales.to(torch.float32)[:, :, None]
    return grouped.reshape(out_features, in_features)


def relative_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``||reference - approx||_F / ||reference||_F`` in float64 (0 for an all-zero reference)."""
    import torch

    ref = reference.detach().to(torch.float64)
    norm = float(torch.linalg.vector_norm(ref))
    if norm == 0.0:
        return 0.0
    return float(torch.linalg.vector_norm(ref - approx.detach().to(torch.float64))) / norm
