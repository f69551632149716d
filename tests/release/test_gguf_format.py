"""The GGUF artifacts: llama.cpp's format with its own tokenizer, loaded by transformers.

Every artifact is loaded the way a user loads it (``from_pretrained(..., gguf_file=)``) and
compared with the open tier on held-out text; what GGUF cannot express is refused before any
file is written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from release.errors import (
    UnsupportedArchitectureError,
    UnsupportedTokenizerError,
)
from release.fidelity import held_out_texts
from release.gguf_export import write_gguf_tier
from release.loader import load_model
from tests.release.format_checks import (
    logits_of,
    plain_from_pretrained,
    top1_agreement,
)


@pytest.mark.parametrize(
    ("fixture", "quant", "min_agreement"),
    [
        ("tiny_llama", "q8_0", 0.97),
        ("tiny_llama", "q4_0", 0.85),
        ("tiny_gpt2_sharded", "q8_0", 0.97),
    ],
)
def test_gguf_loads_in_transformers_with_its_own_tokenizer(
    fixture: str, quant: str, min_agreement: float, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import gguf
    from transformers import AutoTokenizer

    source: Path = request.getfixturevalue(fixture)
    tier = write_gguf_tier(source, tmp_path / "g", quant_type=quant, show_progress=False)
    assert tier.weight_files == (f"model-{quant}.gguf",)
    path = tmp_path / "g" / tier.weight_files[0]
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "gpt2"
    assert "tokenizer.ggml.merges" in fields
    assert "tokenizer.ggml.tokens" in fields
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["token_embd.weight"] == "F16"  # embeddings kept in higher precision
    assert kinds["blk.0.ffn_down.weight"] == quant.upper()
    text = " ".join(held_out_texts())[:400]
    own = AutoTokenizer.from_pretrained(str(tmp_path / "g"), gguf_file=path.name)
    ids = AutoTokenizer.from_pretrained(str(source))(text, return_tensors="pt")["input_ids"]
    assert own(text)["input_ids"] == ids[0].tolist()
    reference = logits_of(plain_from_pretrained(source), ids[:, :96])
    loaded = logits_of(load_model(tmp_path / "g"), ids[:, :96])
    assert top1_agreement(reference, loaded) >= min_agreement


def _copy_editing(model: Path, dest: Path, name: str, **changes: Any) -> dict[str, Any]:
    """A copy of ``model`` at ``dest`` whose JSON file ``name`` has ``changes``; that document."""
    shutil.copytree(model, dest)
    doc: dict[str, Any] = json.loads((dest / name).read_text())
    doc.update(changes)
    (dest / name).write_text(json.dumps(doc))
    return doc


def test_gguf_embeds_the_chat_template(tiny_llama: Path, tmp_path: Path) -> None:
    import gguf

    source = tmp_path / "src"
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    config = _copy_editing(tiny_llama, source, "tokenizer_config.json", chat_template=template)
    tier = write_gguf_tier(source, tmp_path / "g", show_progress=False)
    fields = gguf.GGUFReader(str(tmp_path / "g" / tier.weight_files[0])).fields
    embedded = bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    assert embedded == config["chat_template"] == template


def test_gguf_refuses_an_unsupported_architecture(tiny_llama: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    _copy_editing(tiny_llama, source, "config.json", model_type="mistral")
    with pytest.raises(UnsupportedArchitectureError, match=r"gguf-q8_0 \(llama.cpp"):
        write_gguf_tier(source, tmp_path / "g")
    assert not (tmp_path / "g").exists()


def _word_level_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))


def _metaspace_bpe(folder: Path) -> None:
    doc = json.loads((folder / "tokenizer.json").read_text())
    doc["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}
    (folder / "tokenizer.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("spoil", [_word_level_tokenizer, _metaspace_bpe])
def test_gguf_refuses_a_tokenizer_it_cannot_express_before_writing(
    spoil: Callable[[Path], None], tiny_llama: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_llama, source)
    spoil(source)
    with pytest.raises(UnsupportedTokenizerError) as caught:
        write_gguf_tier(source, tmp_path / "g")
    assert caught.value.code == "unsupported_tokenizer"
    assert not (tmp_path / "g").exists()
