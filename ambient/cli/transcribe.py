"""``ambient transcribe FILE...``: files through the daemon's streaming path."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ambient.cli.lm_args import add_final_pass_argument, add_lm_arguments, final_pass_from_args, lm_from_args
from ambient.errors import AmbientError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``transcribe`` subcommand."""
    p = sub.add_parser("transcribe", help="transcribe audio files with the streaming recognizer")
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="WAV/FLAC files (any rate, mono or stereo)",
    )
    p.add_argument("--model", type=Path, default=None, help="model file (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--chunk-ms", type=int, default=640, help="encoder chunk length in ms (default 640)")
    p.add_argument(
        "--block-ms",
        type=int,
        default=100,
        help="how much audio is fed per step (does not change results)",
    )
    precision = p.add_mutually_exclusive_group()
    precision.add_argument(
        "--int8",
        dest="int8",
        action="store_const",
        const=True,
        default="auto",
        help="int8 weights (model-int8.onnx, or torch's dynamic quantization); by default model-int8.onnx "
        "when the onnx backend runs and the model folder ships it (model.int8: auto)",
    )
    precision.add_argument("--fp32", dest="int8", action="store_const", const=False, help="fp32 weights")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument(
        "--backend",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="onnx = onnxruntime on model.onnx (no torch), torch = the checkpoint, auto = onnx when the model "
        "folder ships model.onnx (default auto; recognizer.backend)",
    )
    add_lm_arguments(p)
    add_final_pass_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Transcribe each file; a file that fails is reported and the others still run."""
    from ambient.audio.io import iter_audio_blocks
    from ambient.config import load_config
    from ambient.stream.factory import load_acoustic_model
    from ambient.stream.recognizer import StreamingRecognizer, transcribe_blocks

    if args.block_ms <= 0 or args.chunk_ms <= 0:
        raise AmbientError("--block-ms and --chunk-ms must be positive")
    model_path = args.model or load_config(None).model.path
    model = load_acoustic_model(model_path, backend=args.backend, int8=args.int8, threads=max(1, args.threads))
    lm = lm_from_args(args, model_path=model_path, tokenizer=model.tokenizer)
    rec = StreamingRecognizer(model, chunk_ms=args.chunk_ms, lm=lm, final_pass=final_pass_from_args(args))
    block = max(1, args.block_ms * 16)
    status = 0
    for f in args.files:
        try:
            hyp, seconds = transcribe_blocks(rec, iter_audio_blocks(f, block_samples=block))
        except AmbientError as e:
            print(f"ambient: error: {e}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            out: dict[str, Any] = {
                "file": str(f),
                "text": hyp.text,
                "words": [vars(w) for w in hyp.words],
                "confidence": hyp.confidence,
                "duration": round(seconds, 3),
                "model": model.name,
                "backend": model.backend,
                "chunk_ms": rec.chunk_ms,
                "final_pass": rec.final_pass,
            }
            print(json.dumps(out), flush=True)
        else:
            print(f"{f}: {hyp.text}", flush=True)
    return status
