"""Phrase biasing measured: rare names and device words, with and without the phrase list.

Usage:
  python bench/phrase_bias.py [--general data/dev_unseen.jsonl] [--every 5] [--boosts 2,4]
                              [--voices flite:slt,festival:cmu_us_slt_arctic_hts] [--json OUT]

1. Sentences of Home Assistant-style commands and calls built from rare names, rooms and devices
   (``PHRASES``: most are outside the LM's lexicon, all are rare in its text) are synthesized with
   voices the model never heard in training (the reserved ``flite:slt`` and
   ``festival:cmu_us_slt_arctic_hts`` by default) into a temporary folder (never kept).
2. Each is recognized as the daemon and ``ambient wyoming`` do (default configuration: word LM,
   two-pass finals), without the list and with it at each ``--boosts`` value.
3. Reported: the phrase-word error rate (phrase words of the reference that the hypothesis
   substituted or deleted, plus inserted phrase words, over the phrase words of the references),
   the sentences' WER, and the WER of a general set (every ``--every``-th utterance of
   ``--general``, real speech of unseen speakers) with and without the list: biasing must not cost
   more than a point there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ambient.text.normalize import normalize_text

#: The phrase list: names, rooms and devices a household would configure.
PHRASES = (
    "Siobhan", "Aoife", "Niamh", "Zbigniew", "Nguyen", "Priyanka", "Oluwaseun", "Xiomara",
    "Roomba", "Sonos", "Ecobee", "Nanoleaf", "Philips Hue", "dehumidifier", "credenza lamp",
    "pergola lights", "conservatory", "mudroom", "kombucha fridge", "Alfie's nursery",
)  # fmt: skip

_TEMPLATES = (
    "turn on the {device} in the {room}",
    "call {name} on the speaker",
    "set the {device} in {name}'s room to fifty percent",
    "is the {device} in the {room} still on",
    "remind {name} to check the {device}",
    "switch off the {device} and the {device2}",
)
_NAMES = ("Siobhan", "Aoife", "Niamh", "Zbigniew", "Nguyen", "Priyanka", "Oluwaseun", "Xiomara")
_DEVICES = ("Roomba", "Sonos", "Ecobee", "Nanoleaf", "Philips Hue", "dehumidifier", "credenza lamp", "pergola lights")
_ROOMS = ("conservatory", "mudroom", "Alfie's nursery", "kombucha fridge")


def sentences(n: int) -> list[str]:
    """``n`` command sentences cycling through templates, names, devices and rooms."""
    out: list[str] = []
    names, devices, rooms = itertools.cycle(_NAMES), itertools.cycle(_DEVICES), itertools.cycle(_ROOMS)
    for template in itertools.islice(itertools.cycle(_TEMPLATES), n):
        out.append(template.format(name=next(names), device=next(devices), device2=next(devices), room=next(rooms)))
    return out


def synthesize(texts: list[str], voices: list[str], folder: Path) -> list[tuple[Path, str, str]]:
    """``(wav, normalized reference, voice)`` for every text in every voice."""
    import soundfile as sf

    from ambient.train.synth_engines import SynthError, SynthRequest, make_engine
    from ambient.train.synth_voices import Voice

    out: list[tuple[Path, str, str]] = []
    for name in voices:
        engine_name, _, voice = name.partition(":")
        engine = make_engine(engine_name, tmp_dir=folder)
        try:
            reqs = [
                SynthRequest(key=f"{engine_name}-{i}", voice=Voice(engine_name, voice), text=t)
                for i, t in enumerate(texts)
            ]
            for req, res in zip(reqs, engine.synthesize(reqs), strict=True):
                if isinstance(res, SynthError):
                    print(f"skipped {name}: {res}", file=sys.stderr)
                    continue
                wav = folder / f"{req.key}.wav"
                sf.write(str(wav), res.audio, res.rate, subtype="PCM_16")
                out.append((wav, normalize_text(req.text), name))
        finally:
            engine.close()
    return out


def phrase_errors(ref: str, hyp: str, words: set[str]) -> tuple[int, int]:
    """``(errors, count)`` of phrase words: substituted/deleted reference ones plus inserted ones."""
    import jiwer

    out = jiwer.process_words(ref, hyp)
    r, h = ref.split(), hyp.split()
    errors = 0
    for chunk in out.alignments[0]:
        if chunk.type in ("substitute", "delete"):
            errors += sum(w in words for w in r[chunk.ref_start_idx : chunk.ref_end_idx])
        elif chunk.type == "insert":
            errors += sum(w in words for w in h[chunk.hyp_start_idx : chunk.hyp_end_idx])
    return errors, sum(w in words for w in r)


def recognize(rec: Any, files: list[Path]) -> tuple[list[str], float, float]:
    """Hypotheses, seconds of audio and seconds spent."""
    from ambient.audio.io import iter_audio_blocks
    from ambient.stream.recognizer import transcribe_blocks

    hyps: list[str] = []
    audio = 0.0
    t0 = time.perf_counter()
    for f in files:
        hyp, seconds = transcribe_blocks(rec, iter_audio_blocks(f, block_samples=1600))
        hyps.append(hyp.text)
        audio += seconds
    return hyps, audio, time.perf_counter() - t0


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return 100.0 * float(jiwer.wer(refs, hyps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--general", type=Path, default=Path("data/dev_unseen.jsonl"), help="general JSONL manifest")
    ap.add_argument("--every", type=int, default=5, help="take every N-th utterance of --general")
    ap.add_argument("--sentences", type=int, default=36, help="command sentences per voice")
    ap.add_argument("--boosts", default="2", help="comma-separated recognizer.phrase_boost values")
    ap.add_argument("--voices", default="flite:slt,festival:cmu_us_slt_arctic_hts", help="held-out voices")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()

    import structlog

    from ambient.config import load_config
    from ambient.daemon.service import load_recognizer
    from ambient.stream.phrases import PhraseBias, phrase_words

    cfg = load_config(None)
    rec, name = load_recognizer(cfg, logger=structlog.get_logger("bench"))
    assert rec.lm is not None, "phrase biasing needs the word LM"
    base_lm = rec.lm
    words = set(phrase_words(PHRASES))
    lexicon = set(base_lm.words)
    result: dict[str, Any] = {
        "model": name,
        "phrases": list(PHRASES),
        "phrase_words": sorted(words),
        "outside_lexicon": sorted(words - lexicon),
        "voices": args.voices.split(","),
    }
    general: list[tuple[Path, str]] = []
    if args.general.exists():
        rows = [json.loads(line) for line in args.general.read_text().splitlines() if line.strip()]
        general = [(Path(r["audio"]), r["text"]) for r in rows[:: args.every]]
    with tempfile.TemporaryDirectory(prefix="phrase-bias-") as tmp:
        utts = synthesize(sentences(args.sentences), result["voices"], Path(tmp))
        refs = [ref for _, ref, _ in utts]
        lists: dict[str, Any] = {"none": base_lm}
        bias = {b: PhraseBias(base_lm, boost=float(b)) for b in args.boosts.split(",")}
        lists |= {f"boost {b}": pb.lm_for(PHRASES) for b, pb in bias.items()}
        rows_out = []
        for label, lm in lists.items():
            rec.use_lm(lm)
            hyps, audio, spent = recognize(rec, [w for w, _, _ in utts])
            errs = [phrase_errors(r, h, words) for r, h in zip(refs, hyps, strict=True)]
            row: dict[str, Any] = {
                "list": label,
                "phrase_word_error": round(100.0 * sum(e for e, _ in errs) / max(1, sum(n for _, n in errs)), 1),
                "sentence_wer": round(wer(refs, hyps), 1),
                "rtf": round(spent / audio, 3),
                "examples": [[r, h] for r, h in list(zip(refs, hyps, strict=True))[:4]],
            }
            for v in result["voices"]:
                idx = [i for i, (_, _, voice) in enumerate(utts) if voice == v]
                e = [errs[i] for i in idx]
                row[f"phrase_word_error {v}"] = round(100.0 * sum(x for x, _ in e) / max(1, sum(n for _, n in e)), 1)
            if general:
                g_hyps, g_audio, g_spent = recognize(rec, [p for p, _ in general])
                row["general_wer"] = round(wer([t for _, t in general], g_hyps), 2)
                row["general_utterances"] = len(general)
                row["general_rtf"] = round(g_spent / g_audio, 3)
            rows_out.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
        result["utterances"] = len(utts)
        result["rows"] = rows_out
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
