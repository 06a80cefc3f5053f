"""Word tables for text normalization: abbreviations, units and symbols, with how each is spoken."""

from __future__ import annotations

__all__ = [
    "ABBREVIATIONS",
    "ABBREVIATIONS_ANY_CASE",
    "LETTER_FOLDS",
    "SYMBOLS",
    "UNITS",
]

#: Capitalized abbreviations with their period, read the same wherever they occur.
#: ``St.`` and ``Dr.`` are not here: they depend on context (saint/street, doctor/drive).
ABBREVIATIONS: dict[str, str] = {
    "Mr.": "mister",
    "Mrs.": "missus",
    "Ms.": "miz",
    "Messrs.": "messieurs",
    "Prof.": "professor",
    "Jr.": "junior",
    "Sr.": "senior",
    "Gen.": "general",
    "Col.": "colonel",
    "Lt.": "lieutenant",
    "Sgt.": "sergeant",
    "Capt.": "captain",
    "Cmdr.": "commander",
    "Adm.": "admiral",
    "Maj.": "major",
    "Gov.": "governor",
    "Sen.": "senator",
    "Rep.": "representative",
    "Rev.": "reverend",
    "Hon.": "honorable",
    "Pres.": "president",
    "Supt.": "superintendent",
    "Mt.": "mount",
    "Ft.": "fort",
    "Ave.": "avenue",
    "Blvd.": "boulevard",
    "Rd.": "road",
    "Co.": "company",
    "Corp.": "corporation",
    "Inc.": "incorporated",
    "Ltd.": "limited",
    "Bros.": "brothers",
    "Dept.": "department",
    "Univ.": "university",
    "Assn.": "association",
    "Fig.": "figure",
    "Vol.": "volume",
    "Jan.": "january",
    "Feb.": "february",
    "Mar.": "march",
    "Apr.": "april",
    "Jun.": "june",
    "Jul.": "july",
    "Aug.": "august",
    "Sep.": "september",
    "Sept.": "september",
    "Oct.": "october",
    "Nov.": "november",
    "Dec.": "december",
}

#: Abbreviations matched in any letter case (lower-cased corpora write ``mr.`` and ``vs.``).
#: Keys are lower case and include their dots.
ABBREVIATIONS_ANY_CASE: dict[str, str] = {
    "mr.": "mister",
    "mrs.": "missus",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "vs.": "versus",
    "vs": "versus",
    "approx.": "approximately",
    "a.m.": "a m",
    "p.m.": "p m",
}

#: Units read after a number: abbreviation (lower case) -> (singular, plural).
UNITS: dict[str, tuple[str, str]] = {
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "mph": ("mile per hour", "miles per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kb": ("kilobyte", "kilobytes"),
    "mb": ("megabyte", "megabytes"),
    "gb": ("gigabyte", "gigabytes"),
    "tb": ("terabyte", "terabytes"),
    "hz": ("hertz", "hertz"),
    "khz": ("kilohertz", "kilohertz"),
    "mhz": ("megahertz", "megahertz"),
    "ghz": ("gigahertz", "gigahertz"),
    "mp": ("megapixel", "megapixel"),
    "ms": ("millisecond", "milliseconds"),
}

#: Symbols that are spoken; every other symbol is dropped.
SYMBOLS: dict[str, str] = {
    "&": " and ",
    "%": " percent ",
    "+": " plus ",
    "@": " at ",
    "=": " equals ",
    "°": " degrees ",
    "×": " times ",
    "½": " one half ",
    "¼": " one quarter ",
    "¾": " three quarters ",
}

#: Letters that Unicode decomposition does not fold to ASCII.
LETTER_FOLDS: dict[str, str] = {
    "ß": "ss",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ø": "o",
    "Ø": "O",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "þ": "th",
    "Þ": "Th",
    "ı": "i",
}
