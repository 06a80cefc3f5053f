"""Lexicon + n-gram LM beam search: real flashlight decoder, a small ARPA model written here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ambient.devtools.lm import write_toy_lm
from ambient.errors import CheckpointError
from ambient.model.ctc import greedy_decode
from ambient.model.lexicon_lm import LexiconLm, LmCollapser, LmOptions, find_lm, load_lm, resolve_lm
from ambient.model.tokenizer import CharTokenizer

TOK = CharTokenizer()
SPACE = TOK.encode("a b")[1]


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> LexiconLm:
    folder = write_toy_lm(tmp_path_factory.mktemp("lm") / "lm")
    return LexiconLm(folder / "lm.arpa", folder / "lexicon.txt", TOK, LmOptions(word_score=0.0))


def emissions(
    text: str, *, frames_per_unit: int = 2, noise: float = 0.0, seed: int = 0, second: str | None = None
) -> torch.Tensor:
    """CTC log-probs ``(T, V)`` spelling ``text``: each unit for a few frames, then a blank.
    ``second`` (same length as ``text``) gives each position a runner-up letter 1.5 nats behind."""
    rows: list[np.ndarray] = []
    for k, ch in enumerate(text):
        unit = SPACE if ch == " " else TOK.encode(ch)[0]
        for _ in range(frames_per_unit):
            row = np.full(TOK.vocab_size, -9.0)
            row[unit] = 0.0
            if second is not None and second[k] not in (ch, " "):
                row[TOK.encode(second[k])[0]] = -1.5
            rows.append(row)
        row = np.full(TOK.vocab_size, -9.0)
        row[TOK.blank_id] = 0.0
        rows.append(row)
    logits = torch.tensor(np.array(rows), dtype=torch.float32)
    if noise:
        logits = logits + noise * torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed))
    return torch.log_softmax(logits, dim=-1)


def decode(lm: LexiconLm, lp: torch.Tensor, piece: int = 7) -> str:
    c = LmCollapser(lm, frame_shift_s=0.04)
    for i in range(0, len(lp), piece):
        c.push(lp[i : i + piece])
    return c.finish().text


def test_clean_speech_of_lexicon_words_decodes_exactly_with_the_greedy_times(lm: LexiconLm) -> None:
    lp = emissions("turn on the kitchen light")
    c = LmCollapser(lm, frame_shift_s=0.04)
    c.push(lp)
    hyp = c.finish()
    greedy = greedy_decode(lp, TOK, frame_shift_s=0.04)
    assert hyp.text == greedy.text == "turn on the kitchen light"
    assert [(w.start, w.end) for w in hyp.words] == [(w.start, w.end) for w in greedy.words]
    assert all(0.9 < w.confidence <= 1.0 for w in hyp.words)


def test_misspellings_become_the_words_the_lm_expects(lm: LexiconLm) -> None:
    # An unsure acoustic model: the right letter is the runner-up where the spelling is wrong.
    lp = emissions("tarn on tha kitchan light", second="turn on the kitchen light")
    assert greedy_decode(lp, TOK, frame_shift_s=0.04).text == "tarn on tha kitchan light"
    assert decode(lm, lp) == "turn on the kitchen light"


def test_with_options_reuses_the_loaded_lm_and_decodes_like_a_fresh_load(lm: LexiconLm, tmp_path: Path) -> None:
    lp = emissions("tarn on tha kitchan light", second="turn on the kitchen light")
    folder = write_toy_lm(tmp_path / "lm")
    for options in (LmOptions(lm_weight=0.0, word_score=-30.0), LmOptions(lm_weight=20.0), LmOptions(word_score=0.0)):
        reused = lm.with_options(options)
        assert reused.options == options and reused._lm is lm._lm and reused._trie is lm._trie
        fresh = LexiconLm(folder / "lm.arpa", folder / "lexicon.txt", TOK, options)
        assert decode(reused, lp) == decode(fresh, lp)
    assert decode(lm.with_options(LmOptions(lm_weight=0.0, word_score=-30.0)), lp) == "turn"  # options take effect
    assert lm.options == LmOptions(word_score=0.0) and decode(lm, lp) == "turn on the kitchen light"  # untouched


def test_the_result_does_not_depend_on_how_frames_are_split(lm: LexiconLm) -> None:
    lp = emissions("turn off the kitchen lights", noise=2.0, seed=3)
    results = {decode(lm, lp, piece) for piece in (1, 3, 16, len(lp))}
    assert len(results) == 1, results


def test_partial_hypotheses_grow_with_the_frames(lm: LexiconLm) -> None:
    lp = emissions("turn on the kitchen light")
    c = LmCollapser(lm, frame_shift_s=0.04)
    seen: list[str] = []
    for i in range(0, len(lp), 10):
        if c.push(lp[i : i + 10]):
            seen.append(c.hypothesis().text)
    assert seen and seen[-1].startswith("turn on the kitchen")
    assert c.finish().text == "turn on the kitchen light"


def test_a_partial_shows_the_word_being_spelled(lm: LexiconLm) -> None:
    """Words are chosen at their boundary; until then a partial shows the letters heard since the
    last chosen word (greedily), so the first partial does not wait for the first word to end."""
    lp = emissions("turn on the kitchen light")
    c = LmCollapser(lm, frame_shift_s=0.04)
    c.push(lp[: len("tu") * 3])
    assert c.hypothesis().text == "tu"
    c.push(lp[len("tu") * 3 : len("turn on the kit") * 3])
    hyp = c.hypothesis()
    assert hyp.text == "turn on the kit"
    assert hyp.words[-1].start < hyp.words[-1].end
    c.push(lp[len("turn on the kit") * 3 :])
    assert c.finish().text == "turn on the kitchen light"


def test_long_streams_commit_words_and_keep_memory_bounded(lm: LexiconLm, tmp_path: Path) -> None:
    folder = write_toy_lm(tmp_path / "lm")
    small = LexiconLm(folder / "lm.arpa", folder / "lexicon.txt", TOK, LmOptions(word_score=0.0, commit_frames=40))
    sentence = "turn on the kitchen light"
    lp = torch.cat([emissions(sentence + " ")] * 20)
    c = LmCollapser(small, frame_shift_s=0.04)
    held = 0
    for i in range(0, len(lp), 16):
        c.push(lp[i : i + 16])
        held = max(held, len(c._lp))
    hyp = c.finish()
    assert hyp.text == " ".join([sentence] * 20)
    assert held <= 2 * 40 + 16 + 1  # frames kept for the search, not the whole stream
    starts = [w.start for w in hyp.words]
    assert starts == sorted(starts) and hyp.words[-1].end <= len(lp) * 0.04 + 0.04


def test_empty_and_silent_input(lm: LexiconLm) -> None:
    c = LmCollapser(lm, frame_shift_s=0.04)
    assert c.hypothesis().text == ""
    assert c.finish().text == ""
    c = LmCollapser(lm, frame_shift_s=0.04)
    c.push(torch.zeros(0, TOK.vocab_size))
    blank = torch.full((30, TOK.vocab_size), -9.0)
    blank[:, TOK.blank_id] = 0.0
    c.push(torch.log_softmax(blank, -1))
    assert c.finish().text == ""


def test_bad_lm_files_are_one_line_errors(tmp_path: Path) -> None:
    folder = write_toy_lm(tmp_path / "lm")
    arpa, lexicon = folder / "lm.arpa", folder / "lexicon.txt"
    bad_lex = tmp_path / "bad-lexicon.txt"
    bad_lex.write_text("kitchen\tk i t c h e n\nlight\tl i t e\n")  # spelling does not match the word
    with pytest.raises(CheckpointError, match=r"bad-lexicon.txt:2: not a lexicon line"):
        LexiconLm(arpa, bad_lex, TOK)
    garbage = tmp_path / "garbage.arpa"
    garbage.write_text("this is not an ARPA file\n")
    with pytest.raises(CheckpointError, match="cannot load the language model") as e:
        LexiconLm(garbage, lexicon, TOK)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        LexiconLm(tmp_path / "absent.arpa", lexicon, TOK)


def test_lm_settings_resolve_to_files(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    assert resolve_lm("auto", model) is None  # no lm/ folder: greedy
    assert resolve_lm("off", model) is None
    folder = write_toy_lm(tmp_path / "lm")
    assert resolve_lm("auto", model) == (folder / "lm.arpa", folder / "lexicon.txt")
    loaded = load_lm(str(folder), model_path=model, tokenizer=TOK)
    assert loaded is not None and loaded.arpa == folder / "lm.arpa"
    assert resolve_lm("off", model) is None
    assert find_lm(tmp_path) is None
    with pytest.raises(CheckpointError, match="no language model here"):
        resolve_lm(str(tmp_path / "elsewhere"), model)
    (folder / "lexicon.txt").unlink()  # a damaged install: the daemon must say so, not decode greedily
    with pytest.raises(CheckpointError, match="incomplete language model"):
        resolve_lm("auto", model)
    assert resolve_lm("off", model) is None


def _weak_ending(text: str, letter: str, logit: float) -> torch.Tensor:
    """``emissions(text)`` then two frames where the blank leads and ``letter`` trails by ``-logit``."""
    extra = np.full((2, TOK.vocab_size), -9.0)
    extra[:, TOK.blank_id] = 0.0
    extra[:, TOK.encode(letter)[0]] = logit
    tail = torch.log_softmax(torch.tensor(extra, dtype=torch.float32), dim=-1)
    return torch.cat([emissions(text), tail])


def test_the_blank_penalty_lets_the_search_keep_a_letter_the_blank_outweighs(lm: LexiconLm) -> None:
    lp = _weak_ending("turn on the kitchen light", "s", -0.6)
    assert greedy_decode(lp, TOK, frame_shift_s=0.04).text == "turn on the kitchen light"
    assert decode(lm.with_options(LmOptions(word_score=0.0, blank_penalty=0.0)), lp) == "turn on the kitchen light"
    assert decode(lm.with_options(LmOptions(word_score=0.0, blank_penalty=1.0)), lp) == "turn on the kitchen lights"
    # the same as searching log-probs with the penalty applied by hand
    by_hand = lp.clone()
    by_hand[:, TOK.blank_id] -= 1.0
    assert (
        decode(lm.with_options(LmOptions(word_score=0.0, blank_penalty=0.0)), by_hand) == "turn on the kitchen lights"
    )


def test_the_blank_penalty_leaves_timings_and_confidences_to_the_models_posteriors(lm: LexiconLm) -> None:
    lp = emissions("turn on the kitchen light", noise=0.5, seed=4)
    hyps = []
    for penalty in (0.0, 2.0):
        c = LmCollapser(lm.with_options(LmOptions(word_score=0.0, blank_penalty=penalty)), frame_shift_s=0.04)
        c.push(lp)
        hyps.append(c.finish())
    assert hyps[0].text == hyps[1].text == "turn on the kitchen light"
    assert [(w.start, w.end, w.confidence) for w in hyps[0].words] == [
        (w.start, w.end, w.confidence) for w in hyps[1].words
    ]


def test_each_word_takes_the_letters_its_separator_ends(lm: LexiconLm) -> None:
    """Word timings pair a word with the letters spelled before the separator where the search emitted
    it, by position, not by counting: letters the search left unfinished are no word, and a word
    whose letters are out of view is timed at its separator (confidence 0) while the others keep
    their own times."""

    @dataclass
    class Result:  # a flashlight DecodeResult (lexicon_lm.DecodeResult): start state, then frames
        tokens: list[int]
        words: list[int]

    c = LmCollapser(lm, frame_shift_s=0.04)
    c.push(emissions("on the"))
    on, the = lm.words.index("on"), lm.words.index("the")
    o, n, t, h, e, v = (TOK.encode(ch)[0] for ch in "onthev")

    def timed(tokens: list[int], words: list[int]) -> list[tuple[str, float, float]]:
        return [(w.word, w.start, w.end) for w in c._words(Result(tokens, words), frames=len(tokens) - 1)]

    assert timed([-1, o, n, SPACE, t, h, e, SPACE], [-1, -1, -1, on, -1, -1, -1, the]) == [
        ("on", 0.0, 0.08),
        ("the", 0.12, 0.24),
    ]
    # An unfinished spelling before a word: counting would give "the" the times of "v".
    assert timed([-1, v, SPACE, t, h, e, SPACE], [-1, -1, -1, -1, -1, -1, the]) == [("the", 0.08, 0.2)]
    # A word emitted where no letters are in view: timed at its separator, the word before keeps its own.
    stray = c._words(Result([-1, o, n, SPACE, SPACE], [-1, -1, -1, on, the]), frames=4)
    assert [(w.word, w.start, w.end) for w in stray] == [("on", 0.0, 0.08), ("the", 0.12, 0.16)]
    assert stray[0].confidence > 0 and stray[1].confidence == 0.0


def test_word_times_stay_in_order_through_commits_on_noisy_input(lm: LexiconLm) -> None:
    """Random posteriors in random pieces with a short commit horizon (words straddle commits):
    every word has its letters' span, spans ascend, and the text is the words."""
    rng = np.random.default_rng(3)
    for beam, commit in ((1, 8), (8, 8), (32, 30)):
        options = LmOptions(beam_size=beam, final_beam_size=beam, commit_frames=commit, word_score=1.0)
        for _ in range(8):
            frames = int(rng.integers(20, 200))
            logits = rng.normal(size=(frames, TOK.vocab_size)) * 4.0
            lp = torch.log_softmax(torch.tensor(logits, dtype=torch.float32), dim=-1)
            c = LmCollapser(lm.with_options(options), frame_shift_s=0.04)
            i = 0
            while i < frames:
                k = int(rng.integers(1, 20))
                c.push(lp[i : i + k])
                i += k
            hyp = c.finish()
            assert hyp.text == " ".join(w.word for w in hyp.words)
            for a, b in zip(hyp.words, hyp.words[1:], strict=False):
                assert a.start < a.end <= b.start, hyp.words
