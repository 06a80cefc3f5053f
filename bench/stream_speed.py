"""Streaming speed: RTF and per-chunk latency on 1 thread, features included, fp32 and int8, on the
onnx backend (onnxruntime, numpy front end) and the torch backend.

Usage: python bench/stream_speed.py [--model PATH | --config NAME] [--seconds 60] [--repeats 3]
                                    [--backends onnx,torch] [--json OUT]

Without --model it builds the reference configurations below with random weights (speed does
not depend on the weights). Audio is fed in 10 ms blocks as the daemon does; latency is the wall time
of each accept() call that completed an encoder chunk (features + encoder + CTC decoding).
Figures are medians over --repeats runs, measured side by side in the same process. The onnx
variants are exported from the same weights into a temporary folder (``onnx-int8``: the shipped
scheme, weight-only int8 in blocks of 32 (``MatMulNBits``); ``onnx-int8dyn``: onnxruntime's dynamic
quantization of every MatMul weight; torch ``int8``: ``quantize_dynamic`` on every Linear).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ambient.model.asr import AsrModel
from ambient.model.checkpoint import load_model, quantize_int8
from ambient.model.dims import ModelDims, SharingConfig
from ambient.model.export.onnx_graph import build_onnx, quantize_onnx_int8
from ambient.model.info import stored_params, virtual_params
from ambient.runtime.onnx_model import load_onnx_model
from ambient.stream.acoustic import AcousticModel
from ambient.stream.recognizer import StreamingRecognizer

CONFIGS: dict[str, ModelDims] = {
    # The shipped default: residual sharing, 12 virtual layers.
    "residual-d144-12L": ModelDims(
        d_model=144,
        n_heads=4,
        d_ff=576,
        n_layers=12,
        conv_kernel=15,
        sub_channels=64,
        sharing=SharingConfig(scheme="residual", group_size=3, rank=16, diag=True),
    ),
    # The issue's bar: <= 5M stored, >= 12 virtual layers.
    "residual-d192-12L": ModelDims(
        d_model=192,
        n_heads=4,
        d_ff=768,
        n_layers=12,
        conv_kernel=15,
        sub_channels=64,
        sharing=SharingConfig(scheme="residual", group_size=4, rank=16, diag=True),
    ),
    "lowrank-d256-16L": ModelDims(
        d_model=256,
        n_heads=4,
        d_ff=1024,
        n_layers=16,
        conv_kernel=15,
        sub_channels=64,
        sharing=SharingConfig(scheme="lowrank", group_size=0, rank=48, shared_factor="u"),
    ),
}


def _audio(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    w = 0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(t)) * t) + 0.05 * rng.standard_normal(len(t))
    return (w * 32767 * 0.5).astype(np.int16)


def onnx_variants(model: AsrModel, folder: Path) -> dict[str, AcousticModel]:
    """The model exported (fp32) and quantized (int8 in blocks, the shipped scheme; int8dyn, dynamic)
    into ``folder``, loaded on 1 thread."""
    fp32, int8, dyn = folder / "model.onnx", folder / "model-int8.onnx", folder / "model-int8dyn.onnx"
    fp32.write_bytes(build_onnx(model).SerializeToString())
    quantize_onnx_int8(fp32, int8, scheme="block")
    quantize_onnx_int8(fp32, dyn, scheme="dynamic")
    return {
        "fp32": load_onnx_model(fp32, threads=1, verify=False),
        "int8": load_onnx_model(int8, threads=1, verify=False),
        "int8dyn": load_onnx_model(dyn, threads=1, verify=False),
    }


def run_once(model: AsrModel | AcousticModel, audio: np.ndarray, chunk_ms: int) -> dict[str, float]:
    rec = StreamingRecognizer(model, chunk_ms=chunk_ms)
    block = 160
    lat: list[float] = []
    t0 = time.perf_counter()
    frames_before = 0
    for i in range(0, len(audio), block):
        s = time.perf_counter()
        rec.accept(audio[i : i + block])
        if rec.frames_decoded != frames_before:
            lat.append(time.perf_counter() - s)
            frames_before = rec.frames_decoded
        # utterances are bounded by the gate; emulate 20 s utterances
        if rec.audio_seconds >= 20.0:
            rec.finish()
            frames_before = 0
    rec.finish()
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "rtf": wall / (len(audio) / 16000),
        "lat_p50_ms": 1000 * lat[len(lat) // 2],
        "lat_p95_ms": 1000 * lat[int(len(lat) * 0.95)],
        "lat_max_ms": 1000 * lat[-1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--config", choices=sorted(CONFIGS), action="append")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunks", default="320,640")
    ap.add_argument("--backends", default="onnx,torch", help="comma-separated: onnx, torch")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    torch.set_num_threads(1)
    models: dict[str, AsrModel] = {}
    if args.model:
        models[args.model.parent.name] = load_model(args.model)
    else:
        torch.manual_seed(0)
        for name in args.config or list(CONFIGS):
            models[name] = AsrModel(dims=CONFIGS[name]).eval()
    audio = _audio(args.seconds)
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="amb-speed-"))
    for name, fp32 in models.items():
        variants: dict[tuple[str, str], AsrModel | AcousticModel] = {}
        if "onnx" in backends:
            folder = tmp / name
            folder.mkdir()
            variants |= {("onnx", prec): m for prec, m in onnx_variants(fp32, folder).items()}
        if "torch" in backends:
            variants |= {("torch", "fp32"): fp32, ("torch", "int8"): quantize_int8(fp32).eval()}
        for chunk in [int(c) for c in args.chunks.split(",")]:
            for (backend, prec), m in variants.items():
                runs = [run_once(m, audio, chunk) for _ in range(args.repeats)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                rows.append(
                    {
                        "model": name,
                        "stored_params": stored_params(fp32),
                        "virtual_params": virtual_params(fp32),
                        "layers": fp32.dims.n_layers,
                        "chunk_ms": chunk,
                        "backend": backend,
                        "precision": prec,
                        **med,
                    }
                )
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {torch.get_num_threads()} thread, torch {torch.__version__}")
    head = ("model", "stored", "virtual", "L", "chunk", "backend", "prec", "RTF", "p50 ms", "p95 ms", "max ms")
    print("{:22} {:>9} {:>10} {:>3} {:>6} {:>7} {:>5} {:>7} {:>7} {:>7} {:>7}".format(*head))
    for r in rows:
        print(
            f"{r['model']:22} {r['stored_params']:>9,} {r['virtual_params']:>10,} {r['layers']:>3} "
            f"{r['chunk_ms']:>6} {r['backend']:>7} {r['precision']:>5} {r['rtf']:>7.4f} {r['lat_p50_ms']:>7.1f} "
            f"{r['lat_p95_ms']:>7.1f} {r['lat_max_ms']:>7.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
