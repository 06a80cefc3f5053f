"""A small word language model (ARPA bigrams + lexicon) for tests of the lexicon decoder."""

from __future__ import annotations

from pathlib import Path

__all__ = ["TOY_BIGRAMS", "TOY_WORDS", "write_toy_lm"]

TOY_WORDS = ("turn", "on", "off", "the", "kitchen", "light", "lights", "in", "and", "kitten")
TOY_BIGRAMS = (
    ("<s>", "turn"),
    ("turn", "on"),
    ("turn", "off"),
    ("on", "the"),
    ("off", "the"),
    ("the", "kitchen"),
    ("kitchen", "light"),
    ("light", "</s>"),
    ("kitchen", "lights"),
    ("lights", "</s>"),
)


def write_toy_lm(folder: Path) -> Path:
    """``folder/lm.arpa`` favouring "turn on/off the kitchen light(s)" and ``folder/lexicon.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    unigrams = ["<unk>", "<s>", "</s>", *TOY_WORDS]
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(TOY_BIGRAMS)}", "", "\\1-grams:"]
    for w in unigrams:
        prob = -99.0 if w == "<s>" else -1.5
        lines.append(f"{prob}\t{w}" if w in ("</s>", "<unk>") else f"{prob}\t{w}\t-0.5")
    lines += ["", "\\2-grams:", *(f"-0.2\t{a} {b}" for a, b in TOY_BIGRAMS), "", "\\end\\", ""]
    (folder / "lm.arpa").write_text("\n".join(lines))
    (folder / "lexicon.txt").write_text("".join(f"{w}\t{' '.join(w)}\n" for w in TOY_WORDS))
    return folder
