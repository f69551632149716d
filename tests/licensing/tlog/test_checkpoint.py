"""tlog-checkpoint bodies and their signing/opening as signed notes."""

from __future__ import annotations

import base64

import pytest

from licensing.errors import (
    CheckpointMalformedError,
    NoteUnverifiedError,
    TlogInconsistentError,
)
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import EMPTY_ROOT, NodeStore, consistency_proof, leaf_hash
from licensing.tlog.note import Signer, parse_note, sign_note

ORIGIN = "log.example/tiergate"
# The c2sp.org/tlog-checkpoint example body.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY + "\n\u2014 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def test_spec_example_body_parses_and_round_trips() -> None:
    cp = parse_checkpoint(SPEC_BODY)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.body() == SPEC_BODY
    assert parse_note(SPEC_NOTE).text == SPEC_BODY


def test_extensions_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 1, leaf_hash(b"x"), ("ext one", "ext two"))
    assert parse_checkpoint(cp.body()) == cp


@pytest.mark.parametrize(
    "body",
    [
        "",
        "origin\n5\n",
        "origin\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",  # no final newline
        "\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # empty origin
        "origin\n05\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n+5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n\u0665\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # Arabic-Indic digit
        "origin\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2=\n",  # 31 bytes... or bad
        "origin\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",  # non-canonical
        "origin\n5\nnot base64!\n",
        "origin\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",  # empty extension
        "origin\n0\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # size 0, wrong root
    ],
)
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(CheckpointMalformedError):
        parse_checkpoint(body)


def test_empty_checkpoint() -> None:
    cp = parse_checkpoint(f"{ORIGIN}\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\n")
    assert cp.size == 0


def test_sign_and_open() -> None:
    signer = Signer.generate(ORIGIN)
    cp = Checkpoint(ORIGIN, 3, leaf_hash(b"r"))
    note = sign_checkpoint(cp, signer, previous=None)
    assert note.startswith(cp.body() + "\n\u2014 " + ORIGIN + " ")
    assert open_checkpoint(note, [signer.verifier()], origin=ORIGIN) == cp
    with pytest.raises(CheckpointMalformedError):
        open_checkpoint(note, [signer.verifier()], origin="other.example")
    with pytest.raises(NoteUnverifiedError):
        open_checkpoint(note, [Signer.generate(ORIGIN).verifier()])


def test_key_named_differently_from_origin_does_not_count_as_the_log() -> None:
    witness = Signer.generate("witness.example")
    note = sign_note(Checkpoint(ORIGIN, 3, leaf_hash(b"r")).body(), [witness])
    with pytest.raises(NoteUnverifiedError):
        open_checkpoint(note, [witness.verifier()])


def test_refuses_to_sign_an_inconsistent_checkpoint() -> None:
    signer = Signer.generate(ORIGIN)
    leaves = [leaf_hash(b"%d" % i) for i in range(10)]
    first = append_batch(CompactRange.empty(), leaves[:6])
    second = append_batch(first.state, leaves[6:])
    store = NodeStore(first.nodes + second.nodes)
    old = Checkpoint(ORIGIN, 6, first.root)
    new = Checkpoint(ORIGIN, 10, second.root)
    proof = consistency_proof(6, 10, store)
    sign_checkpoint(new, signer, previous=old, consistency_proof=proof)

    fork = Checkpoint(ORIGIN, 10, leaf_hash(b"fork"))
    with pytest.raises(TlogInconsistentError):
        sign_checkpoint(fork, signer, previous=old, consistency_proof=proof)
    with pytest.raises(TlogInconsistentError):
        sign_checkpoint(old, signer, previous=new, consistency_proof=())
    with pytest.raises(TlogInconsistentError):
        sign_checkpoint(
            Checkpoint(ORIGIN, 6, leaf_hash(b"other")), signer, previous=old, consistency_proof=()
        )
    with pytest.raises(TlogInconsistentError):
        sign_checkpoint(
            Checkpoint("other.example", 10, second.root),
            signer,
            previous=old,
            consistency_proof=proof,
        )


def test_checkpoint_constructor_validates() -> None:
    with pytest.raises(CheckpointMalformedError):
        Checkpoint("", 1, leaf_hash(b""))
    with pytest.raises(CheckpointMalformedError):
        Checkpoint("a\nb", 1, leaf_hash(b""))
    with pytest.raises(CheckpointMalformedError):
        Checkpoint(ORIGIN, -1, leaf_hash(b""))
    with pytest.raises(CheckpointMalformedError):
        Checkpoint(ORIGIN, 1, b"short")
