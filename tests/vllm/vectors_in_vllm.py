"""Run with the vLLM environment's python: the published tg-kgw-v1 vectors through the plugin.

vLLM's own ``SamplingParams`` and ``BatchUpdate`` drive the installed plugin class (the
``tiergate-watermark`` wheel, not this checkout) on zero logits; a candidate is green exactly
when its logit comes back biased. Prints one JSON line: cases checked and failures.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

VOCAB = 128256  # the vectors use ids up to 128255 (a Llama-3 vocabulary)


def _processor(entry: Any, keyset_dir: Path, name: str) -> Any:
    from watermark.keyset import WatermarkKeySet, write_keyset
    from watermark.vllm_plugin import KEYSET_ENV, TiergateWatermarkLogitsProcessor

    path = keyset_dir / f"{name}.json"
    write_keyset(path, WatermarkKeySet([entry]))
    os.environ[KEYSET_ENV] = str(path)
    config = SimpleNamespace(
        model_config=SimpleNamespace(
            get_vocab_size=lambda: VOCAB,
            hf_text_config=SimpleNamespace(eos_token_id=0),
            try_get_generation_config=dict,
        )
    )
    import torch

    return TiergateWatermarkLogitsProcessor(config, torch.device("cpu"), False)


def _run(processor: Any, rows: list[tuple[list[int], list[int], dict[str, Any]]]) -> Any:
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    added = []
    for index, (prompt, output, args) in enumerate(rows):
        params = SamplingParams(temperature=0.0, max_tokens=1, extra_args=args)
        type(processor).validate_params(params)
        added.append((index, params, prompt, output))
    processor.update_state(BatchUpdate(batch_size=len(rows), removed=[], added=added, moved=[]))
    logits = torch.zeros(len(rows), VOCAB)
    return processor.apply(logits)


def main() -> int:
    from watermark.config import PayloadSettings, WatermarkConfig
    from watermark.keys import WatermarkKey
    from watermark.keyset import KeySetEntry
    from watermark.payload import payload_symbols

    vectors = json.loads(
        resources.files("watermark").joinpath("vectors/tg-kgw-v1.json").read_text()
    )
    settings = PayloadSettings(**vectors["payload_settings"])
    checked, failures = 0, []
    with tempfile.TemporaryDirectory() as scratch:
        for k, entry in enumerate(vectors["keys"]):
            key = WatermarkKey.from_hex(entry["secret_hex"])
            combos = sorted({(len(c["context"]), c["self_seeded"]) for c in entry["cases"]})
            for width, self_seeded in combos:
                cases = [
                    c
                    for c in entry["cases"]
                    if len(c["context"]) == width and c["self_seeded"] == self_seeded
                ]
                # The context is split between prompt and output in every possible way: the
                # plugin must read the last tokens across that boundary.
                splits = [(c, cut) for c in cases for cut in range(width + 1)]
                for gamma in (0.25, 0.5):
                    config = WatermarkConfig.create(
                        key,
                        VOCAB,
                        gamma=gamma,
                        delta=1.0,
                        context_width=width,
                        self_seeded=self_seeded,
                    )
                    processor = _processor(
                        KeySetEntry(key, config), Path(scratch), f"z{k}{width}{self_seeded}{gamma}"
                    )
                    rows = [
                        (c["context"][:cut], c["context"][cut:], {"tiergate_key_id": key.key_id})
                        for c, cut in splits
                    ]
                    out = _run(processor, rows)
                    for r, (case, cut) in enumerate(splits):
                        green = bool(out[r, case["candidate"]] == 1.0)
                        checked += 1
                        if green != case[f"green_gamma_{gamma}"]:
                            failures.append([entry["key_id"], case, cut, gamma])
                config = WatermarkConfig.create(
                    key,
                    VOCAB,
                    delta=1.0,
                    context_width=width,
                    self_seeded=self_seeded,
                    payload=settings,
                )
                processor = _processor(
                    KeySetEntry(key, config), Path(scratch), f"p{k}{width}{self_seeded}"
                )
                for item in vectors["payloads"]:
                    symbols = payload_symbols(item["payload"], settings)
                    if list(symbols) != item["symbols"]:
                        failures.append(["payload symbols", item])
                    args = {"tiergate_key_id": key.key_id, "tiergate_payload": item["payload"]}
                    out = _run(processor, [(c["context"], [], args) for c in cases])
                    for r, case in enumerate(cases):
                        favoured = bool(out[r, case["candidate"]] == 1.0)
                        expected = case["colour_b2"] == symbols[case["slot_L14"]]
                        checked += 1
                        if favoured != expected:
                            failures.append([entry["key_id"], case, item["payload"]])
    import watermark

    print(
        json.dumps({"checked": checked, "failures": failures, "watermark_file": watermark.__file__})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
