"""What each optimized artifact measured in an engine at build time: decode speed and engine
fidelity, as frozen values and as the flat maps the release statement signs.

A record is a fact about one build on one machine, never a promise about another: it names
the engine and its version, the dtype both tiers ran in, the hardware, the date and the token
budget, and says ``not_measured`` (with the reason) rather than leaving a gap. Speed is
decode tokens/s of the artifact and of the open tier in the same engine and the same run, at
each batch size; ``ceiling_ratio`` is the bytes ratio of the 16-bit open weights to the
artifact's weights, the speed-up a memory-bound decoder could reach at most.

In the statement (predicate key ``measurements``, see :func:`measurement_entries`) every key
is ``<tier>.<record>.<field>`` (records ``speed`` and ``vllm_fidelity``) and every value a
short string or an integer; figures are plain decimal strings. The vLLM fidelity figures
themselves sit in the statement's ``fidelity`` map next to the transformers ones
(``vllm_top1_agreement``, ``vllm_mean_kl``, ``vllm_perplexity_ratio``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from licensing.statements import format_decimal

__all__ = [
    "MEASURED",
    "NOT_MEASURED",
    "FAILED",
    "EngineFidelity",
    "RecordStatus",
    "SpeedPoint",
    "SpeedRecord",
    "measurement_entries",
    "measurements_by_tier",
]

RecordStatus = Literal["measured", "not_measured", "failed"]
MEASURED: RecordStatus = "measured"
NOT_MEASURED: RecordStatus = "not_measured"
FAILED: RecordStatus = "failed"
# The statement caps string values at 256 characters; a reason is one line for people.
_MAX_TEXT = 240


def _text(value: str) -> str:
    line = " ".join(value.split())
    return line if len(line) <= _MAX_TEXT else line[: _MAX_TEXT - 1] + "…"


def _decimal(value: float, places: int = 6) -> str:
    return format_decimal(value, places=places)


@dataclass(frozen=True)
class SpeedPoint:
    """Decode tokens/s at one batch size: the artifact's and the open tier's, same engine."""

    batch_size: int
    tokens_per_s: float
    open_tokens_per_s: float

    @property
    def ratio(self) -> float:
        return self.tokens_per_s / self.open_tokens_per_s if self.open_tokens_per_s > 0 else 0.0


@dataclass(frozen=True)
class SpeedRecord:
    """One artifact's decode speed against the open tier (see the module docstring).

    ``open_dtype`` is what the open tier ran in (the 16-bit baseline: ``bfloat16`` in vLLM
    and transformers, ``f16`` GGUF in llama.cpp); ``decode_tokens`` the tokens generated per
    sequence in each timed run beyond the short run subtracted to take prefill out.
    """

    status: RecordStatus
    reason: str = ""
    engine: str = ""
    engine_version: str = ""
    open_dtype: str = ""
    points: tuple[SpeedPoint, ...] = ()
    ceiling_ratio: float = 0.0
    hardware: str = ""
    cores: int = 0
    measured_on: str = ""
    decode_tokens: int = 0
    repetitions: int = 0

    @classmethod
    def not_measured(cls, reason: str, *, engine: str = "") -> SpeedRecord:
        return cls(NOT_MEASURED, reason=_text(reason), engine=engine)

    @classmethod
    def failed(cls, reason: str, *, engine: str = "") -> SpeedRecord:
        return cls(FAILED, reason=_text(reason), engine=engine)

    def ratio_to_ceiling(self, point: SpeedPoint) -> float:
        return point.ratio / self.ceiling_ratio if self.ceiling_ratio > 0 else 0.0

    def point(self, batch_size: int) -> SpeedPoint | None:
        return next((p for p in self.points if p.batch_size == batch_size), None)

    def to_entries(self) -> dict[str, str | int]:
        """The record as ``{field: value}`` (without the tier prefix), for the statement."""
        out: dict[str, str | int] = {"status": self.status}
        if self.engine:
            out["engine"] = self.engine
        if self.status != MEASURED:
            out["reason"] = _text(self.reason) or "no reason given"
            return out
        out |= {
            "engine_version": self.engine_version,
            "open_dtype": self.open_dtype,
            "batch_sizes": ",".join(str(p.batch_size) for p in self.points),
            "ceiling_ratio": _decimal(self.ceiling_ratio, 4),
            "hardware": _text(self.hardware),
            "cores": self.cores,
            "measured_on": self.measured_on,
            "decode_tokens": self.decode_tokens,
            "repetitions": self.repetitions,
        }
        for p in self.points:
            prefix = f"b{p.batch_size}."
            out[prefix + "tokens_per_s"] = _decimal(p.tokens_per_s, 2)
            out[prefix + "open_tokens_per_s"] = _decimal(p.open_tokens_per_s, 2)
            out[prefix + "ratio"] = _decimal(p.ratio, 4)
            out[prefix + "ratio_to_ceiling"] = _decimal(self.ratio_to_ceiling(p), 4)
        return out


@dataclass(frozen=True)
class EngineFidelity:
    """Fidelity of an artifact measured in an engine other than transformers (vLLM), on the
    same held-out windows as the transformers record.

    vLLM returns the top ``top_logprobs`` log-probabilities of each position, not the whole
    distribution, so ``mean_kl`` is KL over those tokens (a lower-bound estimate); top-1
    agreement and the perplexities (from each actual token's log-probability) are exact.
    """

    status: RecordStatus
    reason: str = ""
    engine: str = "vllm"
    engine_version: str = ""
    dtype: str = ""
    positions: int = 0
    top1_agreement: float = 0.0
    mean_kl: float = 0.0
    perplexity_open: float = 0.0
    perplexity_optimized: float = 0.0
    top_logprobs: int = 0
    hardware: str = ""

    @classmethod
    def not_measured(cls, reason: str) -> EngineFidelity:
        return cls(NOT_MEASURED, reason=_text(reason))

    @classmethod
    def failed(cls, reason: str) -> EngineFidelity:
        return cls(FAILED, reason=_text(reason))

    @property
    def perplexity_ratio(self) -> float:
        if not self.perplexity_open:
            return 0.0
        return self.perplexity_optimized / self.perplexity_open

    def fidelity_entries(self) -> dict[str, str]:
        """The figures for the statement's ``fidelity`` map (decimal strings); empty unless
        measured."""
        if self.status != MEASURED:
            return {}
        prefix = f"{self.engine}_"
        return {
            prefix + "top1_agreement": _decimal(self.top1_agreement),
            prefix + "mean_kl": _decimal(self.mean_kl),
            prefix + "perplexity_ratio": _decimal(self.perplexity_ratio),
            prefix + "probe_positions": str(self.positions),
        }

    def to_entries(self) -> dict[str, str | int]:
        """Where the figures came from (or why there are none), for ``measurements``."""
        out: dict[str, str | int] = {"status": self.status, "engine": self.engine}
        if self.status != MEASURED:
            out["reason"] = _text(self.reason) or "no reason given"
            return out
        return out | {
            "engine_version": self.engine_version,
            "dtype": self.dtype,
            "positions": self.positions,
            "top_logprobs": self.top_logprobs,
            "perplexity_open": _decimal(self.perplexity_open),
            "perplexity_optimized": _decimal(self.perplexity_optimized),
            "hardware": _text(self.hardware),
        }


def measurement_entries(
    tier: str, speed: SpeedRecord | None, engine_fidelity: EngineFidelity | None
) -> dict[str, str | int]:
    """One tier's ``measurements`` entries: ``<tier>.speed.<field>`` and
    ``<tier>.vllm_fidelity.<field>`` (see the module docstring)."""
    out: dict[str, str | int] = {}
    if speed is not None:
        out |= {f"{tier}.speed.{k}": v for k, v in speed.to_entries().items()}
    if engine_fidelity is not None:
        name = f"{engine_fidelity.engine}_fidelity"
        out |= {f"{tier}.{name}.{k}": v for k, v in engine_fidelity.to_entries().items()}
    return out


def measurements_by_tier(
    measurements: Mapping[str, str | int],
) -> dict[str, dict[str, dict[str, str]]]:
    """A statement's ``measurements`` map as ``{tier: {record: {field: value}}}`` (values as
    strings); keys that do not have the ``<tier>.<record>.<field>`` shape are skipped."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for key, value in measurements.items():
        tier, _, rest = key.partition(".")
        record, _, name = rest.partition(".")
        if tier and record and name:
            out.setdefault(tier, {}).setdefault(record, {})[name] = str(value)
    return out
