"""The optimized artifacts a release can ship, by ``--optimize`` name, and their tier names.

Every artifact is written in a format an engine loads unchanged:

==============  ==========================================  ===============================
name            format                                      engines
==============  ==========================================  ===============================
``int8``        compressed-tensors W8A8 (``int-quantized``)  vLLM, transformers
``int4``        compressed-tensors W4A16 (``pack-quantized``) vLLM, transformers
``bf16``        plain bfloat16 safetensors                  vLLM, transformers, anything
``gguf-q8_0``   GGUF, Q8_0 linear weights                   llama.cpp, Ollama, transformers
``gguf-q4_0``   GGUF, Q4_0 linear weights                   llama.cpp, Ollama, transformers
``gguf-q4_k_m`` GGUF, llama.cpp's Q4_K_M mix (k-quants)     llama.cpp, Ollama, transformers
``gguf-q5_k_m`` GGUF, llama.cpp's Q5_K_M mix (k-quants)     llama.cpp, Ollama, transformers
``gguf-q6_k``   GGUF, llama.cpp's Q6_K (k-quants)           llama.cpp, Ollama, transformers
==============  ==========================================  ===============================

The k-quant artifacts are quantized by llama.cpp's own quantizer (the ``[llamacpp]`` extra)
from an f16 GGUF our writer produces; see :mod:`release.gguf_kquant`.

Tier names: the first artifact of a release is ``optimized`` (the name existing clients and
grants use); each further one is ``optimized_<name>`` with hyphens as underscores
(``optimized_gguf_q4_0``, ``optimized_int4``). No hyphen, because the Hub API's
``<version>-<tier>`` revision (``1.0.0-optimized_gguf_q4_0``) splits at the last hyphen.

Grants: one grant on ``optimized`` opens every ``optimized_<name>`` tier of the release (the
same weights in other formats), unless the publisher names artifacts that need their own
grant (``--own-grant gguf-q4_0``). The signed release statement records those tiers under
``optimization["own_grant"]`` (comma-separated tier names); :func:`grant_tier` is the rule,
applied by the gateway in one place.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from release.errors import BuildOptionsInvalidError, UnknownOptimizationError

__all__ = [
    "GGUF_LLAMACPP_TYPES",
    "GGUF_QUANT_TYPES",
    "OPTIMIZATIONS",
    "PRIMARY_TIER",
    "OWN_GRANT_KEY",
    "Optimization",
    "grant_tier",
    "own_grant_tiers",
    "parse_optimizations",
    "parse_own_grant",
    "tier_names",
]

Engine = Literal["compressed-tensors", "bf16", "gguf"]
PRIMARY_TIER = "optimized"
OWN_GRANT_KEY = "own_grant"
# What the gguf package (0.19) can quantize itself; k-quants (Q4_K_M...) it only dequantizes.
GGUF_QUANT_TYPES = ("q8_0", "q4_0")
# What llama.cpp's quantizer (llama-cpp-python, the [llamacpp] extra) writes for us.
GGUF_LLAMACPP_TYPES = ("q4_k_m", "q5_k_m", "q6_k")


@dataclass(frozen=True)
class Optimization:
    """One optimized artifact kind: its ``--optimize`` name, writer and what it is, in words."""

    name: str
    engine: Engine
    description: str

    @property
    def gguf_type(self) -> str | None:
        return self.name.removeprefix("gguf-") if self.engine == "gguf" else None

    @property
    def needs_llamacpp(self) -> bool:
        """Built by llama.cpp's quantizer (the ``[llamacpp]`` extra), not by ``gguf`` alone."""
        return self.gguf_type in GGUF_LLAMACPP_TYPES


OPTIMIZATIONS: dict[str, Optimization] = {
    "int8": Optimization(
        "int8",
        "compressed-tensors",
        "compressed-tensors W8A8: int8 weights per output channel, int8 activations per token "
        "(dynamic)",
    ),
    "int4": Optimization(
        "int4",
        "compressed-tensors",
        "compressed-tensors W4A16: int4 weights in groups along the input, 16-bit activations",
    ),
    "bf16": Optimization("bf16", "bf16", "every floating tensor in bfloat16"),
    "gguf-q8_0": Optimization(
        "gguf-q8_0", "gguf", "GGUF with Q8_0 linear weights (blocks of 32, one fp16 scale)"
    ),
    "gguf-q4_0": Optimization(
        "gguf-q4_0", "gguf", "GGUF with Q4_0 linear weights (blocks of 32, one fp16 scale)"
    ),
    "gguf-q4_k_m": Optimization(
        "gguf-q4_k_m",
        "gguf",
        "GGUF in llama.cpp's Q4_K_M mix (4-bit k-quants, Q6_K for part of attn_v/ffn_down and "
        "the output head), quantized by llama.cpp",
    ),
    "gguf-q5_k_m": Optimization(
        "gguf-q5_k_m",
        "gguf",
        "GGUF in llama.cpp's Q5_K_M mix (5-bit k-quants, Q6_K for part of attn_v/ffn_down and "
        "the output head), quantized by llama.cpp",
    ),
    "gguf-q6_k": Optimization(
        "gguf-q6_k", "gguf", "GGUF with Q6_K weights (6-bit k-quants), quantized by llama.cpp"
    ),
}


def parse_optimizations(values: str | Iterable[str]) -> tuple[Optimization, ...]:
    """The artifacts asked for, in order, each once; unknown names raise
    :class:`~release.errors.UnknownOptimizationError` naming the known ones."""
    names = [values] if isinstance(values, str) else list(values)
    if not names:
        raise UnknownOptimizationError("no optimization asked for")
    out: list[Optimization] = []
    for name in names:
        found = OPTIMIZATIONS.get(name) if isinstance(name, str) else None
        if found is None:
            hint = ""
            if isinstance(name, str) and name.startswith("gguf-"):
                hint = (
                    f"; GGUF types: {', '.join(GGUF_QUANT_TYPES)} (the gguf package) and "
                    f"{', '.join(GGUF_LLAMACPP_TYPES)} (llama.cpp's quantizer)"
                )
            raise UnknownOptimizationError(
                f"unknown optimization {name!r} (known: {', '.join(OPTIMIZATIONS)}){hint}"
            )
        if found in out:
            raise UnknownOptimizationError(f"optimization {name!r} asked for twice")
        out.append(found)
    return tuple(out)


def tier_names(optimizations: Sequence[Optimization]) -> tuple[str, ...]:
    """``optimized`` for the first artifact, ``optimized_<name>`` for the others."""
    return tuple(
        PRIMARY_TIER if i == 0 else f"{PRIMARY_TIER}_{o.name.replace('-', '_')}"
        for i, o in enumerate(optimizations)
    )


def own_grant_tiers(
    optimizations: Sequence[Optimization], own_grant: Iterable[str]
) -> tuple[str, ...]:
    """Tier names of the artifacts named in ``own_grant`` (``--optimize`` names), checked:
    each must be one of ``optimizations`` and not the first (``optimized`` is always granted
    on its own)."""
    names = dict(zip((o.name for o in optimizations), tier_names(optimizations), strict=True))
    out: list[str] = []
    for name in own_grant:
        tier = names.get(name)
        if tier is None:
            raise BuildOptionsInvalidError(
                f"--own-grant {name!r} is not an artifact of this release "
                f"(built: {', '.join(names)})"
            )
        if tier == PRIMARY_TIER:
            raise BuildOptionsInvalidError(
                f"--own-grant {name!r}: the first artifact is tier {PRIMARY_TIER!r}, which "
                "always has its own grant; name the further artifacts only"
            )
        if tier not in out:
            out.append(tier)
    return tuple(out)


def parse_own_grant(optimization: Mapping[str, object]) -> frozenset[str]:
    """The tiers a release statement's ``optimization`` map says need their own grant."""
    value = optimization.get(OWN_GRANT_KEY)
    if not isinstance(value, str) or not value:
        return frozenset()
    return frozenset(t for t in value.split(",") if t)


def grant_tier(tier: str, own_grant: Collection[str] = ()) -> str:
    """The tier whose grant opens ``tier``: ``optimized`` for a further optimized artifact
    (``optimized_<name>``) unless the publisher gave it its own grant; any other tier is
    its own."""
    if tier in own_grant:
        return tier
    return PRIMARY_TIER if tier.startswith(PRIMARY_TIER + "_") else tier
