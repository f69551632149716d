"""Comparing an artifact with the open tier the way a user loads both, for the format tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from release.fidelity import held_out_texts


def logits_of(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=ids).logits
    return logits.to(torch.float64)


def held_out_ids(model_dir: Path, count: int = 96) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tokenizer(" ".join(held_out_texts()))["input_ids"][:count]
    return torch.tensor([ids])


def top1_agreement(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    return float((reference.argmax(-1) == candidate.argmax(-1)).double().mean())


def plain_from_pretrained(folder: Path, **kw: Any) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
    model.train(False)
    return model
