"""The quantized linear module of the optimized tier, and how to build models around it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from release._quant_kernels import dequantize_int4, dequantize_int8

__all__ = ["QuantizedLinear", "int8_kernel_available", "params_on_meta"]


def int8_kernel_available() -> bool:
    """Whether this torch has the CPU weight-only int8 matmul (``_weight_int8pack_mm``)."""
    return hasattr(torch, "_weight_int8pack_mm")


class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as int8 per-row or packed int4 group-wise codes.

    int8 uses ``torch._weight_int8pack_mm`` (int8 weights, float activations, per-row scales)
    when available and the input has at most ``kernel_max_rows`` rows (tokens); otherwise,
    and always for int4, the weight is dequantized for the matmul and dropped right after, so
    memory stays at the packed size. The row limit exists because the CPU kernel's cost grows
    linearly with the rows on machines without VNNI/AMX (bench/release_quantize.py): it wins
    for token-by-token decoding, dequantize-then-matmul wins for prompts.
    """

    kernel_max_rows: int | None = 4

    qweight: torch.Tensor
    scales: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bits: int,
        group_size: int | None = None,
        bias: bool = True,
        use_kernel: bool = True,
        kernel_max_rows: int | None = 4,
    ) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"unsupported bits {bits}")
        if bits == 4 and (group_size is None or in_features % group_size):
            raise ValueError("int4 needs a group_size dividing in_features")
        self.in_features = in_features
        self.out_features = out_features
        self.bits = bits
        self.group_size = group_size
        self.use_kernel = use_kernel
        self.kernel_max_rows = kernel_max_rows
        if bits == 8:
            self.register_buffer(
                "qweight", torch.zeros(out_features, in_features, dtype=torch.int8)
            )
            self.register_buffer("scales", torch.ones(out_features, dtype=torch.float32))
        else:
            assert group_size is not None
            packed = (in_features + 1) // 2
            self.register_buffer("qweight", torch.zeros(out_features, packed, dtype=torch.uint8))
            groups = in_features // group_size
            self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.float16))
        self.bias: nn.Parameter | None = (
            nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        )

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.bits == 4 else ""
        sizes = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{sizes}, bits={self.bits}{group}"

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 ``[out, in]`` weight these codes stand for (the numerics reference)."""
        if self.bits == 8:
            return dequantize_int8(self.qweight, self.scales)
        assert self.group_size is not None
        return dequantize_int4(self.qweight, self.scales, self.in_features, self.group_size)

    def _kernel_ok(self, x: torch.Tensor) -> bool:
        return (
            self.use_kernel
            and self.bits == 8
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and int8_kernel_available()
            and (
                self.kernel_max_rows is None
                or x.numel() // self.in_features <= self.kernel_max_rows
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._kernel_ok(x):
            flat = x.reshape(-1, self.in_features).contiguous()
            out = torch._weight_int8pack_mm(flat, self.qweight, self.scales.to(x.dtype))
            out = out.reshape(*x.shape[:-1], self.out_features)
            if self.bias is not None:
                out = out + self.bias.to(out.dtype)
            return out
        weight = self.dequantized_weight().to(x.dtype)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return nn.functional.linear(x, weight, bias)


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Create module parameters on the meta device; buffers stay real.

    Building the architecture this way costs no weight memory, while computed non-persistent
    buffers (rotary frequencies, causal masks), which no checkpoint holds, keep their values.
    Not thread-safe: it patches ``nn.Module.register_parameter`` for the duration.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            kwargs: dict[str, Any] = {"requires_grad": param.requires_grad}
            module._parameters[name] = type(param)(param.to("meta"), **kwargs)

    nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]
