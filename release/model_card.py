"""The model card (``README.md``) of a release: Hugging Face style YAML front matter + Markdown.

:func:`render_model_card` is a pure function of plain values; it reads no file and no clock,
so the same release always renders the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from licensing.layout import SIGNATURE_FILE
from release.aibom import EvaluationResult
from release.card_compare import model_index, tier_comparison_lines
from release.card_records import artifact_record_lines
from release.engine_records import EngineFidelity, SpeedRecord
from release.fidelity import FidelityReport
from release.manifest import TierManifest
from release.ollama import OllamaChat, render_modelfile
from release.safety_policy import safety_policy_lines

__all__ = ["DEFAULT_WATERMARK_STATEMENT", "TierCard", "render_model_card"]

DEFAULT_WATERMARK_STATEMENT = (
    "Text generated through the tiergate gateway is watermarked at sampling time with a keyed "
    "green-list scheme, and every call is recorded in a signed transparency log. The watermark "
    "is statistical: it can be detected in sufficiently long passages with a known false "
    "positive rate, but it can be weakened by heavy editing or paraphrasing. Weights downloaded "
    "and run elsewhere do not carry the gateway's watermark."
)


@dataclass(frozen=True)
class TierCard:
    """One tier as the card shows it. ``revision`` is the Hub-style revision serving it;
    ``fidelity`` is the tier's measurement against the open tier (optimized tiers);
    ``artifact`` its optimization name (``int8``, ``gguf-q4_0``...: picks the usage
    snippets), ``weight_files`` the weight files it holds (the GGUF file name)."""

    name: str
    manifest: TierManifest
    gated: bool = False
    description: str = ""
    revision: str | None = None
    fidelity: FidelityReport | None = None
    artifact: str | None = None
    weight_files: tuple[str, ...] = ()
    # How the weights were calibrated (release.calibration.Calibration.record); empty: not.
    calibration: Mapping[str, str | int] = field(default_factory=dict)
    # The tier whose grant opens this one (itself, or `optimized` for a further artifact).
    grant: str | None = None
    # Decode speed against the open tier and vLLM fidelity (release.engine_records).
    speed: SpeedRecord | None = None
    engine_fidelity: EngineFidelity | None = None
    # The external tool that quantized the weights (llama.cpp for GGUF k-quants), if any.
    quantizer: str | None = None
    # GGUF artifacts: the Ollama TEMPLATE and stops of the embedded chat template.
    ollama: OllamaChat | None = None


def _access(tier: TierCard) -> str:
    if not tier.gated:
        return "open"
    if tier.grant and tier.grant != tier.name:
        return f"gated: the grant on `{_cell(tier.grant)}` opens it"
    return "gated: its own grant (signed usage attestation)"


def _cell(text: str) -> str:
    # Table cells: a pipe or a newline would break the row; backticks would break code spans.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable; keeps mypy's return analysis simple


def _manifest_digest(manifest: TierManifest) -> str:
    return hashlib.sha256(manifest.to_json()).hexdigest()


def _front_matter(
    *,
    license: str,
    tags: Sequence[str],
    base_model: str | None,
    language: Sequence[str],
    license_name: str | None,
    license_link: str | None,
    gated: bool,
    gated_prompt: str | None,
    gated_fields: Mapping[str, object],
) -> dict[str, Any]:
    meta: dict[str, Any] = {"license": license}
    if license_name:
        meta["license_name"] = license_name
    if license_link:
        meta["license_link"] = license_link
    if language:
        meta["language"] = list(language)
    meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = list(dict.fromkeys(["tiergate", *tags]))
    if base_model:
        meta["base_model"] = base_model
    if gated or gated_prompt or gated_fields:
        meta["extra_gated_prompt"] = gated_prompt or (
            "The gated tier of this release is available after a signed usage attestation "
            "accepting its terms."
        )
        meta["extra_gated_fields"] = dict(gated_fields)
    return meta


def _fidelity_lines(tier: TierCard, fidelity: FidelityReport) -> list[str]:
    ppl = (
        [
            f"| Held-out perplexity, optimized / open | {fidelity.perplexity_ratio:.4f} "
            f"({fidelity.perplexity_optimized:.4g} / {fidelity.perplexity_open:.4g}) |"
        ]
        if fidelity.perplexity_open
        else []
    )
    text = f" of {_cell(fidelity.text)}" if fidelity.text else ""
    return [
        f"### {tier.name}",
        "",
        f"Method `{_cell(fidelity.method)}`, measured against the open tier at build time "
        f"through {_cell(fidelity.engine)} on {fidelity.probe_positions} token positions{text}.",
        "",
        "| Metric | Value |",
        "| --- | --- |",
        f"| Size vs open tier | {fidelity.size_ratio:.3f}x "
        f"({_size(fidelity.optimized_weights_bytes)} / {_size(fidelity.open_weights_bytes)}) |",
        f"| Top-1 next-token agreement | {fidelity.top1_agreement:.2%} |",
        f"| Mean KL(open ‖ optimized) | {fidelity.mean_kl:.3g} nats |",
        *ppl,
        f"| Max per-tensor relative error | {fidelity.max_tensor_error:.3g} |",
        f"| Mean per-tensor relative error | {fidelity.mean_tensor_error:.3g} |",
        "",
        *_calibration_lines(tier.calibration),
        *([f"Quantized by {_cell(tier.quantizer)}.", ""] if tier.quantizer else []),
    ]


def _calibration_lines(record: Mapping[str, str | int]) -> list[str]:
    if not record:
        return []
    method = str(record.get("calibration", ""))
    if method == "none":
        return ["Weights rounded to nearest (no calibration text).", ""]
    strength = record.get("smoothing_strength")
    smoothing = f", smoothing strength {_cell(str(strength))}" if strength is not None else ""
    return [
        f"Calibrated with `{_cell(method)}`{smoothing} on {record.get('calibration_tokens')} "
        f"tokens of {_cell(str(record.get('calibration_text', '')))} (sha256 "
        f"`{_cell(str(record.get('calibration_sha256', '')))}`), a text that shares nothing "
        "with the held-out text above.",
        "",
    ]


_TEXT_DETECTION = {
    "reliable": "Detection from text is reliable: the tokenizer gives back the sampled tokens.",
    "unreliable": "**Detection from text is unreliable** with this tokenizer; the gateway "
    "refuses watermarked generation with this release.",
    "override": "**Detection from text is unreliable** with this tokenizer; the publisher "
    "overrode the gateway's refusal (recorded in the signed release statement). Send token "
    "ids to the detector where you can; a negative verdict from text proves little.",
}


def _tokenization_lines(record: Mapping[str, str]) -> list[str]:
    """The tokenizer round-trip figures the release statement signs (``tokenization``)."""

    def pct(key: str) -> str:
        try:
            return f"{float(record.get(key, '')):.1%}"
        except ValueError:
            return "n/a"

    verdict = _TEXT_DETECTION.get(record.get("text_detection", ""), "")
    return [
        "### Tokenizer round trip",
        "",
        "A detector that only has text re-tokenizes it, and sees the watermarked token ids "
        "only when `encode(decode(ids)) == ids`. Measured at build time:",
        "",
        "| Measured on | Sequences | Exact sequences | Tokens kept |",
        "| --- | --- | --- | --- |",
        f"| Packaged corpus (Python's own docs) | {_cell(record.get('corpus_sequences', '?'))} "
        f"| {pct('corpus_sequence_rate')} | {pct('corpus_token_rate')} |",
        f"| Seeded samples of the model | {_cell(record.get('sample_sequences', '?'))} "
        f"| {pct('sample_sequence_rate')} | {pct('sample_token_rate')} |",
        "",
        f"Round-trip rate {pct('roundtrip_rate')} (threshold {pct('threshold')}). {verdict}",
        "",
    ]


def _slug(repo_id: str, tier: str) -> str:
    name = repo_id.rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "model"
    return f"{safe}-{tier}"


def _usage_lines(repo_id: str, version: str, tier: TierCard) -> list[str]:
    """Snippets a user runs for this tier; each names the revision ``<version>-<tier>``."""
    slug = _slug(repo_id, tier.name)
    ref = f"{repo_id}@{version}"
    revision = f"{version}-{tier.name}" if tier.gated else version
    tier_flag = f" --tier {tier.name}" if tier.gated else ""
    token = ', token="tg_..."' if tier.gated else ""
    lines = [
        f"### {tier.name}",
        "",
        "Download and verify (signatures and every digest); gated tiers need a grant and "
        "`TIERGATE_TOKEN`:",
        "",
        "```bash",
        f"tiergate pull {ref}{tier_flag} --out ./{slug} --gateway $TIERGATE_GATEWAY",
        "```",
        "",
    ]
    artifact = tier.artifact or ""
    gguf = next((f for f in tier.weight_files if f.endswith(".gguf")), None)
    if gguf is not None:
        model_name = slug.lower()
        lines += [
            "llama.cpp (the file carries the tokenizer and chat template; `llama-completion` "
            "is plain completion, `llama-cli` a chat with the embedded template; llama.cpp "
            "builds before the two were split call the first one `llama-cli`):",
            "",
            "```bash",
            f'llama-completion -m ./{slug}/{gguf} -no-cnv -p "Hello" -n 64',
            f'llama-cli -m ./{slug}/{gguf} -st -p "Hello"',
            f"llama-server -m ./{slug}/{gguf} --port 8080",
            "```",
            "",
            "llama-cpp-python (`pip install llama-cpp-python`, 0.3.36 or later):",
            "",
            "```python",
            "from llama_cpp import Llama",
            f'llm = Llama(model_path="./{slug}/{gguf}", verbose=False)',
            'print(llm("Hello", max_tokens=64)["choices"][0]["text"])',
            "```",
            "",
            "Ollama (`Modelfile` next to the download; the TEMPLATE is the embedded chat "
            "template in Go's template syntax, which Ollama uses instead of Jinja):",
            "",
            "```",
            render_modelfile(f"./{slug}/{gguf}", tier.ollama),
            "```",
            "",
            "```bash",
            f"ollama create {model_name} -f Modelfile && ollama run {model_name}",
            "```",
            "",
            "transformers (GGUF loader, needs `gguf`; dequantizes to float32):",
            "",
            "```python",
            "from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer",
            f'path = "./{slug}"',
            f'model = AutoModelForCausalLM.from_pretrained(path, gguf_file="{gguf}",',
            "                                             config=AutoConfig.from_pretrained(path))",
            f'tokenizer = AutoTokenizer.from_pretrained(path, gguf_file="{gguf}")',
            "```",
            "",
        ]
        return lines
    needs = " (needs `compressed-tensors`)" if artifact in ("int8", "int4") else ""
    lines += [
        f"transformers{needs}, from the download or straight from the gateway:",
        "",
        "```python",
        "# HF_ENDPOINT=$TIERGATE_GATEWAY in the environment before Python starts",
        "from transformers import AutoModelForCausalLM",
        f'model = AutoModelForCausalLM.from_pretrained("./{slug}")',
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision="{revision}"{token})',
        "```",
        "",
        "vLLM (reads the compressed-tensors config itself; its CPU int4 kernel needs 16-bit "
        "activations):",
        "",
        "```bash",
        f"vllm serve ./{slug} --dtype bfloat16",
        "```",
        "",
    ]
    return lines


def _usage_section(repo_id: str, version: str, tiers: Sequence[TierCard]) -> list[str]:
    lines = ["## How to use", ""]
    for tier in tiers:
        lines += _usage_lines(repo_id, version, tier)
    return lines


def render_model_card(
    *,
    repo_id: str,
    version: str,
    license: str,
    tiers: Sequence[TierCard],
    summary: str = "",
    base_model: str | None = None,
    tags: Sequence[str] = (),
    language: Sequence[str] = (),
    license_name: str | None = None,
    license_link: str | None = None,
    terms_sha256: str | None = None,
    intended_use: str = "",
    limitations: str = "",
    watermark_statement: str = DEFAULT_WATERMARK_STATEMENT,
    gated_prompt: str | None = None,
    gated_fields: Mapping[str, object] | None = None,
    tokenization: Mapping[str, str] | None = None,
    evaluations: Sequence[EvaluationResult] = (),
    safety_policy: Mapping[str, Any] | None = None,
) -> str:
    """Render ``README.md`` for a release.

    ``gated_fields`` become the Hub's ``extra_gated_fields`` as given (label -> ``"text"``,
    ``"checkbox"``, ``"country"``, ``"date_picker"``, or ``{"type": "select", "options": [...]}``).
    Free text (summary, intended use, limitations) is the publisher's Markdown, inserted as
    is; values that go into tables are escaped, and the front matter is produced by
    ``yaml.safe_dump``, so no value can end it early. ``evaluations`` (attested scores, none
    until ``tiergate eval``) fill ``model-index`` and the comparison table's extra columns.
    """
    import yaml  # type: ignore[import-untyped]

    meta = _front_matter(
        license=license,
        tags=tags,
        base_model=base_model,
        language=language,
        license_name=license_name,
        license_link=license_link,
        gated=any(t.gated for t in tiers),
        gated_prompt=gated_prompt,
        gated_fields=gated_fields or {},
    )
    index = model_index(repo_id, version, evaluations)
    if index:
        meta["model-index"] = index
    title = repo_id.replace("\n", " ").strip()
    lines = [f"# {title} {version.strip()}", ""]
    if summary.strip():
        lines += [summary.strip(), ""]

    lines += ["## Tiers", "", "| Tier | Access | Files | Size | Manifest sha256 |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for tier in tiers:
        access = _access(tier)
        lines.append(
            f"| {_cell(tier.name)} | {access} | {len(tier.manifest.files)} | "
            f"{_size(tier.manifest.total_size)} | `{_manifest_digest(tier.manifest)}` |"
        )
    lines.append("")
    for tier in tiers:
        if tier.description.strip() or tier.revision:
            revision = f" (revision `{_cell(tier.revision)}`)" if tier.revision else ""
            lines += [f"**{_cell(tier.name)}**{revision}: {tier.description.strip()}", ""]

    if any(tier.fidelity is not None for tier in tiers) or evaluations:
        lines += tier_comparison_lines(tiers, evaluations)
    lines += artifact_record_lines(tiers)

    lines += ["## File digests", ""]
    for tier in tiers:
        lines += [f"### {tier.name}", "", "| File | Size | sha256 |", "| --- | --- | --- |"]
        for entry in tier.manifest.files:
            lines.append(f"| `{_cell(entry.path)}` | {entry.size} | `{entry.sha256}` |")
        lines.append("")
    lines += [
        f"Each tier folder carries a `{SIGNATURE_FILE}` Sigstore bundle; check a download with "
        f"`model_signing verify key DIR --signature DIR/{SIGNATURE_FILE} "
        "--public_key publisher.pem` "
        "or `tiergate pull`, which verifies the signatures and every digest.",
        "",
    ]

    lines += _usage_section(repo_id, version, tiers)

    measured = [tier for tier in tiers if tier.fidelity is not None]
    if measured:
        lines += ["## Fidelity", ""]
        for tier in measured:
            assert tier.fidelity is not None
            lines += _fidelity_lines(tier, tier.fidelity)

    unspecified = "Not specified by the publisher."
    lines += ["## Intended use", "", intended_use.strip() or unspecified, ""]
    lines += ["## Limitations", "", limitations.strip() or unspecified, ""]
    lines += ["## Watermark", "", watermark_statement.strip(), ""]
    if tokenization:
        lines += _tokenization_lines(tokenization)
    if safety_policy is not None:
        lines += safety_policy_lines(safety_policy)
    license_line = f"License: `{_cell(license_name or license)}`."
    if license_link:
        license_line += f" Full text: {license_link}"
    lines += ["## License and terms", "", license_line]
    if terms_sha256:
        lines += ["", f"Terms of use for gated tiers: sha256 `{_cell(terms_sha256)}`."]
    lines.append("")

    front = str(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False))
    return "---\n" + front + "---\n\n" + "\n".join(lines)
