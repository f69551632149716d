"""Card revisions, pure part: the re-rendered card, its bundles and the signed statement."""

from __future__ import annotations

import hashlib
import json

import pytest

from licensing.card_revision import (
    CardRevision,
    parse_card_revision,
    sign_card_revision,
    verify_card_revision,
)
from licensing.errors import CardRevisionError
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import sign_model_bundle, verify_model_bundle_manifest
from release.card_revision import (
    EVALUATIONS_BEGIN,
    AttestedRelease,
    build_card_revision,
    check_revised_bundle,
    render_revised_card,
)
from release.card_sections import GENERATED_END, card_front_matter
from release.errors import CardRevisionRefusedError
from tests.release.card_revision_fixtures import (
    NOW,
    eval_envelope,
    payload_digest,
    signed_release,
)


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate("ecdsa-p256")


def test_the_revised_card_carries_model_index_and_the_tier_comparison(key: PrivateKey) -> None:
    release = signed_release(key)
    open_score = eval_envelope(key, release, tier="open")
    int8 = eval_envelope(
        key, release, tier="optimized", value="0.700000", lower="0.500000", upper="0.850000"
    )
    attested = AttestedRelease(release.statement, release.digest, (open_score, int8))
    card = render_revised_card(release.card, attested)

    meta = card_front_matter(card)
    assert meta["license"] == "apache-2.0"
    assert meta["tags"] == ["tiergate", "tiny"]
    [entry] = meta["model-index"]
    assert entry["name"] == "acme/tiny@1.0.0"
    [first, second] = entry["results"]
    [metric] = first["metrics"]
    assert (metric["value"], metric["args"]) == (0.8, {"tier": "open"})
    assert second["metrics"][0]["args"] == {"tier": "optimized"}
    source = first["source"]["url"]
    assert source == f"urn:sha256:{payload_digest(open_score)}"
    # The publisher's text is kept; the block goes right after the generated one.
    assert "The publisher's own words." in card
    assert "## Contact" in card
    assert card.index(GENERATED_END) < card.index(EVALUATIONS_BEGIN) < card.index("## Contact")
    # optimized - open = -0.1 with Newcombe's interval from the two Wilson intervals.
    assert "| tiny-mc@1 | optimized | 0.700000 | 0.800000 | -0.100000 |" in card
    # Deterministic: the same inputs render the same bytes, in any order of attestations.
    again = AttestedRelease(release.statement, release.digest, (int8, open_score))
    assert render_revised_card(release.card, again) == card
    # Rendering a revised card again replaces its block instead of adding a second one.
    assert render_revised_card(card, attested).count(EVALUATIONS_BEGIN) == 1


def test_the_cross_version_table_lists_other_versions_newest_first(key: PrivateKey) -> None:
    v1 = signed_release(key, version="1.0.0")
    v9 = signed_release(key, version="1.9.0")
    v2 = signed_release(key, version="1.10.0")
    current = AttestedRelease(v2.statement, v2.digest, (eval_envelope(key, v2),))
    others = [
        AttestedRelease(v1.statement, v1.digest, (eval_envelope(key, v1, value="0.5"),)),
        AttestedRelease(v9.statement, v9.digest, (eval_envelope(key, v9, value="0.6"),)),
    ]
    card = render_revised_card(v2.card, current, others)
    assert "## Comparison across versions: evaluations" in card
    assert card.index("| 1.9.0 |") < card.index("| 1.0.0 |")
    # Only this version's results go into model-index.
    assert [e["name"] for e in card_front_matter(card)["model-index"]] == ["acme/tiny@1.10.0"]


def test_an_attestation_of_another_release_is_refused(key: PrivateKey) -> None:
    release = signed_release(key)
    other = signed_release(key, version="2.0.0")
    attested = AttestedRelease(release.statement, release.digest, (eval_envelope(key, other),))
    with pytest.raises(CardRevisionRefusedError, match="another release"):
        render_revised_card(release.card, attested)
    unknown_tier = eval_envelope(key, release, tier="int4")
    attested = AttestedRelease(release.statement, release.digest, (unknown_tier,))
    with pytest.raises(CardRevisionRefusedError, match="int4"):
        render_revised_card(release.card, attested)


def test_the_revision_signs_the_card_and_bundles_keep_every_weight_digest(
    key: PrivateKey,
) -> None:
    release = signed_release(key)
    attestation = eval_envelope(key, release)
    built = build_card_revision(
        original_card=release.card,
        release=AttestedRelease(release.statement, release.digest, (attestation,)),
        revision=1,
        key=key,
        now=NOW,
    )
    verified = verify_card_revision(built.envelope, [key.public_key])
    assert verified.revision == built.revision
    assert verified.revision.card_sha256 == hashlib.sha256(built.card).hexdigest()
    assert verified.revision.attestations == (payload_digest(attestation),)
    assert verified.revision.release_digest == release.digest
    for tier, bundle in built.bundles.items():
        digest = check_revised_bundle(
            release.statement, tier, bundle, key.public_key, verified.revision.card_sha256
        )
        assert verified.revision.tiers[tier] == digest
        resources = {
            r.name: r.sha256 for r in verify_model_bundle_manifest(bundle, key.public_key).resources
        }
        for name, data in release.files[tier].items():
            if name != "README.md":
                assert resources[name] == hashlib.sha256(data).hexdigest()
    with pytest.raises(CardRevisionError):
        verify_card_revision(built.envelope, [PrivateKey.generate("ecdsa-p256").public_key])


def test_a_revised_bundle_that_changes_a_weight_digest_is_refused(key: PrivateKey) -> None:
    """Regression for the attack a card revision could carry: new weights under a new card."""
    release = signed_release(key)
    card_sha = "ab" * 32

    def revised(**changes: str) -> list[tuple[str, str, int]]:
        files = release.statement.tier("open").files
        entries = {f.path: (f.sha256, f.size) for f in files}
        entries["README.md"] = (card_sha, 10)
        for path, digest in changes.items():
            entries[path.replace("_", ".")] = (digest, 1)
        return [(path, digest, size) for path, (digest, size) in entries.items()]

    honest = sign_model_bundle("open", revised(), key)
    check_revised_bundle(release.statement, "open", honest, key.public_key, card_sha)
    forged = sign_model_bundle("open", revised(model_safetensors="cd" * 32), key)
    with pytest.raises(CardRevisionRefusedError, match=r"model\.safetensors"):
        check_revised_bundle(release.statement, "open", forged, key.public_key, card_sha)
    added = sign_model_bundle("open", revised(extra_bin="ef" * 32), key)
    with pytest.raises(CardRevisionRefusedError, match=r"extra\.bin"):
        check_revised_bundle(release.statement, "open", added, key.public_key, card_sha)
    # Signed by another key: refused before any comparison.
    stranger = sign_model_bundle("open", revised(), PrivateKey.generate("ecdsa-p256"))
    with pytest.raises(CardRevisionRefusedError, match=r"model\.sig"):
        check_revised_bundle(release.statement, "open", stranger, key.public_key, card_sha)


def test_card_revision_statements_are_strict() -> None:
    base = CardRevision(
        repo_id="acme/tiny",
        version="1.0.0",
        release_digest="aa" * 32,
        revision=1,
        card_sha256="bb" * 32,
        original_card_sha256="cc" * 32,
        tiers={"open": "dd" * 32},
        attestations=("ff" * 32, "ee" * 32),
        created_at=NOW,
    )
    assert base.attestations == ("ee" * 32, "ff" * 32)
    assert parse_card_revision(base.to_payload()) == base
    for bad in ({"revision": 0}, {"card_sha256": "x"}, {"tiers": {}}, {"repo_id": "nope"}):
        with pytest.raises(CardRevisionError):
            CardRevision(**{**base.__dict__, **bad})
    doc = json.loads(base.to_payload())
    doc["predicate"]["extra"] = 1
    with pytest.raises(CardRevisionError, match="unknown"):
        parse_card_revision(json.dumps(doc).encode())
    key = PrivateKey.generate("ecdsa-p256")
    envelope = sign_card_revision(base, key).to_json()
    assert verify_card_revision(envelope, [key.public_key]).revision == base
    with pytest.raises(CardRevisionError):
        verify_card_revision(b"{not json", [key.public_key])
