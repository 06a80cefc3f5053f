"""Accuracy of a model through the daemon's streaming path: every manifest × chunk size (× int8).

Usage:
    python scripts/model_report.py --model models/ambient-base/model.pt \\
        --manifest dev=data/dev.jsonl --manifest unseen-slt=data/unseen_slt.jsonl \\
        [--chunks 160,320,640,1280] [--int8] [--lm auto|off|DIR] [--limit N] [--json OUT]

With a word LM (``--lm auto``: the ``lm/`` folder beside the model, the daemon's default) every
chunk size is decoded with it and streaming finals (the chunked pass's own result), then the
daemon's default: finals from the full-context second pass at 640 ms; greedy CTC at 640 ms (both
final passes) for reference; ``--int8`` adds int8 weights at 640 ms with full finals. Prints a
markdown table (WER with substitutions/deletions/insertions, CER, per-source WER, RTF) for the model
card and writes the figures as JSON. Decoding is exactly ``ambient eval``'s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jiwer
import torch

from ambient.model.checkpoint import load_model
from ambient.model.lexicon_lm import load_lm
from ambient.stream.recognizer import FinalPass
from ambient.train.evaluate import evaluate_streaming
from ambient.train.manifest import read_manifest


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--manifest", action="append", required=True, help="NAME=PATH (repeat)")
    ap.add_argument("--chunks", default="640", help="comma-separated chunk lengths in ms")
    ap.add_argument("--int8", action="store_true", help="also decode with int8 weights (at 640 ms)")
    ap.add_argument("--lm", default="auto", help="word LM: auto (beside the model), off, or a folder")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances of each manifest")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    manifests: list[tuple[str, Path]] = []
    for spec in args.manifest:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--manifest wants NAME=PATH, got {spec!r}")
        manifests.append((name, Path(path)))
    chunks = [int(c) for c in args.chunks.split(",")]
    models = {"fp32": load_model(args.model)}
    if args.int8:
        models["int8"] = load_model(args.model, int8=True)
    lm = load_lm(args.lm, model_path=args.model, tokenizer=models["fp32"].tokenizer)
    decoder = "greedy" if lm is None else "lm"
    # (precision, chunk ms, decoder, final pass)
    variants: list[tuple[str, int, str, FinalPass]] = [("fp32", c, decoder, "streaming") for c in chunks]
    variants.append(("fp32", 640, decoder, "full"))
    if lm is not None:
        variants += [("fp32", 640, "greedy", "streaming"), ("fp32", 640, "greedy", "full")]
    if args.int8:
        variants.append(("int8", 640, decoder, "full"))

    rows: list[dict[str, Any]] = []
    for name, path in manifests:
        utts = read_manifest(path)[: args.limit] if args.limit else read_manifest(path)
        for precision, chunk, dec, final_pass in variants:
            report = evaluate_streaming(
                models[precision], utts, chunk_ms=chunk, lm=lm if dec == "lm" else None, final_pass=final_pass
            )
            o = report.overall
            rows.append(
                {
                    "manifest": name,
                    "path": str(path),
                    "precision": precision,
                    "decoder": dec,
                    "chunk_ms": report.chunk_ms,
                    "final_pass": final_pass,
                    "utterances": o.utterances,
                    "words": o.ref_words,
                    "minutes": report.audio_seconds / 60,
                    "wer": o.wer,
                    "cer": float(
                        jiwer.cer(
                            [u.reference for u in report.results if u.reference],
                            [u.hypothesis for u in report.results if u.reference],
                        )
                    ),
                    "sub": o.substitutions,
                    "del": o.deletions,
                    "ins": o.insertions,
                    "rtf": report.rtf,
                    "by_source": {k: v.wer for k, v in report.by_source.items()},
                }
            )
            r = rows[-1]
            print(
                f"{name:12s} {precision} {dec:6s} {chunk:5d} ms {final_pass:9s}  "
                f"WER {_pct(r['wer']):>5s}%  ({r['utterances']} utt)",
                file=sys.stderr,
                flush=True,
            )

    cols = ["data", "precision", "decoder", "chunk ms", "final pass", "utterances", "words", "WER %"]
    cols += ["sub / del / ins", "CER %"]
    print("| " + " | ".join([*cols, "WER % per source", "RTF"]) + " |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        per = ", ".join(f"{k} {_pct(v)}" for k, v in sorted(r["by_source"].items()))
        print(
            f"| {r['manifest']} | {r['precision']} | {r['decoder']} | {r['chunk_ms']} | {r['final_pass']} | "
            f"{r['utterances']} | "
            f"{r['words']} | "
            f"{_pct(r['wer'])} | {r['sub']} / {r['del']} / {r['ins']} | {_pct(r['cer'])} | {per} | {r['rtf']:.3f} |"
        )
    if args.json:
        doc = {
            "model": str(args.model),
            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "lm": None if lm is None else str(lm.arpa),
            "rows": rows,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
