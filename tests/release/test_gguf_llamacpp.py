"""The GGUF tiers inside llama.cpp itself (``llama-cpp-python``), loaded as the card says.

Each artifact of the tests' tiny Llama and GPT-2 is exported, opened with ``llama_cpp.Llama``
exactly as the card's snippet does, made to generate, and its logits on held-out text are
compared with the open tier's (transformers, float32) against the artifact's own fidelity
record: llama.cpp must keep the promise the record makes. The embedded tokenizer and chat
template are checked against the Hugging Face tokenizer's.

llama-cpp-python is compiled from source (``make llamacpp``); without it these tests skip,
unless ``TIERGATE_REQUIRE_LLAMACPP=1`` (CI), which makes them fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from release.fidelity import OptimizedTier, _probe_batch, build_optimized_tier, held_out_texts
from release.model_card import TierCard, _usage_lines

REQUIRED = os.environ.get("TIERGATE_REQUIRE_LLAMACPP") == "1"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def llama_cpp() -> ModuleType:
    try:
        import llama_cpp
    except ImportError as exc:
        if REQUIRED:
            pytest.fail(f"TIERGATE_REQUIRE_LLAMACPP=1 but llama_cpp does not import: {exc}")
        pytest.skip(f"llama-cpp-python is not installed (make llamacpp): {exc}")
    return llama_cpp


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained Llama whose rows are whole 256-blocks (hidden 256, MLP 768), so llama.cpp's
    k-quants apply as such; the tiny models' 128-wide rows fall back to 32-block types."""
    from release.testing import build_tiny_model
    from tests.release.conftest import TRAIN_STEPS, one_thread

    with one_thread():
        return build_tiny_model(
            tmp_path_factory.mktemp("wide") / "model",
            arch="llama",
            hidden_size=256,
            num_layers=2,
            train_steps=TRAIN_STEPS,
        )


@pytest.fixture(scope="module")
def chat_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a chat template that uses its special tokens."""
    source = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(tiny_llama, source)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = CHAT_TEMPLATE
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    return source


def _card_python_snippet(tier: OptimizedTier, tier_name: str) -> str:
    """The card's llama-cpp-python snippet for this artifact (what a user copies)."""
    from release.manifest import TierManifest

    card = TierCard(
        name=tier_name,
        manifest=TierManifest(()),
        gated=True,
        artifact=tier.quantized.method,
        weight_files=tier.quantized.weight_files,
    )
    text = "\n".join(_usage_lines("acme/tiny", "1.0.0", card))
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    (snippet,) = [b for b in blocks if "llama_cpp" in b]
    return str(snippet)


def _run_card_snippet(snippet: str, download: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the snippet where the card's ``tiergate pull --out`` put the download."""
    monkeypatch.chdir(download.parent)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "<model card>", "exec"), namespace)  # noqa: S102 - our own card text
    return namespace["llm"]


def _build(source: Path, out: Path, method: str) -> OptimizedTier:
    return build_optimized_tier(source, out, method=method, show_progress=False)


def _llama_logits(llm: Any, windows: torch.Tensor) -> torch.Tensor:
    rows = []
    for window in windows.tolist():
        llm.reset()
        llm.eval(window)
        rows.append(torch.from_numpy(np.array(llm.scores[: len(window)], dtype=np.float64)))
    return torch.stack(rows)


def _open_logits(source: Path, windows: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    model.train(False)
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=windows).logits
    return logits.to(torch.float64)


def _scores(
    reference: torch.Tensor, candidate: torch.Tensor, windows: torch.Tensor
) -> dict[str, float]:
    ref = torch.log_softmax(reference, -1)
    cand = torch.log_softmax(candidate, -1)
    target = windows[:, 1:].unsqueeze(-1)
    nll_ref = -ref[:, :-1].gather(-1, target).mean()
    nll_cand = -cand[:, :-1].gather(-1, target).mean()
    return {
        "top1": float((ref.argmax(-1) == cand.argmax(-1)).double().mean()),
        "kl": float((ref.exp() * (ref - cand)).sum(-1).clamp_min(0).mean()),
        "ppl_ratio": float(torch.exp(nll_cand - nll_ref)),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fixture", "method"),
    [
        ("tiny_llama", "gguf-q8_0"),
        ("tiny_llama", "gguf-q4_0"),
        ("tiny_gpt2_sharded", "gguf-q8_0"),
        ("tiny_gpt2_sharded", "gguf-q4_0"),
        # k-quants, quantized by llama.cpp's own quantizer from our f16 export.
        ("wide_llama", "gguf-q4_k_m"),
        ("wide_llama", "gguf-q5_k_m"),
        ("wide_llama", "gguf-q6_k"),
        ("tiny_llama", "gguf-q4_k_m"),
        ("tiny_gpt2_sharded", "gguf-q4_k_m"),
    ],
)
def test_llamacpp_loads_the_artifact_as_the_card_says_and_keeps_its_fidelity_record(
    fixture: str,
    method: str,
    llama_cpp: ModuleType,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source: Path = request.getfixturevalue(fixture)
    tier_name = "optimized_" + method.replace("-", "_")
    # Where `tiergate pull ... --out ./tiny-<tier>` puts it.
    download = tmp_path / f"tiny-{tier_name}"
    tier = _build(source, download, method)
    llm = _run_card_snippet(_card_python_snippet(tier, tier_name), download, monkeypatch)
    assert isinstance(llm, llama_cpp.Llama)

    # It generates (greedy, so the same call gives the same text).
    first = llm("The release of a model", max_tokens=8, temperature=0.0)
    second = llm("The release of a model", max_tokens=8, temperature=0.0)
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["usage"]["completion_tokens"] >= 1

    # Logits on the fidelity record's own held-out windows (shortened to the context).
    config = json.loads((source / "config.json").read_text())
    vocab = int(config["vocab_size"])
    windows = _probe_batch(source, held_out_texts(), 64, 4, vocab)
    scoring = llama_cpp.Llama(
        model_path=str(download / tier.quantized.weight_files[0]),
        n_ctx=64,
        logits_all=True,
        n_threads=1,
        verbose=False,
    )
    got = _scores(_open_logits(source, windows), _llama_logits(scoring, windows), windows)
    record = tier.fidelity
    # 4-bit flips a few near-ties more than 8-bit; 256 positions, one flip is 0.4 points.
    slack = 0.02 if method.endswith(("q8_0", "q6_k")) else 0.05
    assert got["top1"] >= record.top1_agreement - slack, (got, record)
    assert abs(got["ppl_ratio"] - record.perplexity_ratio) <= slack / 2, (got, record)
    assert got["kl"] <= max(4 * record.mean_kl, 1e-3), (got, record)


def test_llamacpp_tokenizes_like_the_hugging_face_tokenizer(
    chat_llama: Path, llama_cpp: ModuleType, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tier = _build(chat_llama, tmp_path / "g", "gguf-q8_0")
    llm = llama_cpp.Llama(
        model_path=str(tmp_path / "g" / tier.quantized.weight_files[0]),
        vocab_only=True,
        verbose=False,
    )
    hf = AutoTokenizer.from_pretrained(str(chat_llama))
    texts = [
        " ".join(held_out_texts())[:600],
        "Special <|endoftext|> inside, tabs\tand  double  spaces, digits 12345 and ünïcödé!",
        "  leading spaces and a trailing newline\n",
    ]
    for text in texts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert ids == hf(text, add_special_tokens=False)["input_ids"], text
        assert llm.detokenize(ids, special=True).decode("utf-8") == hf.decode(ids)
        with_specials = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        assert with_specials == hf(text)["input_ids"], text
    assert llm.token_bos() == hf.bos_token_id
    assert llm.token_eos() == hf.eos_token_id


def test_llamacpp_applies_the_embedded_chat_template(
    chat_llama: Path, llama_cpp: ModuleType, tmp_path: Path
) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoTokenizer

    tier = _build(chat_llama, tmp_path / "g", "gguf-q8_0")
    llm = llama_cpp.Llama(
        model_path=str(tmp_path / "g" / tier.quantized.weight_files[0]), n_ctx=128, verbose=False
    )
    assert llm.metadata["tokenizer.chat_template"] == CHAT_TEMPLATE
    # Without chat_format, llama-cpp-python picks the template embedded in the file.
    assert llm.chat_format == "chat_template.default"
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a tier."},
    ]
    hf = AutoTokenizer.from_pretrained(str(chat_llama))
    expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm.detokenize([llm.token_eos()], special=True).decode(),
        bos_token=llm.detokenize([llm.token_bos()], special=True).decode(),
    )
    assert formatter(messages=messages).prompt == expected
    reply = llm.create_chat_completion(messages=messages, max_tokens=4, temperature=0.0)
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["prompt_tokens"] == len(
        hf(expected, add_special_tokens=False)["input_ids"]
    )


def test_gguf_f16_baseline_keeps_every_weight_in_float16(tiny_llama: Path, tmp_path: Path) -> None:
    """The unquantized GGUF the speed benchmark compares llama.cpp's q8_0 / q4_0 with."""
    import gguf

    from release.gguf_export import write_gguf_tier
    from release.loader import load_model

    tier = write_gguf_tier(tiny_llama, tmp_path / "g", quant_type="f16", show_progress=False)
    assert tier.weight_files == ("model-f16.gguf",)
    assert tier.modules == ()
    reader = gguf.GGUFReader(str(tmp_path / "g" / "model-f16.gguf"))
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert {k for n, k in kinds.items() if n.endswith("norm.weight")} == {"F32"}
    assert {k for n, k in kinds.items() if not n.endswith("norm.weight")} == {"F16"}
    windows = _probe_batch(tiny_llama, held_out_texts(), 64, 2, 1024)
    got = _scores(
        _open_logits(tiny_llama, windows),
        _gguf_logits(load_model(tmp_path / "g"), windows),
        windows,
    )
    assert got["top1"] >= 0.99
    assert got["kl"] < 1e-4


def _gguf_logits(model: Any, windows: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=windows).logits
    return logits.to(torch.float64)


def test_kquant_is_written_by_llamacpps_quantizer_with_its_mix_and_recorded(
    wide_llama: Path, llama_cpp: ModuleType, tmp_path: Path
) -> None:
    """Q4_K_M: llama.cpp's mix (Q4_K, Q6_K for the output head and part of attn_v/ffn_down),
    the embedded tokenizer and chat template carried over, the quantizer named."""
    import gguf

    from release.gguf_kquant import quantizer_version

    source = tmp_path / "chat"
    shutil.copytree(wide_llama, source)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = CHAT_TEMPLATE
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    tier = _build(source, tmp_path / "g", "gguf-q4_k_m")
    quantized = tier.quantized
    assert quantized.weight_files == ("model-q4_k_m.gguf",)
    # The same companions as every GGUF tier: config.json and the tokenizer files.
    companions = {p.name for p in source.iterdir() if p.suffix != ".safetensors"}
    assert {p.name for p in (tmp_path / "g").iterdir()} == companions | {"model-q4_k_m.gguf"}
    assert not list(tmp_path.glob(".g.f16-*"))  # the f16 staging file is gone
    assert quantized.quantizer == quantizer_version(llama_cpp)
    assert quantized.quantizer.startswith("llama.cpp ")
    assert quantized.quantization_config["quantizer"] == quantized.quantizer
    kinds = dict(quantized.modules)
    assert set(kinds.values()) == {"q4_k", "q6_k"}, kinds
    assert kinds["model.embed_tokens"] == "q6_k"  # tied: it is the output head too
    assert kinds["model.layers.0.self_attn.q_proj"] == "q4_k"
    # The tensor errors are measured against the open weights: 4-bit with 6-bit parts.
    errors = dict(quantized.tensor_errors)
    assert 0.01 < errors["model.layers.0.self_attn.q_proj.weight"] < 0.2
    assert errors["model.norm.weight"] == 0.0

    reader = gguf.GGUFReader(str(tmp_path / "g" / "model-q4_k_m.gguf"))
    fields = reader.fields
    assert fields["tokenizer.chat_template"].contents() == CHAT_TEMPLATE
    assert fields["general.file_type"].contents() == int(llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M)
    # Half the size of f16 or less, and the record says transformers' GGUF loader (which
    # dequantizes Q4_K/Q6_K itself) agrees with the open tier.
    assert tier.fidelity.size_ratio < 0.2
    assert tier.fidelity.top1_agreement >= 0.9


def test_release_statement_and_card_name_the_quantizer(
    wide_llama: Path, llama_cpp: ModuleType, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from licensing.keys import PrivateKey
    from release.build import BuildOptions, build_release
    from release.gguf_kquant import quantizer_version

    built = build_release(
        wide_llama,
        tmp_path / "r",
        key=PrivateKey.generate(),
        options=BuildOptions(repo_id="acme/wide", version="1.0.0", optimize=("gguf-q4_k_m",)),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    version = quantizer_version(llama_cpp)
    assert built.statement.optimization["method"] == "gguf-q4_k_m"
    assert built.statement.optimization["quantizer"] == version
    card = (tmp_path / "r" / "open" / "README.md").read_text()
    assert f"Quantized by {version}." in card
    assert "FROM ./wide-optimized/model-q4_k_m.gguf" in card
