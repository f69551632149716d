"""The GPTQ solver: the dampened inverse Hessian, then the weights quantized column by column,
each column's rounding error spread over the columns not yet quantized
(:mod:`release.calibration` gathers the Hessians, :mod:`release.compressed` stores the result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from release.errors import CalibrationError

if TYPE_CHECKING:
    import torch

__all__ = ["gptq_quantize", "inverse_hessian"]

_DAMPENING = 0.01
_GPTQ_BLOCK = 128


def inverse_hessian(hessian: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of the dampened inverse Hessian (the GPTQ recipe)."""
    import torch

    h = hessian.to(torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += torch.eye(h.shape[0], dtype=h.dtype) * (_DAMPENING * torch.diag(h).mean())
    try:
        lower = torch.linalg.cholesky(h)
        inverse = torch.cholesky_inverse(lower)
        upper: torch.Tensor = torch.linalg.cholesky(inverse, upper=True)
        return upper.to(torch.float32)
    except RuntimeError as exc:  # torch.linalg errors are RuntimeError subclasses
        raise CalibrationError(f"the calibration Hessian is not positive definite: {exc}") from None


def gptq_quantize(
    w: torch.Tensor,
    hinv: torch.Tensor,
    *,
    group: int,
    scale_of: Any,
    qmin: int,
    qmax: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ over the rows ``w`` ``[out, in]`` -> (weights on the grid, scales ``[out, in/group]``).

    ``scale_of(columns)`` gives the scale of a ``[out, group]`` slice as stored (so codes are
    computed against the stored value); ``group`` divides ``_GPTQ_BLOCK``, or is ``in``
    (one scale per row, from the whole row before any compensation).
    """
    import torch

    w = w.to(torch.float32).clone()
    rows, cols = w.shape
    q = torch.zeros_like(w)
    scales = torch.zeros(rows, cols // group)
    per_channel = group >= cols
    if not per_channel and _GPTQ_BLOCK % group:
        raise CalibrationError(f"GPTQ group size {group} does not divide {_GPTQ_BLOCK}")
    scale = scale_of(w) if per_channel else torch.zeros(rows)
    for i1 in range(0, cols, _GPTQ_BLOCK):
        i2 = min(i1 + _GPTQ_BLOCK, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if per_channel:
                scales[:, 0] = scale
            elif i % group == 0:
                # Later columns of the group already carry earlier columns' error.
                scale = scale_of(w1[:, i : i + group])
                scales[:, (i1 + i) // group] = scale
            col = w1[:, i]
            code = torch.clamp(torch.round(col / scale), qmin, qmax) * scale
            q[:, i1 + i] = code
            err = (col - code) / h1[i, i]
            w1[:, i:] -= err.unsqueeze(1) * h1[i, i:].unsqueeze(0)
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q, scales
