"""Numbers spelled out as the words a speaker says: cardinals, ordinals, years, decimals, money.

All functions return lower-case words separated by single spaces (no hyphens, no commas), so their
output can be dropped straight into a transcript. ``num2words`` does the language work; results are
cached because training text repeats the same few numbers many times. ``num2words`` loads every
language it knows on import (≈ 4 MB resident), so it is imported on the first number, not with
this module: the daemon normalizes phrase lists with it and must not pay for it when they hold none.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = [
    "cardinal",
    "decimal",
    "digits",
    "fraction",
    "money",
    "number",
    "ordinal",
    "year",
]

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Longest digit string read as one cardinal; longer strings (phone numbers, ids) are read digit by digit.
_MAX_CARDINAL_DIGITS = 12

#: Money units: symbol -> (singular, plural, minor singular, minor plural).
_CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
}

_DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def num2words(n: int, **kwargs: Any) -> str:
    """``num2words.num2words`` in English, imported on first use."""
    from num2words import num2words as convert

    return str(convert(n, **kwargs))


def _clean(words: str) -> str:
    return " ".join(words.replace("-", " ").replace(",", " ").split())


@lru_cache(maxsize=65536)
def cardinal(n: int) -> str:
    """``1234`` -> ``"one thousand two hundred and thirty four"``; negative numbers get ``minus``."""
    if n < 0:
        return "minus " + cardinal(-n)
    return _clean(num2words(n))


@lru_cache(maxsize=4096)
def ordinal(n: int) -> str:
    """``21`` -> ``"twenty first"``."""
    return _clean(num2words(n, to="ordinal"))


@lru_cache(maxsize=4096)
def year(n: int) -> str:
    """``1984`` -> ``"nineteen eighty four"``, ``1900`` -> ``"nineteen hundred"``, ``2010`` -> ``"twenty ten"``."""
    return _clean(num2words(n, to="year"))


def digits(s: str) -> str:
    """Each digit of ``s`` as a word: ``"007"`` -> ``"zero zero seven"``. Non-digits are ignored."""
    return " ".join(_DIGIT_WORDS[int(c)] for c in s if c.isdigit())


def number(s: str) -> str:
    """A digit string as a speaker reads it (no sign, no separators).

    Leading zeros (``"007"``) and very long strings are read digit by digit; everything else is a
    cardinal.
    """
    s = s.replace(",", "")
    if not s.isdigit():
        raise ValueError(f"not a digit string: {s!r}")
    if (len(s) > 1 and s[0] == "0") or len(s) > _MAX_CARDINAL_DIGITS:
        return digits(s)
    return cardinal(int(s))


def decimal(s: str) -> str:
    """``"3.14"`` -> ``"three point one four"``, ``".5"`` -> ``"point five"``, ``"1,000.5"`` too."""
    whole, _, frac = s.replace(",", "").partition(".")
    head = number(whole) + " " if whole else ""
    if not frac:
        return head.strip()
    return f"{head}point {digits(frac)}"


def fraction(num: int, den: int) -> str | None:
    """A proper fraction with a small denominator: ``(3, 4)`` -> ``"three quarters"``.

    Returns ``None`` when the pair is not read as a fraction (``24/7``, ``9/11``), so the caller can
    read the two numbers separately.
    """
    if not (0 < num < den <= 10):
        return None
    if den in _DENOMINATORS:
        one, many = _DENOMINATORS[den]
    else:
        one = ordinal(den)
        many = one + "s"
    if num == 1:
        return f"one {one}" if den != 2 else "one half"
    return f"{cardinal(num)} {many}"


def money(symbol: str, amount: str, scale: str | None = None) -> str:
    """Spoken money: ``("$", "5")`` -> ``"five dollars"``, ``("$", "5.50")`` -> ``"five dollars fifty cents"``,
    ``("$", "1.5", "million")`` -> ``"one point five million dollars"``.

    ``scale`` is a word such as ``"million"``; with a scale the amount is read as a decimal.
    Unknown symbols raise ``ValueError``.
    """
    try:
        unit_one, unit_many, minor_one, minor_many = _CURRENCIES[symbol]
    except KeyError:
        raise ValueError(f"unknown currency symbol {symbol!r}") from None
    amount = amount.replace(",", "")
    if scale:
        return f"{decimal(amount)} {scale} {unit_many}"
    whole, _, frac = amount.partition(".")
    units = int(whole) if whole else 0
    parts: list[str] = []
    if units or not frac:
        parts.append(f"{number(whole or '0')} {unit_one if units == 1 else unit_many}")
    if frac:
        if len(frac) == 2:
            cents = int(frac)
            if cents:
                parts.append(f"{cardinal(cents)} {minor_one if cents == 1 else minor_many}")
        else:
            # "$1.5" or "$0.125": read as a decimal amount of the main unit.
            return f"{decimal(amount)} {unit_many}"
    return " ".join(parts) if parts else f"zero {unit_many}"
