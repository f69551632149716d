"""Text is not token ids: how far a tokenizer round-trips, and how to re-tokenize posted text.

A watermark lives in the token ids a model sampled. A detector that only has the text must
re-tokenize it, and gets those ids back only when ``encode(decode(ids)) == ids``. Tokenizers
break this in two ways: deterministically (a normalizer that lowercases or NFKC-folds
characters the vocabulary holds in both forms, a decoder that drops or tidies spaces, byte
fallback) and by segmentation (a BPE model may sample ``he`` + ``llo`` where the tokenizer
encodes ``hello``). This module measures both (:func:`measure_roundtrip`, used at publish
time) and builds the small, fixed set of re-tokenizations a detector scores
(:func:`candidate_tokenizations`): each is a function of the text and the tokenizer alone,
never of the watermark key, so a Bonferroni correction over the candidates keeps the
p-value valid. Two of them read the text as it was likely before a paste changed it (typographic
quotes and odd spaces back to ASCII; line breaks back to spaces): character-for-character
substitutions, so their offsets still point into the posted text. :func:`assess_text`
reports when a text's tokenization looks foreign.

Tokenizers are duck-typed (``encode``/``decode`` of ``transformers``; the fast backend when
present), so this module imports neither ``transformers`` nor ``tokenizers``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ASCII_PUNCTUATION",
    "PLAIN",
    "RELIABLE_TOKEN_RATE",
    "UNWRAPPED",
    "CandidateTokenization",
    "RoundTrip",
    "TextTrust",
    "assess_text",
    "candidate_tokenizations",
    "measure_roundtrip",
    "token_ids_digest",
]

# Below this token-level round-trip rate, detection from text is called unreliable. With a
# context of one token a scored (context, token) pair survives re-tokenization only when both
# tokens do, about rate**2 of them; the z-score of a watermark grows with the surviving
# fraction times sqrt(tokens), so text needs 1 / rate**4 as many tokens as ids do for the same
# evidence: 1.5x at 0.9, 4.2x at 0.7. 1.5x is the most we accept without the publisher's word.
RELIABLE_TOKEN_RATE = 0.9
PLAIN = "plain"
ASCII_PUNCTUATION = "ascii-punctuation"
UNWRAPPED = "unwrapped"
# What editors, chat apps and word processors substitute when text is pasted, mapped back
# one character to one character (so offsets keep pointing into the posted text): "smart"
# quotes and primes, and the no-break / thin / ideographic spaces some apps insert for ' '.
_PASTED_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),
        **dict.fromkeys("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                        "\u2008\u2009\u200a\u202f\u205f\u3000", " "),
    }
)  # fmt: skip
# Line wrapping and whitespace collapsing replace spaces by line breaks or the reverse; the
# original line breaks are lost either way, but reading every break as the space it most
# often was restores the tokens around each wrap point.
_BREAKS_TO_SPACES = str.maketrans(dict.fromkeys("\n\r\t\v\f\u2028\u2029", " "))
_MAX_PIECE_CHARS = 48
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class RoundTrip:
    """``encode(decode(ids))`` against ``ids`` over some sequences.

    ``kept`` counts tokens the re-encoding reproduces in place (the matching blocks of a
    diff of the two id lists), so ``token_rate`` is the fraction of tokens a detector that
    only has the text scores as sampled.
    """

    sequences: int
    exact: int
    tokens: int
    kept: int

    @property
    def sequence_rate(self) -> float:
        return self.exact / self.sequences if self.sequences else 1.0

    @property
    def token_rate(self) -> float:
        return self.kept / self.tokens if self.tokens else 1.0


def _encode(tokenizer: Any, text: str) -> list[int]:
    return [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    # What a user of the gateway sees: special tokens are never part of returned text.
    return str(tokenizer.decode(list(ids), skip_special_tokens=True))


def measure_roundtrip(tokenizer: Any, sequences: Iterable[Sequence[int]]) -> RoundTrip:
    """How many of ``sequences`` (and of their tokens) survive ``decode`` then ``encode``."""
    specials = set(getattr(tokenizer, "all_special_ids", ()) or ())
    count = exact = tokens = kept = 0
    for raw in sequences:
        ids = [int(i) for i in raw if int(i) not in specials]
        if not ids:
            continue
        again = _encode(tokenizer, _decode(tokenizer, ids))
        count += 1
        exact += again == ids
        tokens += len(ids)
        matcher = difflib.SequenceMatcher(a=ids, b=again, autojunk=False)
        kept += sum(block.size for block in matcher.get_matching_blocks())
    return RoundTrip(sequences=count, exact=exact, tokens=tokens, kept=kept)


def token_ids_digest(ids: Sequence[int]) -> str:
    """sha256 of the ids as compact JSON: what a log can record to confirm a tokenization."""
    data = json.dumps([int(i) for i in ids], separators=(",", ":")).encode("ascii")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class CandidateTokenization:
    """One re-tokenization of a text: its name, ids and character offsets (when known)."""

    name: str
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...] | None = field(default=None, compare=False)


def _plain(tokenizer: Any, text: str) -> CandidateTokenization:
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = tuple(int(i) for i in encoded["input_ids"])
        offsets = tuple((int(a), int(b)) for a, b in encoded["offset_mapping"])
        return CandidateTokenization(PLAIN, ids, offsets)
    except (NotImplementedError, KeyError, TypeError):
        return CandidateTokenization(PLAIN, tuple(_encode(tokenizer, text)), None)


def _unnormalized(tokenizer: Any, text: str) -> CandidateTokenization | None:
    """The fast backend with its normalizer removed: undoes lowercasing / Unicode folding
    that maps characters the vocabulary holds onto others."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(backend, "normalizer", None) is None:
        return None
    clone = _cached(_UNNORMALIZED, tokenizer, lambda: _without_normalizer(backend))
    encoding = clone.encode(text, add_special_tokens=False)
    return CandidateTokenization(
        "unnormalized",
        tuple(int(i) for i in encoding.ids),
        tuple((int(a), int(b)) for a, b in encoding.offsets),
    )


# Built once per tokenizer object (the gateway keeps its tokenizers), not per detection.
_UNNORMALIZED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_PIECES: weakref.WeakKeyDictionary[Any, _PieceTable] = weakref.WeakKeyDictionary()


def _cached(cache: weakref.WeakKeyDictionary[Any, Any], tokenizer: Any, build: Any) -> Any:
    try:
        found = cache.get(tokenizer)
    except TypeError:  # not weak-referenceable: build every time
        return build()
    if found is None:
        found = build()
        cache[tokenizer] = found
    return found


def _without_normalizer(backend: Any) -> Any:
    clone = type(backend).from_str(backend.to_str())
    clone.normalizer = None
    return clone


@dataclass(frozen=True)
class _PieceTable:
    """Decoded piece -> id, and per first character the longest piece starting with it (so
    the longest match tries only lengths that exist: linear in the text for real vocabularies)."""

    ids: dict[str, int]
    longest: dict[str, int]


def _piece_table(tokenizer: Any) -> _PieceTable:
    table: _PieceTable = _cached(_PIECES, tokenizer, lambda: _build_piece_table(tokenizer))
    return table


def _build_piece_table(tokenizer: Any) -> _PieceTable:
    """Each token's own decoded text -> its id (the lowest id when two decode alike)."""
    specials = set(getattr(tokenizer, "all_special_ids", ()) or ())
    size = len(tokenizer)
    table: dict[str, int] = {}
    for token_id in range(size):
        if token_id in specials:
            continue
        piece = _decode(tokenizer, [token_id])
        # Empty pieces and partial UTF-8 (U+FFFD) cannot be matched against text.
        if piece and "\ufffd" not in piece and len(piece) <= _MAX_PIECE_CHARS:
            table.setdefault(piece, token_id)
    longest: dict[str, int] = {}
    for piece in table:
        longest[piece[0]] = max(longest.get(piece[0], 0), len(piece))
    return _PieceTable(table, longest)


def _pieces(tokenizer: Any, text: str) -> CandidateTokenization | None:
    """Longest match of the text against the tokens' own decoded pieces, left to right:
    the segmentation of a model that emits whole vocabulary pieces, whatever the
    tokenizer's normalizer or merges would have made of the text. None when some
    character is covered by no piece."""
    pieces = _piece_table(tokenizer)
    table = pieces.ids
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        for size in range(min(pieces.longest.get(text[i], 0), n - i), 0, -1):
            found = table.get(text[i : i + size])
            if found is not None:
                ids.append(found)
                offsets.append((i, i + size))
                i += size
                break
        else:
            return None
    if _decode(tokenizer, ids) != text:  # a decoder that tidies spaces: not this text
        return None
    return CandidateTokenization("pieces", tuple(ids), tuple(offsets))


def _pasted(tokenizer: Any, text: str) -> list[tuple[str, CandidateTokenization]]:
    """Plain encodings of the text as it likely was before a paste changed it, each with the
    text it must spell: ASCII quotes and spaces, then also every line break as a space."""
    out: list[tuple[str, CandidateTokenization]] = []
    ascii_text = text.translate(_PASTED_PUNCTUATION)
    unwrapped = ascii_text.translate(_BREAKS_TO_SPACES)
    for name, changed in ((ASCII_PUNCTUATION, ascii_text), (UNWRAPPED, unwrapped)):
        if changed != text and not any(changed == seen for seen, _ in out):
            read = _plain(tokenizer, changed)
            out.append((changed, CandidateTokenization(name, read.ids, read.offsets)))
    return out


def candidate_tokenizations(
    tokenizer: Any, text: str, *, plain: CandidateTokenization | None = None
) -> list[CandidateTokenization]:
    """The distinct re-tokenizations of ``text`` a detector scores, the plain one first.

    Only the plain encoding is kept unconditionally; the others must decode back to exactly
    the text they read (``text`` itself, or for the pasted readings its character-for-character
    de-pasted form): a candidate that spells another text is not a reading of this one. The
    set depends on the text and the tokenizer only, so scoring all of them and keeping the
    best is corrected for by multiplying by ``len(result)`` (Bonferroni).
    """
    out = [plain if plain is not None else _plain(tokenizer, text)]
    readings: list[tuple[str, CandidateTokenization | None]] = [
        (text, make(tokenizer, text)) for make in (_unnormalized, _pieces)
    ]
    readings += list(_pasted(tokenizer, text))
    for spelled, candidate in readings:
        if candidate is None or not candidate.ids:
            continue
        if any(candidate.ids == seen.ids for seen in out):
            continue
        if _decode(tokenizer, candidate.ids) != spelled:
            continue
        out.append(candidate)
    return out


@dataclass(frozen=True)
class TextTrust:
    """Whether a text's plain tokenization can be trusted to be what a model sampled.

    ``text_roundtrip``: ``decode(encode(text)) == text`` (false when the tokenizer changes
    the text: normalization, unknown characters, tidied spaces). ``ids_roundtrip``: the
    plain ids survive ``encode(decode(ids))``. ``unknown_rate`` and ``byte_fallback_rate``:
    fractions of plain tokens that are the unknown token or ``<0xNN>`` byte pieces.
    ``replacement_chars``: U+FFFD in the text, the mark of sampled bytes that were not UTF-8
    (lost on decoding: no tokenizer gets those ids back).
    ``candidates_disagree``: another re-tokenization of the same text differs from the
    plain one (so the model could have sampled either). Informational only: a BPE's merges
    and a longest-match segmentation differ on most ordinary text.
    """

    text_roundtrip: bool
    ids_roundtrip: bool
    unknown_rate: float
    byte_fallback_rate: float
    candidates_disagree: bool
    reasons: tuple[str, ...]
    replacement_chars: int = 0

    @property
    def trusted(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "trusted": self.trusted,
            "text_roundtrip": self.text_roundtrip,
            "ids_roundtrip": self.ids_roundtrip,
            "unknown_rate": self.unknown_rate,
            "byte_fallback_rate": self.byte_fallback_rate,
            "candidates_disagree": self.candidates_disagree,
            "replacement_chars": self.replacement_chars,
            "reasons": list(self.reasons),
        }


def assess_text(
    tokenizer: Any, text: str, candidates: Sequence[CandidateTokenization]
) -> TextTrust:
    """Signals that the text was not produced through this tokenizer's own encoding."""
    plain = candidates[0].ids
    text_ok = _decode(tokenizer, plain) == text
    ids_ok = tuple(_encode(tokenizer, _decode(tokenizer, plain))) == plain
    unk = getattr(tokenizer, "unk_token_id", None)
    unknown = sum(1 for i in plain if unk is not None and i == unk) / max(1, len(plain))
    tokens = tokenizer.convert_ids_to_tokens(list(plain)) if plain else []
    byte_pieces = sum(1 for t in tokens if isinstance(t, str) and _BYTE_PIECE.match(t))
    byte_rate = byte_pieces / max(1, len(plain))
    disagree = len(candidates) > 1
    reasons: list[str] = []
    if not text_ok:
        reasons.append("the tokenizer does not decode its own encoding of this text back to it")
    if not ids_ok:
        reasons.append("the text's token ids change on decode then encode")
    if unknown > 0.01:
        reasons.append(f"{unknown:.1%} of tokens are the unknown token")
    if byte_rate > 0.05:
        reasons.append(f"{byte_rate:.1%} of tokens are byte-fallback pieces")
    replaced = text.count("\ufffd")
    if replaced:
        reasons.append(
            f"the text holds {replaced} U+FFFD replacement character(s): bytes that were not "
            "UTF-8 were lost in decoding"
        )
    return TextTrust(text_ok, ids_ok, unknown, byte_rate, disagree, tuple(reasons), replaced)
