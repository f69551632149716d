"""Card revisions: the signed card re-rendered with endorsed evaluation results, and its bundles.

A release's ``README.md`` is signed before any evaluation of it can exist. A card revision
puts the attested results on the card afterwards without re-signing the model: the original
card plus ``model-index`` in its front matter and one marked block of evaluation tables
(every attested score, each optimized tier against ``open`` on the same task with Newcombe's
95% interval, and the same repository's earlier versions). Each tier gets a new
model_signing bundle whose resources are the release statement's with only ``README.md``'s
digest replaced, and the publisher signs a ``https://tiergate.dev/card-revision/v1``
statement naming all of it.

:func:`render_revised_card` is a pure function of (original card, release statements,
attestation envelopes): it reads no clock and no file, so the gateway re-renders a submitted
revision and compares bytes; a revision cannot carry a score no attestation it names has.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from licensing.card_revision import CardRevision, sign_card_revision
from licensing.errors import LicensingError
from licensing.keys import PrivateKey, PublicKey
from licensing.layout import TierFile
from licensing.sigstore_bundle import (
    compute_manifest_digest,
    sign_model_bundle,
    verify_model_bundle_manifest,
)
from licensing.statements import ReleaseStatement
from release.aibom import EvaluationResult
from release.card_compare import model_index
from release.card_sections import GENERATED_END, card_front_matter, split_front_matter
from release.errors import CardRevisionRefusedError, EvalAttestationInvalidError
from release.evals.attestation import open_eval_attestation
from release.evals.compare import AttestedScore, difference

__all__ = [
    "CARD_FILE",
    "EVALUATIONS_BEGIN",
    "EVALUATIONS_END",
    "AttestedRelease",
    "SignedCardRevision",
    "attested_scores",
    "build_card_revision",
    "check_revised_bundle",
    "render_revised_card",
    "revised_tier_files",
]

CARD_FILE = "README.md"
EVALUATIONS_BEGIN = "<!-- tiergate:evaluations:begin (card revision; signed attestations) -->"
EVALUATIONS_END = "<!-- tiergate:evaluations:end -->"
_REFERENCE_TIER = "open"
_RUNNER = {"publisher": "publisher", "gateway": "gateway", "third_party": "third party"}


@dataclass(frozen=True)
class AttestedRelease:
    """One version of the repository: its signed statement, that statement's digest, and the
    endorsed evaluation attestations (DSSE envelope bytes) to show for it."""

    statement: ReleaseStatement
    release_digest: str
    attestations: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class _Score:
    version: str
    tier: str
    task: str
    value: str
    lower: str
    upper: str
    total: int
    runner: str
    digest: str

    def attested(self) -> AttestedScore:
        return AttestedScore(
            self.tier, self.task, self.value, self.lower, self.upper, self.total, "", self.digest
        )


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _score_of(envelope: bytes, release: AttestedRelease) -> _Score:
    refuse = CardRevisionRefusedError
    try:
        attestation = open_eval_attestation(envelope, None)
    except EvalAttestationInvalidError as exc:
        raise refuse(exc.message) from None
    digest = hashlib.sha256(attestation.envelope.payload).hexdigest()
    if attestation.release_digest != release.release_digest:
        raise refuse(
            f"attestation {digest[:16]} is about another release than "
            f"{release.statement.release_name}"
        )
    p = attestation.predicate
    try:
        tier = str(p["model"]["tier"])
        task = f"{p['task']['name']}@{p['task']['version']}"
        score = p["score"]
        interval = score["interval"]
        values = (str(score["value"]), str(interval["lower"]), str(interval["upper"]))
        total = int(score["total"])
        role = str(p["ranBy"]["role"])
    except (KeyError, TypeError, ValueError):
        raise refuse(f"attestation {digest[:16]} lacks task, tier, score or ranBy") from None
    if tier not in {t.name for t in release.statement.tiers}:
        raise refuse(f"attestation {digest[:16]} names tier {tier[:32]!r}, not one of the release")
    if not all(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v) for v in values):
        raise refuse(f"attestation {digest[:16]}: score and interval must be decimal strings")
    return _Score(
        version=release.statement.version,
        tier=tier,
        task=task[:160],
        value=values[0],
        lower=values[1],
        upper=values[2],
        total=total,
        runner=_RUNNER.get(role, "unknown"),
        digest=digest,
    )


def attested_scores(release: AttestedRelease) -> list[_Score]:
    """The release's attested scores, sorted by (task, tier, digest); one attestation twice
    is refused (the set a revision signs has each digest once)."""
    scores = [_score_of(envelope, release) for envelope in release.attestations]
    digests = [s.digest for s in scores]
    if len(set(digests)) != len(digests):
        raise CardRevisionRefusedError("an attestation is given twice")
    return sorted(scores, key=lambda s: (s.task, s.tier, s.digest))


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # Numbers compare as numbers (1.10.0 after 1.9.0); other parts as text.
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.+_-]", version)
    )


def _score_lines(scores: Sequence[_Score]) -> list[str]:
    lines = [
        "## Evaluations",
        "",
        "Results of signed evaluation attestations the publisher endorses (its own, and "
        "community ones it accepted). Each number is recomputable from the gateway's logged "
        "calls with `tiergate eval verify`; the attestations are served beside the files as "
        "`evaluations/<digest>.intoto.json`.",
        "",
        "| Task | Tier | Score | 95% CI (Wilson) | Samples | Run by | Attestation sha256 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in scores:
        lines.append(
            f"| {_cell(s.task)} | {_cell(s.tier)} | {s.value} | {s.lower} to {s.upper} | "
            f"{s.total} | {s.runner} | `{s.digest[:16]}` |"
        )
    lines.append("")
    return lines


def _tier_comparison(scores: Sequence[_Score]) -> list[str]:
    """Each optimized tier against ``open`` on the same task: difference and interval. With
    several attestations of one (task, tier), the first by digest stands for it, so the
    choice is a function of the inputs alone."""
    first: dict[tuple[str, str], _Score] = {}
    for s in scores:
        first.setdefault((s.task, s.tier), s)
    rows = []
    for (task, tier), s in sorted(first.items()):
        ref = first.get((task, _REFERENCE_TIER))
        if tier == _REFERENCE_TIER or ref is None:
            continue
        d = difference(s.attested(), ref.attested())
        rows.append(
            f"| {_cell(task)} | {_cell(tier)} | {s.value} | {ref.value} | {d.value} | "
            f"{d.lower} to {d.upper} |"
        )
    if not rows:
        return []
    return [
        "## Comparison across tiers: evaluations",
        "",
        f"Each optimized tier against `{_REFERENCE_TIER}` on the same task: the difference "
        "of the attested scores and its 95% interval (Newcombe's hybrid score interval from "
        "the two attested Wilson intervals; an interval that contains 0 shows no measured "
        "difference).",
        "",
        f"| Task | Tier | Score | {_REFERENCE_TIER} | Difference | 95% CI |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


def _version_comparison(
    current: AttestedRelease, versions: Sequence[tuple[AttestedRelease, list[_Score]]]
) -> list[str]:
    if not versions:
        return []
    lines = [
        "## Comparison across versions: evaluations",
        "",
        f"Endorsed results of this repository's other versions beside {current.statement.version}"
        " (each row from a signed attestation about that version's own release statement).",
        "",
        "| Version | Task | Tier | Score | 95% CI | Samples | Attestation sha256 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for release, scores in versions:
        for s in scores:
            lines.append(
                f"| {_cell(release.statement.version)} | {_cell(s.task)} | {_cell(s.tier)} | "
                f"{s.value} | {s.lower} to {s.upper} | {s.total} | `{s.digest[:16]}` |"
            )
    lines.append("")
    return lines


def _without_block(body: str) -> str:
    begin = body.find(EVALUATIONS_BEGIN)
    if begin < 0:
        return body
    end = body.find(EVALUATIONS_END, begin)
    tail = body[end + len(EVALUATIONS_END) :] if end >= 0 else ""
    return body[:begin].rstrip("\n") + "\n" + tail.lstrip("\n")


def render_revised_card(
    original_card: str, release: AttestedRelease, others: Sequence[AttestedRelease] = ()
) -> str:
    """The card of a revision: ``original_card`` with ``model-index`` set from ``release``'s
    attestations and the evaluation block after the generated block (or at the end).

    ``others`` are the repository's other versions whose endorsed results join the
    cross-version table, newest first by version number. Everything else in the card is
    kept; the front matter is re-serialized with its values unchanged.
    """
    import yaml  # type: ignore[import-untyped]

    front, body = split_front_matter(original_card)
    meta = card_front_matter(original_card)
    if front is not None and front.strip() and not meta:
        raise CardRevisionRefusedError("the card's front matter cannot be read back")
    statement = release.statement
    scores = attested_scores(release)
    results = [
        EvaluationResult(
            tier=s.tier,
            task=s.task,
            metric="accuracy",
            value=s.value,
            attestation_sha256=s.digest,
            runner="third-party" if s.runner == "third party" else s.runner,
            interval=(s.lower, s.upper),
        )
        for s in scores
    ]
    meta.pop("model-index", None)
    index = model_index(statement.repo_id, statement.version, results)
    if index:
        meta["model-index"] = index
    versions = []
    for other in sorted(others, key=lambda r: _version_key(r.statement.version), reverse=True):
        if other.statement.repo_id != statement.repo_id:
            raise CardRevisionRefusedError(
                f"{other.statement.release_name} is not a version of {statement.repo_id}"
            )
        if other.release_digest == release.release_digest:
            raise CardRevisionRefusedError("the revised release is also given as another version")
        other_scores = attested_scores(other)
        if other_scores:
            versions.append((other, other_scores))
    block_lines = [
        EVALUATIONS_BEGIN,
        "",
        *(
            _score_lines(scores)
            if scores
            else ["## Evaluations", "", "No endorsed evaluation attestation yet.", ""]
        ),
        *_tier_comparison(scores),
        *_version_comparison(release, versions),
        EVALUATIONS_END,
    ]
    block = "\n".join(block_lines) + "\n"
    body = _without_block(body)
    at = body.find(GENERATED_END)
    if at >= 0:
        cut = at + len(GENERATED_END)
        body = body[:cut].rstrip("\n") + "\n\n" + block + body[cut:]
    else:
        body = body.rstrip("\n") + "\n\n" + block
    dumped = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "---\n" + str(dumped) + "---\n\n" + body.lstrip("\n")


def revised_tier_files(
    statement: ReleaseStatement, card_sha256: str, card_size: int
) -> dict[str, list[TierFile]]:
    """Each tier's signed file list with ``README.md`` replaced by the revised card."""
    out: dict[str, list[TierFile]] = {}
    for tier in statement.tiers:
        if not any(f.path == CARD_FILE for f in tier.files):
            raise CardRevisionRefusedError(
                f"tier {tier.name} of {statement.release_name} has no signed {CARD_FILE}: "
                "there is no card to revise"
            )
        out[tier.name] = [
            TierFile(CARD_FILE, card_sha256, card_size) if f.path == CARD_FILE else f
            for f in tier.files
        ]
    return out


def check_revised_bundle(
    statement: ReleaseStatement,
    tier: str,
    bundle: bytes,
    key: PublicKey,
    card_sha256: str,
) -> str:
    """Verify a revised tier's ``model.sig`` under ``key``: its resources must be exactly the
    statement's files of ``tier`` with only ``README.md``'s digest replaced by
    ``card_sha256``. Returns the bundle's manifest digest."""
    refuse = CardRevisionRefusedError
    try:
        record = statement.tier(tier)
        manifest = verify_model_bundle_manifest(bundle, key)
    except LicensingError as exc:
        raise refuse(f"tier {tier}: model.sig: {exc.message}") from None
    signed = {r.name: r.sha256 for r in manifest.resources}
    expected = {f.path: (card_sha256 if f.path == CARD_FILE else f.sha256) for f in record.files}
    if CARD_FILE not in expected:
        raise refuse(f"tier {tier} has no signed {CARD_FILE} to revise")
    changed = sorted(p for p in expected.keys() | signed.keys() if expected.get(p) != signed.get(p))
    if changed:
        shown = ", ".join(p[:80] for p in changed[:5])
        raise refuse(
            f"tier {tier}: the revised model.sig changes more than {CARD_FILE} "
            f"(differs from the release statement at: {shown})"
        )
    return manifest.manifest_digest


@dataclass(frozen=True)
class SignedCardRevision:
    """Everything a publisher uploads: the card, the signed statement, one bundle per tier."""

    card: bytes
    revision: CardRevision
    envelope: bytes
    bundles: Mapping[str, bytes]


def build_card_revision(
    *,
    original_card: str,
    release: AttestedRelease,
    others: Iterable[AttestedRelease] = (),
    revision: int,
    key: PrivateKey,
    now: datetime,
) -> SignedCardRevision:
    """Render, bundle and sign revision number ``revision`` of ``release``'s card."""
    others = tuple(others)
    card = render_revised_card(original_card, release, others).encode("utf-8")
    card_sha256 = hashlib.sha256(card).hexdigest()
    files = revised_tier_files(release.statement, card_sha256, len(card))
    try:
        bundles = {
            tier: sign_model_bundle(tier, [(f.path, f.sha256, f.size) for f in entries], key)
            for tier, entries in files.items()
        }
    except LicensingError as exc:
        raise CardRevisionRefusedError(f"signing the revised bundles: {exc.message}") from None
    digests = [s.digest for s in attested_scores(release)]
    for other in others:
        digests += [s.digest for s in attested_scores(other)]
    statement = CardRevision(
        repo_id=release.statement.repo_id,
        version=release.statement.version,
        release_digest=release.release_digest,
        revision=revision,
        card_sha256=card_sha256,
        original_card_sha256=hashlib.sha256(original_card.encode("utf-8")).hexdigest(),
        tiers={
            tier: compute_manifest_digest((f.path, f.sha256) for f in entries)
            for tier, entries in files.items()
        },
        attestations=tuple(digests),
        created_at=now,
    )
    envelope = sign_card_revision(statement, key).to_json()
    return SignedCardRevision(card=card, revision=statement, envelope=envelope, bundles=bundles)
