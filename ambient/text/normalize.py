"""Text normalization for transcripts: what a speaker says, written as lower-case words.

``normalize_text`` maps arbitrary English text to the recognizer's alphabet: ``a``-``z``, the
apostrophe (inside words only) and single spaces. Numbers, money, percentages, times, ordinals,
years and decades, fractions, units, common abbreviations and a few symbols are spelled out;
HTML entities, Unicode quotes and dashes, accented letters and tokenizer artefacts (``it 's``) are
repaired; everything else is dropped. ``speakable_text`` returns the same words but keeps sentence
punctuation (``, . ? !``) so a speech synthesizer can phrase the sentence; removing that
punctuation gives exactly ``normalize_text``. Both are pure, deterministic functions.

Conventions (chosen so that a transcript is unambiguous for the acoustic model):
- Apostrophes survive only between letters: ``students'`` -> ``students``, ``'em`` -> ``em``.
- Hyphens separate words: ``three-inch-wide`` -> ``three inch wide``.
- Dotted acronyms are spelled (``U.S.`` -> ``u s``); undotted ones stay words (``NASA`` -> ``nasa``).
- Cardinals follow ``num2words`` (``105`` -> ``one hundred and five``); four-digit numbers from 1100
  to 2099 are read as years (``1984`` -> ``nineteen eighty four``).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable

from ambient.text import numbers
from ambient.text.abbreviations import (
    ABBREVIATIONS,
    ABBREVIATIONS_ANY_CASE,
    LETTER_FOLDS,
    SYMBOLS,
    UNITS,
)

__all__ = ["normalize_text", "speakable_text"]

# --- characters -------------------------------------------------------------------------------

_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "`": "'", "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"',
        "\u2013": "-", "\u2012": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
        "\u2014": " -- ", "\u2015": " -- ",
        "\u2026": "...",
        "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "", "\u00ad": "",
        "\u2122": "", "\u00ae": "", "\u00a9": "",
        "\u00bd": " one half ", "\u00bc": " one quarter ", "\u00be": " three quarters ",
    }
)  # fmt: skip

_MOJIBAKE = re.compile("[\u00c3\u00c2]|\u00e2\u20ac")
_MOJIBAKE_DEBRIS = re.compile("\u00e2\u20ac.?|[\u00c3\u00c2](?![a-z\u00e0-\u00ff])")
_CLITIC_NT = re.compile(r"(?i)\b([a-z]+) (n't)\b")
_CLITIC = re.compile(r"(?i)([a-z]) '(s|re|ve|ll|d|m)\b")

# --- abbreviations ----------------------------------------------------------------------------


def _alternation(keys: list[str]) -> str:
    return "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))


_ABBR = re.compile(rf"(?<![\w.])({_alternation(list(ABBREVIATIONS))})")
_ABBR_ANY = re.compile(rf"(?i)(?<![\w.])({_alternation(list(ABBREVIATIONS_ANY_CASE))})(?![\w])")
_TITLE_NO_DOT = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof|St)\b(?= [A-Z])")
_TITLE_NO_DOT_WORDS = {
    "Mr": "mister", "Mrs": "missus", "Ms": "miz", "Dr": "doctor", "Prof": "professor", "St": "saint",
}  # fmt: skip
# "Dr." and "St." before a capitalized word are titles; after one (and not before one) they are
# street names: "Dr. Smith", "St. Louis" but "Mulholland Dr.", "Main St.".
_DR_ST = re.compile(r"(?i)(?<![\w.])(dr|st)\.(?=(\s+(?-i:[A-Z]))?)")
_NUMBER_ABBR = re.compile(r"(?i)\b(no|nos)\.\s?(?=\d)|#\s?(?=\d)")
_PHD = re.compile(r"\bPh\.\s?D\.")
_DOTTED_ACRONYM = re.compile(r"(?<![\w.])((?:[A-Za-z]\.){2,})")
_INITIAL = re.compile(r"(?<![\w.])([A-Z])\.(?=\s+[A-Z])")
_DOT_DOMAIN = re.compile(r"(?i)(?<=[a-z])\.(?=(?:com|org|net|edu|gov)\b)")

# --- numbers ----------------------------------------------------------------------------------

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+)"
_CURRENCY = re.compile(
    rf"(?<![\w])(?:US|AU|NZ|A|C|HK)?([$£€¥])(?:US|AU|NZ|A|C|HK)?\s?({_NUM})"
    r"(?:\s?(thousand|million|billion|trillion)\b|(bn|[mbk])\b)?",
    re.IGNORECASE,
)
_SCALE_LETTERS = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}
_PERCENT = re.compile(rf"({_NUM})\s?%")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::\d{2})?(?![\d:])(\s?[ap]\.?m\.?(?![a-z]))?", re.I)
_AM_PM = re.compile(r"(?i)(\d)\s?([ap])\.?m\.?(?![a-z])")
_ORDINAL = re.compile(r"(?i)\b(\d+)(st|nd|rd|th)\b")
_DECADE = re.compile(r"(?i)(?<![\w'])'?(\d{0,2}\d0)'?s\b")
_FRACTION = re.compile(r"(?<![\d/])(?:(\d+)\s+)?(\d+)/(\d+)(?![\d/])")
_MONEY_RANGE = re.compile(r"(?<=\d)\s?-\s?(?=[$£€¥]\d)")
_RANGE = re.compile(r"(?<=\d)\s?-\s?(?=\d)")
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")
_UNIT = re.compile(
    rf"({_NUM})\s?({_alternation(list(UNITS))})(?![\w])",
    re.IGNORECASE,
)
_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")
_NUMBER = re.compile(_NUM)

# --- symbols and words ------------------------------------------------------------------------

_SYMBOL = re.compile(_alternation(list(SYMBOLS)))
_DASH = re.compile(r"\s+-+\s+|--+|[()\[\]{}]")
_LETTER_FOLD = re.compile(_alternation(list(LETTER_FOLDS)))
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*|[.!?]+|[,;:]")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_PUNCT_RANK = {",": 1, ".": 2, "!": 3, "?": 4}


def _sub(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], s: str) -> str:
    return pattern.sub(lambda m: f" {repl(m)} ", s)


def _fix_encoding(s: str) -> str:
    """Repair UTF-8 text that was decoded as cp1252 (``â€™``); drop what cannot be repaired."""
    if not _MOJIBAKE.search(s):
        return s
    try:
        return s.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return _MOJIBAKE_DEBRIS.sub(" ", s)


def _dr_st(m: re.Match[str]) -> str:
    word = m.group(1).lower()
    if m.group(2):  # a capitalized word follows: a title
        return "doctor" if word == "dr" else "saint"
    before = m.string[: m.start()].rstrip()
    prev = before.rsplit(" ", 1)[-1] if before else ""
    if prev[:1].isupper() or prev[:1].isdigit():
        return "drive" if word == "dr" else "street"
    return "doctor" if word == "dr" else "saint"


def _abbreviations(s: str) -> str:
    if "." in s:
        s = _PHD.sub(" p h d ", s)
        s = _sub(_ABBR_ANY, lambda m: ABBREVIATIONS_ANY_CASE[m.group(1).lower()], s)
        s = _sub(_ABBR, lambda m: ABBREVIATIONS[m.group(1)], s)
        s = _sub(_DR_ST, _dr_st, s)
        s = _sub(_DOTTED_ACRONYM, lambda m: " ".join(m.group(1).replace(".", "")), s)
        s = _INITIAL.sub(r"\1", s)
        s = _DOT_DOMAIN.sub(" dot ", s)
    else:
        s = _sub(_ABBR_ANY, lambda m: ABBREVIATIONS_ANY_CASE[m.group(1).lower()], s)
    s = _sub(_TITLE_NO_DOT, lambda m: _TITLE_NO_DOT_WORDS[m.group(1)], s)
    return s


def _num(s: str) -> str:
    """A matched number (``1,234``, ``3.5``, ``.5``, ``1984``) in words."""
    if "." in s:
        return numbers.decimal(s)
    if "," not in s and len(s) == 4 and 1100 <= int(s) <= 2099:
        return numbers.year(int(s))
    return numbers.number(s)


def _currency(m: re.Match[str]) -> str:
    scale = m.group(3) or _SCALE_LETTERS.get((m.group(4) or "").lower())
    return numbers.money(m.group(1), m.group(2), scale.lower() if scale else None)


def _time(m: re.Match[str]) -> str:
    hour, minute, suffix = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or minute > 59:  # a ratio or a verse reference, not a clock time
        return f"{numbers.cardinal(hour)} {numbers.number(m.group(2))}"
    words = numbers.cardinal(hour)
    if minute == 0:
        words += "" if suffix else " o'clock"
    elif minute < 10:
        words += f" oh {numbers.cardinal(minute)}"
    else:
        words += f" {numbers.cardinal(minute)}"
    if suffix:
        words += f" {suffix.strip()[0].lower()} m"
    return words


def _decade(m: re.Match[str]) -> str:
    s = m.group(1)
    n = int(s)
    words = (_num(s) if len(s) == 4 else numbers.cardinal(n)).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " ".join(words)


def _fraction(m: re.Match[str]) -> str:
    whole, num, den = m.group(1), m.group(2), m.group(3)
    words = numbers.fraction(int(num), int(den))
    if words is None:
        words = f"{_num(num)} {_num(den)}"
        return f"{_num(whole)} {words}" if whole else words
    return f"{_num(whole)} and {words}" if whole else words


def _unit(m: re.Match[str]) -> str:
    one, many = UNITS[m.group(2).lower()]
    return f"{_num(m.group(1))} {one if m.group(1) == '1' else many}"


def _numbers(s: str) -> str:
    s = _sub(_NUMBER_ABBR, lambda m: "number", s)
    s = _MONEY_RANGE.sub(" to ", s)
    s = _sub(_CURRENCY, _currency, s)
    s = _sub(_PERCENT, lambda m: f"{_num(m.group(1))} percent", s)
    s = _sub(_TIME, _time, s)
    s = _AM_PM.sub(r"\1 \2 m ", s)
    s = _sub(_ORDINAL, lambda m: numbers.ordinal(int(m.group(1))), s)
    s = _sub(_DECADE, _decade, s)
    s = _sub(_FRACTION, _fraction, s)
    s = _RANGE.sub(" to ", s)
    s = _NEGATIVE.sub(" minus ", s)
    s = _sub(_UNIT, _unit, s)
    s = _DIGIT_LETTER.sub(" ", s)
    return _sub(_NUMBER, lambda m: _num(m.group(0)), s)


def _fold(s: str) -> str:
    """Accented and other non-ASCII letters folded to ASCII (``café`` -> ``cafe``)."""
    if s.isascii():
        return s
    s = _LETTER_FOLD.sub(lambda m: LETTER_FOLDS[m.group(0)], s)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def _expand(s: str) -> str:
    """Everything spelled out, lower-cased, with punctuation still in place."""
    if "&" in s:
        s = html.unescape(html.unescape(s))
    s = _fix_encoding(s)
    s = unicodedata.normalize("NFKC", s.translate(_CHAR_MAP))
    if "'" in s:
        s = _CLITIC.sub(r"\1'\2", _CLITIC_NT.sub(r"\1\2", s))
    s = _abbreviations(s)
    if any(c.isdigit() for c in s):
        s = _numbers(s)
    s = _SYMBOL.sub(lambda m: SYMBOLS[m.group(0)], s)
    s = _DASH.sub(" , ", s)
    return _fold(s).lower()


def normalize_text(s: str) -> str:
    """``s`` as the words a speaker says: lower-case ``a``-``z``, inner apostrophes, single spaces.

    >>> normalize_text("Dr. Smith paid $5.50 on Jan. 3rd, 1984 -- it's 100% true!")
    "doctor smith paid five dollars fifty cents on january third nineteen eighty four it's one hundred percent true"
    """
    return " ".join(_WORD.findall(_expand(s)))


def speakable_text(s: str) -> str:
    """The words of ``normalize_text(s)`` with sentence punctuation (``, . ? !``) kept for phrasing.

    Punctuation is attached to the preceding word; runs collapse to the strongest mark; ``;`` and
    ``:`` become commas. Deleting the punctuation yields exactly ``normalize_text(s)``.
    """
    out: list[str] = []
    marks: list[str] = []
    for tok in _TOKEN.findall(_expand(s)):
        if tok[0].isalpha():
            out.append(tok)
            marks.append("")
            continue
        if not out:
            continue
        mark = "," if tok in (";", ":") else max(set(tok), key=_PUNCT_RANK.__getitem__)
        if _PUNCT_RANK[mark] > _PUNCT_RANK.get(marks[-1], 0):
            marks[-1] = mark
    return " ".join(w + p for w, p in zip(out, marks, strict=True))
