"""c2sp.org/tlog-proof@v1 receipts: format, strict parsing and offline verification."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import (
    NoteUnverifiedError,
    ReceiptMalformedError,
    TlogProofInvalidError,
    TransparencyLogError,
)
from licensing.tlog.checkpoint import Checkpoint, sign_checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import NodeStore, inclusion_proof, leaf_hash
from licensing.tlog.note import Signer, Verifier
from licensing.tlog.receipt import format_receipt, parse_receipt, verify_receipt

ORIGIN = "log.example/tiergate"

# The example from c2sp.org/tlog-proof (its signatures are elided with [...] in the spec).
SPEC_EXAMPLE = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u2014 example.com/fancylog hI2DJw[...]1roloI=
"""


def test_spec_example_shape_parses() -> None:
    r = parse_receipt(SPEC_EXAMPLE)
    assert r.index == 73894
    assert len(r.inclusion_proof) == 5
    assert r.inclusion_proof[0] == base64.b64decode("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    assert r.extra == base64.b64decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
    assert r.checkpoint_note.startswith("example.com/fancylog\n109482\n")
    assert format_receipt(r.index, r.inclusion_proof, r.checkpoint_note, r.extra) == SPEC_EXAMPLE


class _Log:
    def __init__(self, entries: list[bytes]) -> None:
        self.signer = Signer.generate(ORIGIN)
        self.entries = entries
        result = append_batch(CompactRange.empty(), [leaf_hash(e) for e in entries])
        self.store = NodeStore(result.nodes)
        self.note = sign_checkpoint(
            Checkpoint(ORIGIN, len(entries), result.root), self.signer, previous=None
        )

    def receipt(self, index: int, extra: bytes | None = None) -> str:
        proof = inclusion_proof(index, len(self.entries), self.store)
        return format_receipt(index, proof, self.note, extra)

    @property
    def vkey(self) -> Verifier:
        return Verifier.from_vkey(self.signer.verifier().vkey)


LOG = _Log([b"call %d" % i for i in range(13)])


@pytest.mark.parametrize("index", range(13))
def test_every_receipt_verifies(index: int) -> None:
    verified = verify_receipt(LOG.entries[index], LOG.receipt(index), [LOG.vkey], origin=ORIGIN)
    assert verified.index == index
    assert verified.checkpoint.size == 13
    assert verified.extra is None


def test_extra_is_carried_but_unauthenticated() -> None:
    text = LOG.receipt(4, extra=b"context")
    assert text.splitlines()[1] == "extra " + base64.b64encode(b"context").decode()
    assert verify_receipt(LOG.entries[4], text, [LOG.vkey]).extra == b"context"


def test_wrong_entry_or_index_fails() -> None:
    with pytest.raises(TlogProofInvalidError):
        verify_receipt(b"other entry", LOG.receipt(3), [LOG.vkey])
    with pytest.raises(TlogProofInvalidError):
        verify_receipt(LOG.entries[3], LOG.receipt(3).replace("index 3", "index 5"), [LOG.vkey])


def test_wrong_key_fails() -> None:
    with pytest.raises(NoteUnverifiedError):
        verify_receipt(LOG.entries[0], LOG.receipt(0), [Signer.generate(ORIGIN).verifier()])


def test_single_entry_log_has_empty_path() -> None:
    log = _Log([b"only"])
    text = log.receipt(0)
    assert "index 0\n\n" in text
    assert verify_receipt(b"only", text, [log.vkey]).index == 0


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        lambda t: t.replace("index 3", "index 03"),
        lambda t: t.replace("index 3", "index -3"),
        lambda t: t.replace("index 3", "idx 3"),
        lambda t: t.replace("index 3\n", "index 3\nnot-base64!\n"),
        lambda t: t.replace("index 3\n", "index 3\nAAAA\n"),
        lambda t: t.split("\n\n")[0],
        lambda t: t.split("\n\n")[0] + "\n\n",
        lambda t: "\ufeff" + t,
    ],
)
def test_malformed_receipts(mangle: object) -> None:
    assert callable(mangle)
    with pytest.raises(ReceiptMalformedError):
        parse_receipt(mangle(LOG.receipt(3)))


def test_too_many_hashes() -> None:
    h = base64.b64encode(bytes(32)).decode()
    text = "c2sp.org/tlog-proof@v1\nindex 0\n" + (h + "\n") * 65 + "\n" + LOG.note
    with pytest.raises(ReceiptMalformedError):
        parse_receipt(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_receipts_fail_only_with_our_errors(text: str) -> None:
    with contextlib.suppress(TransparencyLogError):
        verify_receipt(b"x", "c2sp.org/tlog-proof@v1\n" + text, [LOG.vkey])
