"""Two-pass finals: the full-context second pass, its speculation during the hangover, and dropping it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ambient.model.asr import AsrModel
from ambient.model.ctc import Hypothesis, greedy_decode
from ambient.model.testing import build_tiny_model
from ambient.stream.recognizer import StreamingRecognizer, transcribe_blocks


def _model() -> AsrModel:
    model = build_tiny_model("residual", seed=5)
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(-1.0, 1.0, model.head.bias.numel()))  # fewer all-blank outputs
    return model.eval()


def _audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (150 + 60 * np.sin(2 * np.pi * 0.9 * t)) * t)
    return (tone * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _full(model: AsrModel, pcm: np.ndarray) -> Hypothesis:
    """What one full-context forward pass over ``pcm`` decodes to (the reference for the recognizer):
    text, word timings and confidences."""
    rec = StreamingRecognizer(model)
    return greedy_decode(rec.full_context_log_probs(pcm), model.tokenizer, frame_shift_s=model.frame_shift_s)


def _feed(rec: StreamingRecognizer, pcm: np.ndarray, block: int = 700) -> None:
    for i in range(0, len(pcm), block):
        rec.accept(pcm[i : i + block])


def test_full_final_is_one_full_context_pass_and_differs_from_the_chunked_one() -> None:
    model = _model()
    pcm = _audio(3.0, seed=1)
    expected = _full(model, pcm)
    assert expected.text, "the random model should emit something for the comparison to mean anything"
    full = StreamingRecognizer(model, chunk_ms=160, final_pass="full")
    hyp, seconds = transcribe_blocks(full, [pcm[i : i + 999] for i in range(0, len(pcm), 999)])
    assert hyp == expected and seconds == pytest.approx(3.0)
    assert all(0 <= w.start <= w.end <= 3.05 for w in hyp.words)
    streaming, _ = transcribe_blocks(StreamingRecognizer(model, chunk_ms=160), [pcm])
    assert streaming != expected, "160 ms chunks and full context should disagree on this input"
    # the recognizer is ready for the next utterance: nothing of the first one is kept
    again, _ = transcribe_blocks(full, [pcm[:16000]])
    assert again == _full(model, pcm[:16000])


def test_a_speculation_stands_until_dropped() -> None:
    model = _model()
    speech, tail = _audio(2.0, seed=2), _audio(1.0, seed=3)
    rec = StreamingRecognizer(model, final_pass="full")
    _feed(rec, speech)
    rec.speculate()
    assert rec.speculated
    _feed(rec, tail)  # the caller's "silence": not decoded again
    assert rec.finish() == _full(model, speech)
    assert not rec.speculated  # finish resets

    _feed(rec, speech)
    rec.speculate()
    _feed(rec, tail)
    rec.drop_speculation()  # speech resumed: the final covers all of it
    assert not rec.speculated
    assert rec.finish() == _full(model, np.concatenate([speech, tail]))
    assert _full(model, np.concatenate([speech, tail])) != _full(model, speech)


def test_streaming_finals_ignore_speculation_and_bad_modes_are_refused() -> None:
    model = _model()
    pcm = _audio(2.0, seed=4)
    rec = StreamingRecognizer(model, final_pass="streaming")
    _feed(rec, pcm[:16000])
    rec.speculate()
    assert not rec.speculated
    _feed(rec, pcm[16000:])
    reference, _ = transcribe_blocks(StreamingRecognizer(model), [pcm])
    assert rec.finish() == reference
    with pytest.raises(ValueError, match="final_pass"):
        StreamingRecognizer(model, final_pass="twice")  # type: ignore[arg-type]


def test_empty_utterance_gives_an_empty_final() -> None:
    rec = StreamingRecognizer(_model(), final_pass="full")
    assert rec.finish().text == ""
    rec.accept(np.zeros(100, np.float32))  # less than one feature frame
    assert rec.finish().text == ""


def test_utterances_past_the_full_pass_limit_keep_the_chunked_final(monkeypatch: pytest.MonkeyPatch) -> None:
    import ambient.stream.recognizer as recognizer

    monkeypatch.setattr(recognizer, "FULL_PASS_MAX_S", 1.5)
    model = _model()
    pcm = _audio(2.5, seed=6)
    chunked, _ = transcribe_blocks(StreamingRecognizer(model), [pcm])
    assert chunked != _full(model, pcm)
    rec = StreamingRecognizer(model, final_pass="full")
    _feed(rec, pcm)
    rec.speculate()  # too long: nothing kept, nothing to speculate on
    assert not rec.speculated and rec.finish() == chunked
    short, _ = transcribe_blocks(rec, [pcm[:16000]])  # the limit is per utterance
    assert short == _full(model, pcm[:16000])


def test_the_full_pass_searches_with_the_wider_final_beam(tmp_path: Path) -> None:
    from ambient.devtools.lm import write_toy_lm
    from ambient.model.lexicon_lm import LexiconLm, LmCollapser, LmOptions

    model = _model()
    folder = write_toy_lm(tmp_path / "lm")
    pcm = _audio(3.0, seed=1)

    def lm(beam: int, final_beam: int) -> LexiconLm:
        options = LmOptions(beam_size=beam, final_beam_size=final_beam, word_score=2.0)
        return LexiconLm(folder / "lm.arpa", folder / "lexicon.txt", model.tokenizer, options)

    def reference(beam: int) -> Hypothesis:
        """One search at ``beam`` over the full-context log-probs."""
        search = LmCollapser(lm(beam, beam), frame_shift_s=model.frame_shift_s)
        search.push(StreamingRecognizer(model).full_context_log_probs(pcm))
        return search.finish()

    assert reference(1).text != reference(64).text, "on this input a one-hypothesis search should lose the word"
    wide = StreamingRecognizer(model, lm=lm(1, 64), final_pass="full")
    assert wide.lm is not None and wide.lm.options.beam_size == 1  # the chunked pass keeps its beam
    assert wide.final_lm is not None and wide.final_lm.options.beam_size == 64
    assert transcribe_blocks(wide, [pcm])[0] == reference(64)
    assert transcribe_blocks(StreamingRecognizer(model, lm=lm(1, 1), final_pass="full"), [pcm])[0] == reference(1)


@pytest.mark.parametrize("seconds", [0.3, 0.64, 1.37, 2.9])
def test_the_full_pass_pads_to_a_bucket_without_changing_its_output(seconds: float) -> None:
    from ambient.audio.features import compute_fbank

    model = _model()
    pcm = _audio(seconds, seed=7)
    feats = compute_fbank(pcm)
    with torch.inference_mode():
        unpadded, out_len = model(feats[None], torch.tensor([feats.size(0)]))
    bucketed = StreamingRecognizer(model).full_context_log_probs(pcm)
    assert bucketed.shape == (int(out_len[0]), model.dims.vocab_size) == unpadded[0].shape
    torch.testing.assert_close(torch.from_numpy(bucketed), unpadded[0], atol=1e-4, rtol=1e-4)
