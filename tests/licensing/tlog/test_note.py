"""Signed notes against the C2SP spec example and the golang.org/x/mod/sumdb/note vectors."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import (
    NoteKeyInvalidError,
    NoteMalformedError,
    NoteSignatureInvalidError,
    NoteUnverifiedError,
    TransparencyLogError,
)
from licensing.tlog.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    NoteSignature,
    Signer,
    Verifier,
    format_note,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

# golang.org/x/mod/sumdb/note note_test.go: the PeterNeumann key pair and its signed note.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG

# c2sp.org/signed-note: the spec's example (its public key is not published).
SPEC_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed \u00e8 subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def test_go_vector_keys_round_trip() -> None:
    verifier = Verifier.from_vkey(GO_VKEY)
    signer = Signer.from_private_key(GO_SKEY)
    assert verifier.name == signer.name == "PeterNeumann"
    assert verifier.key_id == signer.key_id == 0xC74F20A3
    assert verifier.vkey == GO_VKEY == signer.verifier().vkey
    assert signer.private_key == GO_SKEY
    assert GO_SKEY not in repr(signer)


def test_go_vector_signature_is_reproduced_byte_for_byte() -> None:
    # Ed25519 is deterministic, so our signer must produce the published note exactly.
    assert sign_note(GO_TEXT, [Signer.from_private_key(GO_SKEY)]) == GO_NOTE


def test_go_vector_note_opens() -> None:
    opened = open_note(GO_NOTE, [Verifier.from_vkey(GO_VKEY)])
    assert opened.text == GO_TEXT
    assert [v.vkey for v in opened.verified_by] == [GO_VKEY]
    assert open_note(GO_NOTE.encode(), [Verifier.from_vkey(GO_VKEY)]).text == GO_TEXT


def test_spec_example_parses_with_blank_line_inside_text() -> None:
    note = parse_note(SPEC_NOTE)
    assert note.text == (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n"
        "ed \u00e8 subito sera.\n"
    )
    (sig,) = note.signatures
    assert sig.name == "quasimodo.example/salvatore"
    assert len(sig.signature) == 64
    assert format_note(note.text, note.signatures) == SPEC_NOTE


def test_spec_example_is_not_trusted_by_an_unrelated_key_of_the_same_name() -> None:
    other = Signer.generate("quasimodo.example/salvatore").verifier()
    with pytest.raises(NoteUnverifiedError):
        open_note(SPEC_NOTE, [other])


def test_key_id_is_sha256_of_name_newline_type_key() -> None:
    verifier = Verifier.from_vkey(GO_VKEY)
    assert key_id("PeterNeumann", 1, verifier.public_key) == 0xC74F20A3


def test_tampered_text_from_known_key_is_rejected() -> None:
    bad = GO_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(NoteSignatureInvalidError):
        open_note(bad, [Verifier.from_vkey(GO_VKEY)])


def test_unknown_signers_are_ignored_but_one_trusted_is_required() -> None:
    stranger = Signer.generate("stranger.example")
    both = sign_note(GO_TEXT, [stranger, Signer.from_private_key(GO_SKEY)])
    opened = open_note(both, [Verifier.from_vkey(GO_VKEY)])
    assert [s.name for s in opened.unverified] == ["stranger.example"]
    with pytest.raises(NoteUnverifiedError):
        open_note(sign_note(GO_TEXT, [stranger]), [Verifier.from_vkey(GO_VKEY)])
    with pytest.raises(NoteUnverifiedError):
        open_note(GO_NOTE, [])


def test_same_name_different_id_is_unknown_not_invalid() -> None:
    impostor = Signer.generate("PeterNeumann")
    note = sign_note(GO_TEXT, [impostor]) + GO_SIG
    assert open_note(note, [Verifier.from_vkey(GO_VKEY)]).text == GO_TEXT


def test_bad_signature_from_known_key_rejects_whole_note() -> None:
    signer = Signer.generate("log.example")
    forged = NoteSignature(signer.name, signer.key_id, bytes(64))
    note = format_note(GO_TEXT, [forged, *parse_note(GO_NOTE).signatures])
    with pytest.raises(NoteSignatureInvalidError):
        open_note(note, [signer.verifier(), Verifier.from_vkey(GO_VKEY)])


@pytest.mark.parametrize(
    "note",
    [
        "",
        GO_TEXT,  # no signatures
        GO_TEXT + "\n",  # blank line but no signatures
        GO_NOTE[:-1],  # no final newline
        GO_TEXT + GO_SIG,  # no blank line
        "\n" + GO_SIG,  # empty text
        GO_TEXT + "\n" + GO_SIG.replace("\u2014", "-"),
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann ", "PeterNeumann"),
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann", "Peter+Neumann"),
        GO_TEXT + "\n" + GO_SIG.replace("x08go", "x08g!"),
        GO_TEXT + "\n" + GO_SIG.replace("AM=", "AN="),  # non-canonical base64 padding bits
        GO_TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",  # shorter than a key id + 1 byte
        GO_TEXT.replace("\n", "\r\n", 1) + "\n" + GO_SIG,
        GO_TEXT.replace("you", "y\tou", 1) + "\n" + GO_SIG,
        GO_TEXT + "\n" + GO_SIG + "\n",  # trailing blank line
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(NoteMalformedError):
        parse_note(note)
    with pytest.raises(NoteMalformedError):
        open_note(note, [Verifier.from_vkey(GO_VKEY)])


def test_invalid_utf8_and_size_limits() -> None:
    with pytest.raises(NoteMalformedError):
        parse_note(b"\xff\xfe\n\n" + GO_SIG.encode())
    with pytest.raises(NoteMalformedError):
        parse_note("\ud800\n\n" + GO_SIG)
    with pytest.raises(NoteMalformedError):
        parse_note("a" * MAX_NOTE_BYTES + "\n\n" + GO_SIG)
    with pytest.raises(NoteMalformedError):
        parse_note(GO_TEXT + "\n" + GO_SIG * (MAX_SIGNATURES + 1))
    # The spec requires accepting at least 16 signatures.
    assert len(parse_note(GO_TEXT + "\n" + GO_SIG * 16).signatures) == 16


def test_vkey_manglings_are_rejected_with_typed_errors() -> None:
    # Mirrors TestNewVerifier in sumdb/note: every substring and single-byte change fails.
    b = GO_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(NoteKeyInvalidError):
                    Verifier.from_vkey(b[i:j])
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        with pytest.raises(NoteKeyInvalidError):
            Verifier.from_vkey(mangled)
    with pytest.raises(NoteKeyInvalidError):
        Verifier.from_vkey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


@pytest.mark.parametrize(
    "skey",
    [
        GO_SKEY.removeprefix("PRIVATE+KEY+"),
        GO_SKEY.replace("c74f20a3", "c74f20a4"),
        GO_SKEY.replace("+AYEK", "+AoEK"),  # wrong algorithm byte
        GO_SKEY[:-4],
        "PRIVATE+KEY+bad name+c74f20a3+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
    ],
)
def test_bad_private_keys(skey: str) -> None:
    with pytest.raises(NoteKeyInvalidError):
        Signer.from_private_key(skey)


def test_generated_key_round_trips() -> None:
    signer = Signer.generate("log.example/tiergate")
    again = Signer.from_private_key(signer.private_key)
    assert again.key_id == signer.key_id
    verifier = Verifier.from_vkey(signer.verifier().vkey)
    note = sign_note("hello\n", [again])
    assert open_note(note, [verifier]).text == "hello\n"


def test_signing_rejects_text_without_final_newline() -> None:
    with pytest.raises(NoteMalformedError):
        sign_note("no newline", [Signer.generate("a")])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_input_fails_only_with_our_errors(data: str | bytes) -> None:
    with contextlib.suppress(TransparencyLogError):
        open_note(data, [Verifier.from_vkey(GO_VKEY)])
    with contextlib.suppress(TransparencyLogError):
        Verifier.from_vkey(data if isinstance(data, str) else data.decode("latin-1"))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20), max_size=200))
def test_any_text_round_trips_through_sign_and_open(body: str) -> None:
    text = body.replace("\n", "") + "x\n"
    signer = Signer.from_private_key(GO_SKEY)
    try:
        note = sign_note(text, [signer])
    except NoteMalformedError:
        return  # surrogates cannot be UTF-8 encoded
    assert open_note(note, [signer.verifier()]).text == text


def test_surrogates_raise_our_error_not_unicode_error() -> None:
    # Regression: sign_note leaked UnicodeEncodeError for a lone surrogate in the text.
    with pytest.raises(NoteMalformedError):
        sign_note("\ud800\n", [Signer.from_private_key(GO_SKEY)])
    with pytest.raises(NoteKeyInvalidError):
        Signer.generate("bad\ud800name")


def test_truncated_signature_from_known_key_is_invalid() -> None:
    signer = Signer.generate("log.example")
    note = format_note("hi\n", [NoteSignature(signer.name, signer.key_id, b"\x01" * 3)])
    with pytest.raises(NoteSignatureInvalidError):
        open_note(note, [signer.verifier()])
