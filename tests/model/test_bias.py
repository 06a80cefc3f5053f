"""Phrase biasing on the real flashlight decoder with the toy LM: boosted words win close calls,
words outside the lexicon are added, and an empty list leaves the search alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient.devtools.lm import write_toy_lm
from ambient.model.bias import bias_lm
from ambient.model.lexicon_lm import LexiconLm, LmCollapser, LmOptions
from ambient.model.tokenizer import CharTokenizer
from ambient.stream.phrases import PhraseBias, load_phrases, phrase_words
from tests.model.test_lexicon_lm import emissions

TOK = CharTokenizer()


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> LexiconLm:
    folder = write_toy_lm(tmp_path_factory.mktemp("lm") / "lm")
    return LexiconLm(folder / "lm.arpa", folder / "lexicon.txt", TOK, LmOptions(word_score=0.0))


def decode(lm: LexiconLm, text: str, second: str | None = None) -> str:
    c = LmCollapser(lm, frame_shift_s=0.04)
    c.push(emissions(text, second=second))
    return c.finish().text


def test_a_boosted_word_wins_where_the_lm_prefers_another(lm: LexiconLm) -> None:
    # The acoustics lean to "on" (the LM's favourite after "turn"); "in" is the runner-up.
    spoken, heard = "turn on the kitchen light", "turn in the kitchen light"
    assert decode(lm, spoken, second=heard) == spoken
    biased = bias_lm(lm, {"in": 8.0})
    assert biased.boosted == ("in",) and biased.added == ()
    assert decode(biased.lm, spoken, second=heard) == heard
    # The unbiased LM is untouched (variants share the loaded LM, not the trie).
    assert decode(lm, spoken, second=heard) == spoken


def test_words_outside_the_lexicon_are_added_with_their_spelling(lm: LexiconLm) -> None:
    assert "zorblax" not in decode(lm, "turn on the zorblax")
    biased = bias_lm(lm, {"zorblax": 2.0, "naïve": 2.0})
    assert biased.added == ("zorblax",) and biased.skipped == ("naïve",)
    assert decode(biased.lm, "turn on the zorblax") == "turn on the zorblax"


def test_phrase_bias_caches_variants_and_leaves_an_empty_list_alone(lm: LexiconLm) -> None:
    bias = PhraseBias(lm, boost=2.0, cache_size=2)
    assert bias.lm_for([]) is lm
    a = bias.lm_for(["Zorblax lamp"])
    assert bias.lm_for(["lamp zorblax"]) is a  # the same words, in any order
    assert PhraseBias(lm, boost=0.0).lm_for(["zorblax"]) is lm


def test_phrase_lists_from_yaml_or_a_file(tmp_path: Path) -> None:
    f = tmp_path / "phrases.txt"
    f.write_text("# rooms\nLiving-Room Lamp 2\n\nSiobhan's office  # a name\n", encoding="utf-8")
    assert load_phrases(f) == ("Living-Room Lamp 2", "Siobhan's office")
    assert load_phrases(["  a b ", ""]) == ("a b",)
    assert phrase_words(load_phrases(f)) == ("living", "room", "lamp", "two", "siobhan's", "office")
    from ambient.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read the phrase list"):
        load_phrases(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="longer than"):
        load_phrases(["x" * 300])


def test_recognizer_phrases_swap_the_lm_only_when_the_list_changes(lm: LexiconLm) -> None:
    from ambient.stream.phrases import RecognizerPhrases

    class Rec:
        def __init__(self) -> None:
            self.lm: LexiconLm | None = lm
            self.swaps = 0

        def use_lm(self, new: LexiconLm) -> None:
            self.lm, self.swaps = new, self.swaps + 1

    rec = Rec()
    phrases = RecognizerPhrases(rec, boost=2.0)  # type: ignore[arg-type]
    assert phrases.apply(["zorblax"]) and rec.lm is not lm and "zorblax" in rec.lm.words  # type: ignore[union-attr]
    assert not phrases.apply(["zorblax"]) and rec.swaps == 1
    assert phrases.apply([]) and rec.lm is lm  # an emptied list restores the unbiased LM
    greedy = Rec()
    greedy.lm = None
    assert not RecognizerPhrases(greedy, boost=2.0).apply(["zorblax"])  # type: ignore[arg-type]


def test_config_check_names_an_unreadable_phrase_list(tmp_path: Path) -> None:
    from ambient.config import parse_config
    from ambient.daemon.preflight import preflight
    from ambient.errors import ConfigError

    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    ok = tmp_path / "phrases.txt"
    ok.write_text("Siobhan\n", encoding="utf-8")
    preflight(parse_config({"model": {"path": str(model)}, "recognizer": {"phrases": str(ok)}}, env={}))
    cfg = parse_config({"model": {"path": str(model)}, "recognizer": {"phrases": str(tmp_path / "no.txt")}}, env={})
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid value for 'recognizer\.phrases': .*cannot read"):
        preflight(cfg, source="c.yaml")
