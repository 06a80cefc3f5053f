"""Greedy CTC decoding: collapsing, words, times and confidences."""

from __future__ import annotations

import torch

from ambient.model.ctc import greedy_decode
from ambient.model.tokenizer import CharTokenizer


def test_words_times_and_confidence() -> None:
    tok = CharTokenizer()
    # frames: h h <b> i <sp> <b> y o o <b>
    seq = ["h", "h", None, "i", " ", None, "y", "o", "o", None]
    lp = torch.full((len(seq), tok.vocab_size), -20.0)
    for t, ch in enumerate(seq):
        i = 0 if ch is None else tok.encode(ch)[0] if ch != " " else 1
        lp[t, i] = -0.1
    lp[6, 5] = -0.5  # a competitor makes the first letter of "yo" uncertain
    hyp = greedy_decode(lp.log_softmax(-1), tok, frame_shift_s=0.04, time_offset_s=1.0)
    assert hyp.text == "hi yo"
    assert [w.word for w in hyp.words] == ["hi", "yo"]
    hi, yo = hyp.words
    assert (hi.start, hi.end) == (1.0, round(1.0 + 4 * 0.04, 3))
    assert (yo.start, yo.end) == (round(1.0 + 6 * 0.04, 3), round(1.0 + 9 * 0.04, 3))
    assert 0.0 <= yo.confidence < hi.confidence <= 1.0
    assert 0.0 <= hyp.confidence <= 1.0


def test_empty_and_double_letters() -> None:
    tok = CharTokenizer()
    assert greedy_decode(torch.zeros(0, tok.vocab_size), tok, frame_shift_s=0.04).text == ""
    ids = [tok.encode("l")[0], 0, tok.encode("l")[0]]
    lp = torch.full((3, tok.vocab_size), -20.0)
    for t, i in enumerate(ids):
        lp[t, i] = 0.0
    assert greedy_decode(lp, tok, frame_shift_s=0.04).text == "ll"


def test_char_tokenizer_round_trip() -> None:
    tok = CharTokenizer()
    assert tok.vocab_size == 29 and tok.blank_id == 0
    assert tok.decode(tok.encode("don't  stop")) == "don't stop"


def test_incremental_collapsing_equals_whole_in_any_pieces() -> None:
    import random

    from ambient.model.ctc import FrameBest, GreedyCollapser, hypothesis_from_best

    tok = CharTokenizer()
    rng = random.Random(0)
    for trial in range(30):
        n = rng.randint(0, 200)
        # few distinct units so that repeats, blanks and spaces are frequent
        ids = torch.tensor([rng.choice([0, 0, 0, 1, 2, 2, 3, 5]) for _ in range(n)], dtype=torch.long)
        probs = torch.rand(n)
        whole = hypothesis_from_best(FrameBest(ids=ids, probs=probs), tok, frame_shift_s=0.04)
        col = GreedyCollapser(tok, frame_shift_s=0.04)
        texts = []
        i = 0
        while i < n:
            j = min(n, i + rng.randint(1, 17))
            changed = col.push(FrameBest(ids=ids[i:j], probs=probs[i:j]))
            text = col.hypothesis().text
            assert changed == (text != (texts[-1] if texts else "")), (trial, i)
            texts.append(text)
            i = j
        assert col.hypothesis() == whole, trial
        assert col.frames == n
