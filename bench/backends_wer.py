"""Accuracy of each backend and precision on real recordings: onnx fp32/int8 against torch fp32/int8.

Usage: python bench/backends_wer.py [--manifest data/dev.jsonl] [--max 200] [--lm auto|off]
                                    [--final-pass full|streaming] [--variants onnx-fp32,...] [--json OUT]

Every variant decodes the same utterances through the daemon's path (``StreamingRecognizer``, the
model folder's LM, 640 ms chunks, 1 thread). Reports the WER of each, and how many transcripts each
shares word for word with onnx fp32 (the default runtime). ``onnx-int8pc`` is the graph quantized
with one scale per output channel (``ambient model export --per-channel``), made in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jiwer

from ambient.audio.io import read_audio
from ambient.config import load_config
from ambient.model.export.onnx_graph import quantize_onnx_int8
from ambient.runtime.onnx_model import load_onnx_model
from ambient.stream.acoustic import AcousticModel
from ambient.stream.decoding import lm_for
from ambient.stream.factory import load_acoustic_model
from ambient.stream.recognizer import StreamingRecognizer, transcribe_blocks
from ambient.text.normalize import normalize_text
from ambient.train.manifest import read_manifest

VARIANTS = ("onnx-fp32", "onnx-int8", "onnx-int8dyn", "onnx-int8pc", "torch-fp32", "torch-int8")


def _model(name: str, path: Path) -> AcousticModel:
    if name in ("onnx-int8dyn", "onnx-int8pc"):
        out = Path(tempfile.mkdtemp(prefix="amb-dyn-")) / f"model-{name[5:]}.onnx"
        scheme = "dynamic" if name == "onnx-int8dyn" else "dynamic-per-channel"
        quantize_onnx_int8(path.with_suffix(".onnx"), out, scheme=scheme)
        return load_onnx_model(out, threads=1, verify=False)
    backend, precision = name.split("-")
    return load_acoustic_model(path, backend=backend, int8=precision == "int8", threads=1)  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("data/dev.jsonl"))
    ap.add_argument("--max", type=int, default=200, help="first N utterances")
    ap.add_argument("--lm", default="auto", help="recognizer.lm (auto, off, or a folder)")
    ap.add_argument("--final-pass", choices=("full", "streaming"), default="full")
    ap.add_argument(
        "--variants", default="onnx-fp32,onnx-int8,torch-fp32,torch-int8", help=f"from {', '.join(VARIANTS)}"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    if bad := set(names) - set(VARIANTS):
        ap.error(f"unknown variant(s): {', '.join(sorted(bad))}")
    cfg = load_config(None)
    path = cfg.model.path
    utts = read_manifest(args.manifest)[: args.max]
    refs = [normalize_text(u.text) for u in utts]
    audio = [read_audio(u.audio) for u in utts]
    hyps: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    for name in names:
        model = _model(name, path)
        rc = cfg.recognizer.model_copy(update={"lm": args.lm})
        rec = StreamingRecognizer(
            model, chunk_ms=640, lm=lm_for(rc, model_path=path, tokenizer=model.tokenizer), final_pass=args.final_pass
        )
        t0 = time.perf_counter()
        hyps[name] = [normalize_text(transcribe_blocks(rec, [a])[0].text) for a in audio]
        seconds = time.perf_counter() - t0
        same = sum(h == r for h, r in zip(hyps[name], hyps.get("onnx-fp32", hyps[name]), strict=True))
        rows.append(
            {
                "variant": name,
                "wer": jiwer.wer(refs, hyps[name]),
                "same_as_onnx_fp32": same,
                "utterances": len(utts),
                "decode_s": round(seconds, 1),
            }
        )
        r = rows[-1]
        print(
            f"{name:10} WER {100 * r['wer']:5.2f} %  same as onnx-fp32 {same}/{len(utts)}  ({seconds:.0f} s)",
            flush=True,
        )
    if args.json:
        settings = {"manifest": str(args.manifest), "max": args.max, "lm": args.lm, "final_pass": args.final_pass}
        args.json.write_text(json.dumps({"settings": settings, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
