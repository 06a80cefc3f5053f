"""Text normalization: many concrete cases plus properties over arbitrary text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ambient.text import normalize_text, speakable_text
from ambient.text.numbers import cardinal, decimal, fraction, money, number, ordinal, year

CASES: list[tuple[str, str]] = [
    # letters, case, spacing, punctuation
    ("Hello,   World!", "hello world"),
    ("  Tabs\tand\nnewlines  ", "tabs and newlines"),
    ("What?! No... way.", "what no way"),
    ("three-inch-wide pieces", "three inch wide pieces"),
    ("and/or", "and or"),
    ("(parenthetical) [bracketed] {braced}", "parenthetical bracketed braced"),
    ("well -- maybe", "well maybe"),
    # apostrophes and tokenizer artefacts
    ("it 's a movie that does n't work , and ca n't", "it's a movie that doesn't work and can't"),
    ("i 'm sure they 're here and we 've seen it", "i'm sure they're here and we've seen it"),
    ("wo n't", "won't"),
    ("The students' books", "the students books"),
    ("'Tis the season, rock 'n' roll", "tis the season rock n roll"),
    ("o'clock O'Brien", "o'clock o'brien"),
    ("`paradigm' and ``quoted''", "paradigm and quoted"),
    # unicode quotes, dashes, accents, html, mojibake
    ("\u201cQuoted\u201d \u2018single\u2019 \u2014 dash\u2026 end", "quoted single dash end"),
    ("don\u2019t", "don't"),
    ("Caf\u00e9 na\u00efve \u00d8resund stra\u00dfe \u00c6sop", "cafe naive oresund strasse aesop"),
    ("Value &amp; Resolution", "value and resolution"),
    ("&#214;tzi the iceman", "otzi the iceman"),
    ("&amp;amp; double", "and double"),
    ("don\u00e2\u20ac\u2122t panic", "don't panic"),
    ("some way \u00c3\u00c2 we can't", "some way we can't"),
    ("Beyonc\u00e9 \u00a0 r\u00e9sum\u00e9", "beyonce resume"),
    ("\u4e2d\u6587 text", "text"),
    # cardinals, decimals, separators
    ("I have 2 cats", "i have two cats"),
    ("0 and 13 and 105", "zero and thirteen and one hundred and five"),
    ("1,000,000 people", "one million people"),
    ("It costs 3.14 now", "it costs three point one four now"),
    ("0.5 and .25", "zero point five and point two five"),
    ("-5 degrees", "minus five degrees"),
    ("+5 points", "plus five points"),
    ("agent 007", "agent zero zero seven"),
    ("call 1234567890123", "call one two three four five six seven eight nine zero one two three"),
    # years and decades
    ("in 1984", "in nineteen eighty four"),
    ("in 1900 and 1905", "in nineteen hundred and nineteen oh five"),
    ("in 2008", "in two thousand and eight"),
    ("in 2019", "in twenty nineteen"),
    ("from 1990-1995", "from nineteen ninety to nineteen ninety five"),
    ("the 1990s and the '80s and the 1920's", "the nineteen nineties and the eighties and the nineteen twenties"),
    ("about 1050 items", "about one thousand and fifty items"),
    # ordinals
    ("the 1st, 2nd, 3rd and 21st", "the first second third and twenty first"),
    ("the 105th Congress", "the one hundred and fifth congress"),
    # money and percentages
    ("$5", "five dollars"),
    ("$1", "one dollar"),
    ("$5.50", "five dollars fifty cents"),
    ("$0.99", "ninety nine cents"),
    ("$1.01", "one dollar one cent"),
    ("$1.5 million", "one point five million dollars"),
    ("$3bn and $2m and $5k", "three billion dollars and two million dollars and five thousand dollars"),
    ("$US5 billion", "five billion dollars"),
    ("US$20", "twenty dollars"),
    ("\u00a320 and \u00a31", "twenty pounds and one pound"),
    ("\u20ac1 and \u20ac3.50", "one euro and three euros fifty cents"),
    ("$2.50-$5.00", "two dollars fifty cents to five dollars"),
    ("100%", "one hundred percent"),
    ("5.5 %", "five point five percent"),
    ("5 per cent", "five per cent"),
    # times
    ("at 10:30 am", "at ten thirty a m"),
    ("at 3:00", "at three o'clock"),
    ("at 9:05 p.m.", "at nine oh five p m"),
    ("at 5 pm", "at five p m"),
    ("Genesis 1:3", "genesis one three"),
    # fractions and slashes
    ("1/2 of 3/4", "one half of three quarters"),
    ("2/3 and 1/10", "two thirds and one tenth"),
    ("2 1/2 hours", "two and one half hours"),
    ("24/7 and 9/11", "twenty four seven and nine eleven"),
    ("12/25/2008", "twelve twenty five two thousand and eight"),
    ("\u00bd cup", "one half cup"),
    # units and mixed tokens
    ("5 km and 1 km", "five kilometers and one kilometer"),
    ("8MB card, 4.1 Mp", "eight megabytes card four point one megapixel"),
    ("10 ft and 1 ft", "ten feet and one foot"),
    ("60 mph", "sixty miles per hour"),
    ("mp3 3D 2x", "mp three three d two x"),
    ("B-70 bomber", "b seventy bomber"),
    # symbols
    ("C++ & Java @ home = fun", "c plus plus and java at home equals fun"),
    ("AT&T", "at and t"),
    ("No. 5 and #1", "number five and number one"),
    ("no. 7 is lucky", "number seven is lucky"),
    ("30\u00b0 angle", "thirty degrees angle"),
    ("a ~ b | c * d", "a b c d"),
    # abbreviations
    ("Mr. and Mrs. Smith", "mister and missus smith"),
    ("Mr Brown met Dr Jones", "mister brown met doctor jones"),
    ("Dr. Smith lives on Mulholland Dr.", "doctor smith lives on mulholland drive"),
    ("I live on Main St. near St. Louis", "i live on main street near saint louis"),
    ("Gov. Davis and Sen. Kennedy", "governor davis and senator kennedy"),
    ("Acme Co. and Acme Inc. and Acme Ltd.", "acme company and acme incorporated and acme limited"),
    ("apples, pears, etc.", "apples pears et cetera"),
    ("fruit, e.g. apples, i.e. food", "fruit for example apples that is food"),
    ("Ali vs. Frazier, ali vs frazier", "ali versus frazier ali versus frazier"),
    ("Jan. 3rd and Sept. 5", "january third and september five"),
    ("Martin Luther King Jr. said", "martin luther king junior said"),
    ("the U.S. and the U.S.A.", "the u s and the u s a"),
    ("J. R. R. Tolkien", "j r r tolkien"),
    ("a Ph.D. student", "a p h d student"),
    ("see google.com", "see google dot com"),
    # empty and junk
    ("", ""),
    ("   ", ""),
    ("!!! ... ???", ""),
    ("12345", "twelve thousand three hundred and forty five"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, world. How are you?", "hello, world. how are you?"),
        ("Wait -- what?! Really...", "wait, what? really."),
        ("One; two: three", "one, two, three"),
        ("... leading punctuation", "leading punctuation"),
        ("Dr. Smith paid $5.50!", "doctor smith paid five dollars fifty cents!"),
    ],
)
def test_speakable_text_keeps_phrasing(raw: str, expected: str) -> None:
    assert speakable_text(raw) == expected


@pytest.mark.parametrize(("raw", "_"), CASES)
def test_speakable_without_punctuation_is_normalized(raw: str, _: str) -> None:
    assert re.sub(r"[,.?!]", "", speakable_text(raw)) == normalize_text(raw)


_ALPHABET = re.compile(r"(?:[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*)?")

_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
        st.sampled_from(list("0123456789$%&.,:/-' \u00a3\u20ac")),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_output_alphabet_and_idempotence(s: str) -> None:
    out = normalize_text(s)
    assert _ALPHABET.fullmatch(out), out
    assert normalize_text(out) == out
    assert re.sub(r"[,.?!]", "", speakable_text(s)) == out


def test_repeated_calls_agree() -> None:
    lines = [raw for raw, _ in CASES] * 20
    first = [normalize_text(s) for s in lines]
    assert first == [normalize_text(s) for s in lines]


@pytest.mark.parametrize(
    ("fn", "arg", "expected"),
    [
        (cardinal, 0, "zero"),
        (cardinal, 21, "twenty one"),
        (cardinal, -3, "minus three"),
        (cardinal, 1234, "one thousand two hundred and thirty four"),
        (ordinal, 22, "twenty second"),
        (year, 1066, "ten sixty six"),
        (year, 2000, "two thousand"),
        (number, "0042", "zero zero four two"),
        (number, "1,500", "one thousand five hundred"),
        (decimal, "10.05", "ten point zero five"),
    ],
)
def test_number_words(fn: object, arg: object, expected: str) -> None:
    assert fn(arg) == expected  # type: ignore[operator]


def test_fraction_and_money_edges() -> None:
    assert fraction(1, 2) == "one half"
    assert fraction(3, 8) == "three eighths"
    assert fraction(7, 4) is None  # improper: read as two numbers
    assert fraction(1, 11) is None
    assert money("$", "0") == "zero dollars"
    assert money("$", "2.5") == "two point five dollars"
    assert money("\u00a3", "0.01") == "one penny"
    with pytest.raises(ValueError, match="unknown currency"):
        money("#", "1")
    with pytest.raises(ValueError, match="not a digit string"):
        number("12a")
