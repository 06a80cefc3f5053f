"""Output units for CTC: characters by default, or sentencepiece BPE units (for 8x subsampling).

Id 0 is always the CTC blank. A tokenizer serializes to a small dict stored in the checkpoint.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CharTokenizer", "SentencePieceTokenizer", "Tokenizer", "tokenizer_from_dict"]

CHARS = " 'abcdefghijklmnopqrstuvwxyz"


class Tokenizer(Protocol):
    """What the model, decoder and trainer need from a tokenizer."""

    blank_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Normalized text -> unit ids (no blanks)."""
        ...

    def id_to_piece(self, i: int) -> str:
        """The text of one unit; a word boundary is marked by a leading space."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Unit ids -> text (single spaces, stripped)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Serializable form for the checkpoint."""
        ...


class CharTokenizer:
    """Blank, space, apostrophe and ``a``–``z`` (29 units). Unknown characters are dropped."""

    blank_id = 0

    def __init__(self) -> None:
        self._pieces = ["<blank>", *CHARS]
        self._index = {ch: i + 1 for i, ch in enumerate(CHARS)}
        self.vocab_size = len(self._pieces)

    def encode(self, text: str) -> list[int]:
        """Characters to ids; spaces collapse, the ends are stripped."""
        return [self._index[ch] for ch in " ".join(text.lower().split()) if ch in self._index]

    def id_to_piece(self, i: int) -> str:
        """One character (``" "`` for the word boundary)."""
        return self._pieces[i]

    def decode(self, ids: list[int]) -> str:
        """Ids to text."""
        return " ".join("".join(self._pieces[i] for i in ids if i != self.blank_id).split())

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "char"}``."""
        return {"type": "char"}


class SentencePieceTokenizer:
    """A sentencepiece model (BPE/unigram); ids are shifted by one so that 0 is the blank."""

    blank_id = 0

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = int(self._sp.get_piece_size()) + 1

    def encode(self, text: str) -> list[int]:
        """Text to unit ids (shifted past the blank)."""
        return [i + 1 for i in self._sp.encode(text.lower())]

    def id_to_piece(self, i: int) -> str:
        """The unit's text with the word-boundary marker as a leading space."""
        return str(self._sp.id_to_piece(i - 1)).replace("\u2581", " ")

    def decode(self, ids: list[int]) -> str:
        """Ids to text."""
        return " ".join(str(self._sp.decode([i - 1 for i in ids if i != self.blank_id])).split())

    def to_dict(self) -> dict[str, Any]:
        """The serialized sentencepiece model."""
        return {"type": "sentencepiece", "model": self._proto}


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict` output."""
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer()
    if kind == "sentencepiece":
        return SentencePieceTokenizer(bytes(data["model"]))
    raise ValueError(f"unknown tokenizer type {kind!r}")
