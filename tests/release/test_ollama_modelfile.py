"""The card's Ollama Modelfile for a GGUF artifact.

Ollama itself is not run: it is not on PyPI or in Debian, and its release binary is a
download from GitHub, which this project's CI does not fetch. So the Modelfile is read with
a parser written from Ollama's Modelfile reference and its TEMPLATE rendered with Go's
``text/template`` semantics (``tests/release/ollama_spec.py``), and held to what the model's
own chat template (Jinja, through transformers) renders for the same chats.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from release.gguf_export import write_gguf_tier
from release.manifest import TierManifest
from release.model_card import TierCard, _usage_lines
from release.ollama import OllamaChat, chat_from_gguf, chat_from_template, render_modelfile
from tests.release.ollama_spec import ollama_prompt, parse_modelfile, render_go_template

SPECIAL = "<|endoftext|>"  # the tiny tokenizer's only special token (bos = eos)
ROLE_TAGS = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Llama 3's shape: content trimmed, which a Go template cannot do.
TRIMMING = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
    "'<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)
CHATS = [
    [{"role": "user", "content": "Name a tier."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a tier."}],
    [
        {"role": "system", "content": 'You answer in {{ braces }} and "quotes".'},
        {"role": "user", "content": "first\nline"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "  and again  "},
    ],
]


def _with_template(tiny_llama: Path, root: Path, template: str) -> Path:
    source = root / "model"
    shutil.copytree(tiny_llama, source)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    return source


def _card_modelfile(chat: OllamaChat | None, tier_name: str, gguf: str) -> str:
    card = TierCard(
        name=tier_name,
        manifest=TierManifest(()),
        gated=True,
        artifact="gguf-q8_0",
        weight_files=(gguf,),
        ollama=chat,
    )
    text = "\n".join(_usage_lines("acme/tiny", "1.0.0", card))
    (block,) = re.findall(r"```\n(FROM .*?)\n```", text, flags=re.DOTALL)
    return str(block)


@pytest.mark.parametrize("template", [ROLE_TAGS, CHATML], ids=["role-tags", "chatml"])
def test_modelfile_from_the_gguf_formats_chats_as_the_embedded_template_does(
    template: str, tiny_llama: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    source = _with_template(tiny_llama, tmp_path, template)
    tier_name = "optimized_gguf_q8_0"
    download = tmp_path / f"tiny-{tier_name}"  # where `tiergate pull --out` puts it
    tier = write_gguf_tier(source, download, quant_type="q8_0", show_progress=False)
    chat = chat_from_gguf(download / tier.weight_files[0])
    text = _card_modelfile(chat, tier_name, tier.weight_files[0])
    (tmp_path / "Modelfile").write_text(text)  # "next to the download", as the card says

    modelfile = parse_modelfile((tmp_path / "Modelfile").read_text())
    # FROM names the pulled GGUF file, relative to the Modelfile.
    from_path = modelfile.one("from")
    assert from_path == f"./{download.name}/model-q8_0.gguf"
    assert (tmp_path / from_path).resolve() == (download / "model-q8_0.gguf").resolve()
    assert modelfile.one("system") is None  # no default system message in these templates

    go_template = modelfile.one("template")
    assert go_template is not None
    hf = AutoTokenizer.from_pretrained(str(source))
    for messages in CHATS:
        expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ollama_prompt(go_template, messages) == expected, messages
    # Ollama continues a final assistant message: no end-of-turn after it.
    partial = [*CHATS[0], {"role": "assistant", "content": "The"}]
    full = hf.apply_chat_template(partial, tokenize=False)
    assert full.startswith(ollama_prompt(go_template, partial))
    assert ollama_prompt(go_template, partial).endswith("The")

    # Stops: where the template ends an assistant turn, starts a user turn, and the EOS.
    stops = modelfile.parameters("stop")
    if template == ROLE_TAGS:
        assert stops == [SPECIAL, "<user>"]
    else:
        assert stops == ["<|im_end|>", "<|im_start|>user", SPECIAL]


def test_a_template_go_cannot_express_gets_no_template_line(
    tiny_llama: Path, tmp_path: Path
) -> None:
    source = _with_template(tiny_llama, tmp_path, TRIMMING)
    tier = write_gguf_tier(source, tmp_path / "g", quant_type="q8_0", show_progress=False)
    chat = chat_from_gguf(tmp_path / "g" / tier.weight_files[0])
    assert chat.template is None
    assert "not a plain concatenation" in chat.reason
    modelfile = parse_modelfile(_card_modelfile(chat, "optimized", tier.weight_files[0]))
    assert modelfile.one("template") is None
    assert modelfile.parameters("stop") == [SPECIAL]


def test_a_model_without_a_chat_template_gets_a_from_only_modelfile(
    tiny_llama: Path, tmp_path: Path
) -> None:
    tier = write_gguf_tier(tiny_llama, tmp_path / "g", quant_type="q8_0", show_progress=False)
    chat = chat_from_gguf(tmp_path / "g" / tier.weight_files[0])
    modelfile = parse_modelfile(render_modelfile("./x/model-q8_0.gguf", chat))
    assert modelfile.one("from") == "./x/model-q8_0.gguf"
    assert modelfile.one("template") is None


def test_leading_bos_is_left_to_ollama_when_the_gguf_adds_it() -> None:
    with_bos = chat_from_template(ROLE_TAGS, bos_token=SPECIAL, eos_token=SPECIAL, add_bos=True)
    without = chat_from_template(ROLE_TAGS, bos_token=SPECIAL, eos_token=SPECIAL, add_bos=False)
    assert with_bos.template is not None
    assert without.template is not None
    chat = CHATS[0]
    assert ollama_prompt(without.template, chat) == SPECIAL + ollama_prompt(with_bos.template, chat)


def test_template_text_with_go_delimiters_is_escaped() -> None:
    template = (
        "{% for m in messages %}{{ '{{' + m['role'] + '}}: ' + m['content'] + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '{{assistant}}: ' }}{% endif %}"
    )
    chat = chat_from_template(template, eos_token=SPECIAL)
    assert chat.template is not None
    assert ollama_prompt(chat.template, CHATS[1]) == (
        "{{system}}: Be brief.\n{{user}}: Name a tier.\n{{assistant}}: "
    )


def test_templates_the_modelfile_cannot_quote_are_not_translated() -> None:
    template = (
        '{% for m in messages %}{{ m["role"] + \'"""\' + m["content"] }}{% endfor %}'
        "{% if add_generation_prompt %}A:{% endif %}"
    )
    chat = chat_from_template(template, eos_token=SPECIAL)
    assert chat.template is None
    assert "cannot quote" in chat.reason
    fenced = template.replace('\'"""\'', "'```'")
    assert "```" in fenced
    assert chat_from_template(fenced, eos_token=SPECIAL).template is None


def test_the_spec_parser_reads_ollamas_documented_examples() -> None:
    """The parser and renderer themselves, on the shapes Ollama's reference shows."""
    modelfile = parse_modelfile(
        '# comment\nfrom llama3.2\nPARAMETER temperature 1\nPARAMETER stop "<|eot_id|>"\n'
        'PARAMETER stop "<|start_header_id|>"\nSYSTEM You are Mario.\n'
        'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"""\n'
    )
    assert modelfile.one("from") == "llama3.2"
    assert modelfile.parameters("stop") == ["<|eot_id|>", "<|start_header_id|>"]
    assert modelfile.one("system") == "You are Mario."
    template = modelfile.one("template")
    assert template is not None
    assert render_go_template(template, {"System": "hi"}) == "<|im_start|>system\nhi<|im_end|>\n"
    assert render_go_template(template, {"System": ""}) == ""
    # Ollama puts the Modelfile's SYSTEM first when a chat has none.
    assert (
        ollama_prompt(
            "{{ range .Messages }}[{{ .Role }}]{{ .Content }}{{ end }}",
            [{"role": "user", "content": "u"}],
            system="s",
        )
        == "[system]s[user]u"
    )
    with pytest.raises(ValueError, match="no FROM"):
        parse_modelfile('SYSTEM "x"\n')
    with pytest.raises(ValueError, match="unterminated"):
        parse_modelfile('FROM x\nTEMPLATE """open\n')
