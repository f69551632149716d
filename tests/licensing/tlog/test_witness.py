"""c2sp.org/tlog-cosignature/v1 and c2sp.org/tlog-witness add-checkpoint, against the specs."""

from __future__ import annotations

import base64
import hashlib

import pytest

from licensing.errors import (
    CosignatureInvalidError,
    NoteKeyInvalidError,
    WitnessConflictError,
    WitnessForbiddenError,
    WitnessProofInvalidError,
    WitnessRequestMalformedError,
    WitnessUnknownLogError,
)
from licensing.tlog.checkpoint import Checkpoint, sign_checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    open_cosigned_checkpoint,
)
from licensing.tlog.merkle import NodeStore, consistency_proof, leaf_hash, tree_root
from licensing.tlog.note import NoteSignature, Signer, parse_note
from licensing.tlog.witness import (
    WitnessedCheckpoint,
    add_checkpoint,
    format_add_checkpoint,
    parse_add_checkpoint,
)

# c2sp.org/tlog-cosignature: the example message and the example signature line's blob.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_MESSAGE = b"cosignature/v1\ntime 1679315147\n" + SPEC_BODY.encode()
SPEC_LINE_B64 = (
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
# RFC 8032 section 7.1 test 1 secret key: a fixed seed makes the cosignature reproducible.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ORIGIN = "example.com/tiergate-log"


def test_signed_message_matches_the_spec_example() -> None:
    assert cosignature_message(SPEC_BODY, 1679315147) == SPEC_MESSAGE


def test_spec_signature_blob_is_key_id_then_timestamp_then_signature() -> None:
    blob = base64.b64decode(SPEC_LINE_B64)
    assert len(blob) == 4 + 8 + 64
    assert int.from_bytes(blob[4:12], "big") == 1679315147  # the example's "time" line


def test_key_id_uses_signature_type_0x04() -> None:
    signer = CosignatureSigner("witness.example/w1", RFC8032_SEED)
    public = signer.public_key
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + public).digest()[:4]
    assert signer.key_id == int.from_bytes(expected, "big")
    vkey = signer.verifier().vkey
    assert vkey.startswith(f"witness.example/w1+{expected.hex()}+")
    assert base64.b64decode(vkey.split("+", 2)[2]) == b"\x04" + public
    # The same key with the note (0x01) type is another key id: no cross-protocol reuse.
    assert Signer("witness.example/w1", RFC8032_SEED).key_id != signer.key_id
    assert CosignatureVerifier.from_vkey(signer.verifier().vkey).key_id == signer.key_id
    assert CosignatureSigner.from_private_key(signer.private_key).key_id == signer.key_id
    with pytest.raises(NoteKeyInvalidError):
        CosignatureVerifier.from_vkey(Signer("w", RFC8032_SEED).verifier().vkey)


def test_cosignature_is_reproducible_and_verifies() -> None:
    signer = CosignatureSigner("witness.example/w1", RFC8032_SEED)
    sig = signer.cosign(SPEC_BODY, 1679315147)
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big")
    assert signer.cosign(SPEC_BODY, 1679315147) == sig  # Ed25519 is deterministic
    assert signer.verifier().verify(SPEC_BODY, sig) == 1679315147
    tampered = NoteSignature(
        sig.name, sig.key_id, (1679315148).to_bytes(8, "big") + sig.signature[8:]
    )
    with pytest.raises(CosignatureInvalidError):
        signer.verifier().verify(SPEC_BODY, tampered)  # the time is signed too


class _Log:
    def __init__(self) -> None:
        self.signer = Signer(ORIGIN, bytes(range(32)))
        self.nodes = NodeStore()
        self.state = CompactRange.empty()
        self.previous: Checkpoint | None = None

    def grow(self, count: int, tag: str = "") -> str:
        leaves = [leaf_hash(f"{tag}{self.state.size + i}".encode()) for i in range(count)]
        result = append_batch(self.state, leaves)
        self.nodes.put_many(result.nodes)
        self.state = result.state
        checkpoint = Checkpoint(ORIGIN, self.state.size, result.root)
        proof = (
            consistency_proof(self.previous.size, self.state.size, self.nodes)
            if self.previous
            else []
        )
        note = sign_checkpoint(
            checkpoint, self.signer, previous=self.previous, consistency_proof=proof
        )
        self.previous = checkpoint
        return note

    def proof(self, old: int) -> list[bytes]:
        return consistency_proof(old, self.state.size, self.nodes)


def test_witness_cosigns_a_consistent_history_and_refuses_a_fork() -> None:
    log = _Log()
    witness = CosignatureSigner("witness.example/w1", RFC8032_SEED)
    logs = {ORIGIN: [log.signer.verifier()]}
    latest: dict[str, WitnessedCheckpoint] = {}

    def submit(old: int, proof: list[bytes], note: str) -> str:
        request = parse_add_checkpoint(format_add_checkpoint(old, proof, note))
        state, line = add_checkpoint(request, logs, latest, witness, now=1700000000)
        latest[state.origin] = state
        return line

    first = log.grow(5)
    line = submit(0, [], first)
    cosigned = first + line
    checkpoint, found = open_cosigned_checkpoint(
        cosigned, [log.signer.verifier()], [witness.verifier()], min_witnesses=1
    )
    assert checkpoint.size == 5
    assert [(c.witness, c.timestamp) for c in found] == [("witness.example/w1", 1700000000)]
    with pytest.raises(CosignatureInvalidError):
        open_cosigned_checkpoint(
            first, [log.signer.verifier()], [witness.verifier()], min_witnesses=1
        )
    second = log.grow(4)
    submit(5, log.proof(5), second)
    assert latest[ORIGIN].size == 9

    # Stale view: the log thinks the witness is at 5 -> 409 with the witness's size.
    third = log.grow(2)
    with pytest.raises(WitnessConflictError) as conflict:
        submit(5, log.proof(5), third)
    assert conflict.value.known_size == 9
    assert conflict.value.status == 409

    # A fork of size 11 (another history from the same key) cannot be proven: 422.
    fork = _Log()
    fork.grow(5)
    forked = fork.grow(6, tag="x")
    with pytest.raises(WitnessProofInvalidError) as bad:
        submit(9, fork.proof(9), forked)
    assert bad.value.status == 422
    # Garbage proof for the honest next checkpoint: 422 too; the state is unchanged.
    with pytest.raises(WitnessProofInvalidError):
        submit(9, [bytes(32)] * len(log.proof(9)), third)
    assert latest[ORIGIN].size == 9
    submit(9, log.proof(9), third)
    assert latest[ORIGIN].size == 11


def test_witness_refuses_unknown_logs_foreign_keys_and_bad_requests() -> None:
    log = _Log()
    witness = CosignatureSigner("witness.example/w1", RFC8032_SEED)
    note = log.grow(3)
    with pytest.raises(WitnessUnknownLogError):
        add_checkpoint(
            parse_add_checkpoint(format_add_checkpoint(0, [], note)), {}, {}, witness, now=1
        )
    impostor = Signer(ORIGIN, bytes(32))
    with pytest.raises(WitnessForbiddenError):
        add_checkpoint(
            parse_add_checkpoint(format_add_checkpoint(0, [], note)),
            {ORIGIN: [impostor.verifier()]},
            {},
            witness,
            now=1,
        )
    with pytest.raises(WitnessRequestMalformedError):
        add_checkpoint(
            parse_add_checkpoint(format_add_checkpoint(4, [], note)),
            {ORIGIN: [log.signer.verifier()]},
            {},
            witness,
            now=1,
        )
    for body in (
        b"",
        b"old 01\n\n" + note.encode(),
        b"old 1\nnot-base64!\n\n" + note.encode(),
        b"old 1\n" + b"AAAA\n" + b"\n" + note.encode(),
        b"new 1\n\n" + note.encode(),
        b"old 0\n" + b"".join([base64.b64encode(bytes(32)) + b"\n"] * 64) + b"\n",
    ):
        with pytest.raises(WitnessRequestMalformedError):
            parse_add_checkpoint(body)
    assert parse_note(note).text.startswith(ORIGIN)
    assert tree_root(3, log.nodes) == log.state.root()
