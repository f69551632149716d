"""torch implementation of the tg-kgw-v1 PRF: int64/int32 wrapping arithmetic, no RNG, no sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from watermark._private.np_prf import PrfTables
from watermark.prf import GOLDEN, MUL1, MUL2

if TYPE_CHECKING:
    import torch

_M32 = 0xFFFFFFFF
_SIGN32 = 1 << 31


def signed64(value: int) -> int:
    """The int64 whose two's-complement bits equal the uint64 ``value``."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_MUL1 = signed64(MUL1)
_MUL2 = signed64(MUL2)
_GOLDEN = signed64(GOLDEN)


def mix64_(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finalizer in place on int64; arithmetic shifts are masked to be logical."""
    z.bitwise_xor_((z >> 30) & ((1 << 34) - 1))
    z.mul_(_MUL1)
    z.bitwise_xor_((z >> 27) & ((1 << 37) - 1))
    z.mul_(_MUL2)
    z.bitwise_xor_((z >> 31) & ((1 << 33) - 1))
    return z


def to_signed32(u: torch.Tensor) -> torch.Tensor:
    """uint32 values held in int64 -> the int32 with the same bits (exact, no overflow)."""
    import torch

    return ((u & _M32) ^ _SIGN32).sub_(_SIGN32).to(torch.int32)


@dataclass(frozen=True)
class DeviceTables:
    """Tables of one key on one device; built once per processor and device."""

    t32: torch.Tensor  # (V,) int32: T32 bits
    t64: torch.Tensor | None  # (V,) int64: self-seeded only
    ctx: torch.Tensor  # (h, V) int64: W_j bits
    ctx1_x: torch.Tensor | None  # (V,) int64: X after one token, h == 1 only
    ctx1_ab: torch.Tensor | None  # (V, 2) int32: A, B + 2**31 after one token, h == 1 only


def device_tables(tables: PrfTables, device: torch.device, *, self_seeded: bool) -> DeviceTables:
    import torch

    def put(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, copy=True)).to(device)

    t32 = put(tables.t32.view(np.int32))
    t64 = put(tables.t64.view(np.int64)) if self_seeded else None
    ctx = put(tables.ctx.view(np.int64))
    ctx1_x = ctx1_ab = None
    if tables.ctx1_x is not None:
        x = tables.ctx1_x
        a = ((x & np.uint64(_M32)) | np.uint64(1)).astype(np.uint32)
        b = ((x >> np.uint64(32)) + np.uint64(_SIGN32)).astype(np.uint32)
        ctx1_x = put(x.view(np.int64))
        ctx1_ab = put(np.stack([a, b], axis=1).view(np.int32))
    return DeviceTables(t32=t32, t64=t64, ctx=ctx, ctx1_x=ctx1_x, ctx1_ab=ctx1_ab)


def context_x(input_ids: torch.Tensor, tables: DeviceTables, h: int) -> torch.Tensor:
    """Context word X (int64, shape (B,)) of the next token of every row."""
    if tables.ctx1_x is not None:
        return tables.ctx1_x[input_ids[:, -1]]
    total = tables.ctx[0][input_ids[:, -1]].clone()
    for j in range(2, h + 1):
        total.add_(tables.ctx[j - 1][input_ids[:, -j]])
    return mix64_(total)


def slot_index(x: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Payload slot of each context word, as :func:`watermark.prf.slot_of`."""
    s = mix64_(x + _GOLDEN)
    return ((s >> 32) & _M32) % num_slots


def _left_ab(
    input_ids: torch.Tensor,
    tables: DeviceTables,
    h: int,
    offset: torch.Tensor | None,
    x: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B + 2**31 - offset) of every row as int32 columns of shape (B, 1)."""
    if tables.ctx1_ab is not None and offset is None:
        ab = tables.ctx1_ab[input_ids[:, -1]]
        return ab[:, 0:1], ab[:, 1:2]
    if x is None:
        x = context_x(input_ids, tables, h)
    a = to_signed32((x & _M32) | 1).unsqueeze(1)
    b_u = ((x >> 32) & _M32) + _SIGN32
    if offset is not None:
        b_u = b_u - offset
    return a, to_signed32(b_u).unsqueeze(1)


def favoured_left(
    input_ids: torch.Tensor,
    tables: DeviceTables,
    h: int,
    threshold: int,
    offset: torch.Tensor | None,
    x: torch.Tensor | None = None,
    words: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """0/1 (B, V): whether each candidate is in the favoured list (left-seeded scheme).

    ``words`` (int32) and ``mask`` (the dtype of the logits) are optional scratch buffers;
    writing the compare straight into the logits' dtype keeps the later add vectorized
    (a float += int add is several times slower on CPU).

    The test ``(A*T + B - offset) mod 2**32 < threshold`` on unsigned words equals the signed
    int32 test ``A*T + (B + 2**31 - offset) < threshold - 2**31``: the bias is folded into B,
    so the B x V work is a multiply, an add and a compare, all in one int32 buffer.
    """
    import torch

    a, b = _left_ab(input_ids, tables, h, offset, x)
    # mul + add_ rather than addcmul: integer addcmul is not vectorized on CPU (6x slower).
    signed = torch.mul(tables.t32, a, out=words).add_(b)
    if mask is None:
        return signed.lt_(threshold - _SIGN32)
    return torch.lt(signed, threshold - _SIGN32, out=mask)


def favoured_self(
    input_ids: torch.Tensor,
    tables: DeviceTables,
    h: int,
    threshold: int,
    offset: torch.Tensor | None,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """0/1 int64 (B, V) for the self-seeded scheme: a full mix per candidate."""
    assert tables.t64 is not None
    if x is None:
        x = context_x(input_ids, tables, h)
    z = mix64_(x.unsqueeze(1) ^ tables.t64)
    w = (z >> 32) & _M32
    if offset is not None:
        w.sub_(offset.unsqueeze(1)).bitwise_and_(_M32)
    return w.lt_(threshold)
