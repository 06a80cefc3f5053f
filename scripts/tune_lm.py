"""Choose the language model's weight, word score and blank penalty for a model: a grid search on a manifest.

Usage:
    python scripts/tune_lm.py --model models/ambient-base/model.pt --lm models/ambient-base/lm \\
        --manifest data/dev.jsonl [--weights 0.5,1,1.5,2] [--word-scores -1,0,1,2] [--beam-size 32,128]
        [--beam-thresholds 20,30] [--blank-penalties 0,0.5] [--lm OTHER_LM ...]
        [--chunk-ms 640] [--final-pass streaming|full] [--limit N] [--json OUT]

The acoustic model runs once per utterance through the daemon's streaming path (the chunk size and
left context of ``ambient eval``), its per-chunk log-probabilities are kept, and every grid point
re-runs only the beam search on them, chunk by chunk as the daemon would (so several language
models, given as repeated ``--lm``, and several beam sizes cost one acoustic pass). Prints WER and CER per
grid point (greedy decoding first, for reference) and the best setting by WER. With
``--final-pass full`` the log-probabilities are those of the full-context second pass that makes the
daemon's finals by default (one block per utterance). Tune on a split you report separately from:
the figures of the best point are optimistic for that split.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import torch

from ambient.audio.io import iter_audio_blocks, read_audio
from ambient.model.checkpoint import load_model
from ambient.model.ctc import greedy_decode
from ambient.model.lexicon_lm import LexiconLm, LmCollapser, LmOptions, resolve_lm
from ambient.stream.recognizer import StreamingRecognizer, transcribe_blocks
from ambient.text.normalize import normalize_text
from ambient.train.manifest import read_manifest


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _replay(lm: LexiconLm, per_utt: list[list[np.ndarray]], frame_shift_s: float) -> list[str]:
    """Each utterance's kept per-chunk log-probabilities through the beam search, chunk by chunk."""
    hyps: list[str] = []
    for utt_chunks in per_utt:
        c = LmCollapser(lm, frame_shift_s=frame_shift_s)
        for lp in utt_chunks:
            c.push(lp)
        hyps.append(normalize_text(c.finish().text))
    return hyps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--lm", action="append", required=True, help="LM folder (lm.arpa[.gz] + lexicon.txt); repeatable")
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--weights", default="0.5,1,1.5,2", help="comma-separated LM weights")
    ap.add_argument("--word-scores", default="-1,0,1,2", help="comma-separated word scores")
    ap.add_argument("--beam-size", default="32", help="comma-separated beam sizes")
    ap.add_argument(
        "--beam-thresholds", default=str(LmOptions().beam_threshold), help="comma-separated beam score thresholds"
    )
    ap.add_argument(
        "--blank-penalties",
        default=str(LmOptions().blank_penalty),
        help="comma-separated penalties on the blank's log-probability (recognizer.blank_penalty)",
    )
    ap.add_argument("--chunk-ms", type=int, default=640)
    ap.add_argument("--final-pass", choices=["streaming", "full"], default="streaming", help="which pass to tune")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    model = load_model(args.model)
    found_lms = []
    for lm_dir in args.lm:
        found = resolve_lm(lm_dir, args.model)
        if found is None:
            ap.error(f"--lm {lm_dir}: no language model")
        found_lms.append((lm_dir, found))
    grid = list(
        itertools.product(
            _ints(args.beam_size),
            _floats(args.weights),
            _floats(args.word_scores),
            _floats(args.beam_thresholds),
            _floats(args.blank_penalties),
        )
    )
    utts = read_manifest(args.manifest)[: args.limit]
    rec = StreamingRecognizer(model, chunk_ms=args.chunk_ms)
    chunks: list[np.ndarray] = []
    rec.log_probs_hook = chunks.append
    refs: list[str] = []
    per_utt: list[list[np.ndarray]] = []
    t0 = time.perf_counter()
    for u in utts:
        if args.final_pass == "full":
            per_utt.append([rec.full_context_log_probs(read_audio(u.audio))])
        else:
            chunks.clear()
            transcribe_blocks(rec, iter_audio_blocks(u.audio, block_samples=16000))
            per_utt.append([c.copy() for c in chunks])
        refs.append(normalize_text(u.text))
    print(f"acoustic model: {len(utts)} utterances in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    shift = model.frame_shift_s
    rows: list[dict[str, Any]] = []

    def score(name: str, hyps: list[str], seconds: float, **extra: Any) -> None:
        wer = jiwer.wer(refs, hyps)
        cer = jiwer.cer(refs, hyps)
        rows.append({"decoder": name, **extra, "wer": wer, "cer": cer, "decode_s": round(seconds, 2)})
        params = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{name:7s} {params:32s} WER {100 * wer:5.1f}  CER {100 * cer:5.1f}  ({seconds:.1f} s)", flush=True)

    t0 = time.perf_counter()
    greedy = [
        normalize_text(greedy_decode(np.concatenate(c), model.tokenizer, frame_shift_s=shift).text) for c in per_utt
    ]
    score("greedy", greedy, time.perf_counter() - t0)
    for lm_dir, found in found_lms:
        loaded = LexiconLm(*found, model.tokenizer)
        extra = {"lm": lm_dir} if len(found_lms) > 1 else {}
        for beam, w, ws, bt, bp in grid:
            knobs = {"lm_weight": w, "word_score": ws, "beam_size": beam, "beam_threshold": bt, "blank_penalty": bp}
            lm = loaded.with_options(LmOptions(**knobs))
            t0 = time.perf_counter()
            hyps = _replay(lm, per_utt, shift)
            score("lm", hyps, time.perf_counter() - t0, **extra, **knobs)
    best = min((r for r in rows if r["decoder"] == "lm"), key=lambda r: r["wer"], default=None)
    if best is not None:
        where = f"{best['lm']}, " if "lm" in best else ""
        print(
            f"best: {where}lm_weight {best['lm_weight']}, word_score {best['word_score']}, "
            f"beam_size {best['beam_size']}, beam_threshold {best['beam_threshold']}, "
            f"blank_penalty {best['blank_penalty']}: WER {100 * best['wer']:.1f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"model": str(args.model), "lm": args.lm, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
