"""The issue #14.3 attack: a release of a few kilobytes whose config.json declares gigabytes."""

from __future__ import annotations

import json
from pathlib import Path

# The sizes observed in the review: hidden 2048 x 4 layers x vocab 32,000
# (336.6M parameters, 1.35 GB in float32).
HUGE_LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 0,
}


def write_tiny_release_declaring_huge_model(
    folder: Path, tokenizer_from: Path | None = None, *, one_tensor_per_layer: bool = False
) -> Path:
    """``folder`` with the huge config above, a tokenizer (optionally) and tiny weights.

    The weights are the final norm (8 KB): the review's 13 KB release. With
    ``one_tensor_per_layer`` each layer's input norm is stored too (float16, 4 KB each), so
    the layer count looks plausible and only the declared sizes give the attack away.
    """
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(HUGE_LLAMA), encoding="utf-8")
    tensors = {"model.norm.weight": torch.ones(2048)}
    if one_tensor_per_layer:
        for i in range(HUGE_LLAMA["num_hidden_layers"]):  # type: ignore[call-overload]
            tensors[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(
                2048, dtype=torch.float16
            )
    save_file(tensors, str(folder / "model.safetensors"))
    if tokenizer_from is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_from / name).is_file():
                (folder / name).write_bytes((tokenizer_from / name).read_bytes())
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
