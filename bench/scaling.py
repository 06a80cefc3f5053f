"""How streaming speed and memory grow with the number of virtual layers (with and without weight
sharing), the chunk size and the thread count.

Usage: python bench/scaling.py [--seconds 10] [--repeats 3] [--sweeps layers,chunk,threads]
                               [--layers 4,8,12,16,24] [--chunks 160,320,640,1280] [--threads 1,2]
                               [--precisions fp32] [--json OUT] [--png OUT]

Random weights (speed and memory do not depend on them) with the ambient-base dimensions (d=144,
4 heads, FF 576, kernel 15, 4x subsampling, characters). Sweeps:

- ``layers``: 4 … 24 virtual layers under three storage schemes: ``none`` (every layer its own
  weights), ``repeat`` (2 stored blocks applied in turn: the stored weights do not grow) and
  ``residual`` (one shared full-rank matrix per projection for all layers plus a rank-16 and a
  diagonal term per layer: only the small terms grow); chunk 640 ms, 1 thread.
- ``chunk``: 160/320/640/1280 ms encoder chunks on ambient-base (residual, 3 layers per shared
  matrix, 12 virtual layers), 1 thread.
- ``threads``: 1 and 2 torch threads on ambient-base, chunk 640 ms.

Each configuration runs in a fresh process: RSS after importing torch (the baseline), after building
the model, and the peak after streaming; RTF (compute seconds per audio second, features and CTC
decoding included, audio fed in 10 ms blocks, 20 s utterances) and per-chunk latency are medians over
``--repeats`` runs after a warm-up (the same measurement as ``bench/stream_speed.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import Column, machine_info, print_table, write_results

HERE = Path(__file__).resolve().parent
SCHEMES: dict[str, dict[str, Any]] = {
    "none": {"scheme": "none"},
    "repeat": {"scheme": "repeat", "n_stored_blocks": 2, "order": "cycle"},
    "residual": {"scheme": "residual", "group_size": 0, "rank": 16, "diag": True},
}
#: ambient-base (configs/train/default.yaml) apart from the sharing scheme and layer count.
BASE_DIMS: dict[str, Any] = {
    "d_model": 144,
    "n_heads": 4,
    "d_ff": 576,
    "conv_kernel": 15,
    "n_layers": 12,
    "subsampling": 4,
    "sub_channels": 64,
    "dropout": 0.0,
    "sharing": {"scheme": "residual", "group_size": 3, "rank": 16, "diag": True},
}


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this (fresh) process."""
    import numpy as np
    import torch
    from stream_speed import run_once

    from ambient.model.asr import AsrModel
    from ambient.model.checkpoint import quantize_int8
    from ambient.model.dims import ModelDims
    from ambient.model.info import stored_params, virtual_params

    torch.set_num_threads(spec["threads"])
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    rss_base = _rss_mb()
    torch.manual_seed(0)
    model = AsrModel(dims=ModelDims.from_dict(spec["dims"])).eval()
    stored, virtual = stored_params(model), virtual_params(model)
    if spec["precision"] == "int8":
        model = quantize_int8(model).eval()
    rss_model = _rss_mb()
    rng = np.random.default_rng(0)
    t = np.arange(int(spec["seconds"] * 16000)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(t)) * t) + 0.05 * rng.standard_normal(len(t))
    audio = (wave * 32767 * 0.5).astype(np.int16)
    run_once(model, audio[: 2 * 16000], spec["chunk_ms"])  # warm-up: allocations, first-call paths
    runs = [run_once(model, audio, spec["chunk_ms"]) for _ in range(spec["repeats"])]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {
        **{k: v for k, v in spec.items() if k != "dims"},
        "stored_params": stored,
        "virtual_params": virtual,
        "rss_base_mb": rss_base,
        "rss_model_mb": rss_model,
        "rss_peak_mb": _rss_mb("VmHWM"),
        "model_mb": rss_model - rss_base,
        "stream_mb": _rss_mb("VmHWM") - rss_base,
        **med,
    }


def _spec(
    sweep: str, name: str, dims: dict[str, Any], chunk_ms: int, threads: int, precision: str, args: Any
) -> dict[str, Any]:
    return {
        "sweep": sweep,
        "name": name,
        "layers": dims["n_layers"],
        "scheme": dims["sharing"]["scheme"],
        "dims": dims,
        "chunk_ms": chunk_ms,
        "threads": threads,
        "precision": precision,
        "seconds": args.seconds,
        "repeats": args.repeats,
    }


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration of the requested sweeps."""
    specs: list[dict[str, Any]] = []
    sweeps = args.sweeps.split(",")
    for precision in args.precisions.split(","):
        if "layers" in sweeps:
            for scheme in args.schemes.split(","):
                for n in (int(x) for x in args.layers.split(",")):
                    dims = {**BASE_DIMS, "n_layers": n, "sharing": SCHEMES[scheme]}
                    specs.append(_spec("layers", f"{scheme}-{n}L", dims, 640, 1, precision, args))
        if "chunk" in sweeps:
            for c in (int(x) for x in args.chunks.split(",")):
                specs.append(_spec("chunk", f"ambient-base-{c}ms", BASE_DIMS, c, 1, precision, args))
        if "threads" in sweeps:
            for th in (int(x) for x in args.threads.split(",")):
                specs.append(_spec("threads", f"ambient-base-{th}t", BASE_DIMS, 640, th, precision, args))
    return specs


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter with ``spec['threads']`` OpenMP threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    r = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit status {r.returncode}"
        raise RuntimeError(f"{spec['name']}: {tail}")
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """RTF, stored parameters and memory against layers; RTF and latency against chunk size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    layer_rows = [r for r in rows if r["sweep"] == "layers"]
    for (prec, scheme), marker in zip(
        sorted({(r["precision"], r["scheme"]) for r in layer_rows}), "osd^v<>ph*", strict=False
    ):
        sel = sorted(
            (r for r in layer_rows if r["scheme"] == scheme and r["precision"] == prec), key=lambda r: r["layers"]
        )
        x = [r["layers"] for r in sel]
        label = f"{scheme} ({prec})"
        axes[0][0].plot(x, [r["rtf"] for r in sel], marker=marker, label=label)
        axes[0][1].plot(x, [r["stored_params"] / 1e6 for r in sel], marker=marker, label=label)
        axes[1][0].plot(x, [r["stream_mb"] for r in sel], marker=marker, label=label)
    layer_ticks = sorted({r["layers"] for r in layer_rows})
    for a in (axes[0][0], axes[0][1], axes[1][0]):
        a.set_xticks(layer_ticks)
    axes[0][0].set(title="RTF vs virtual layers (chunk 640 ms, 1 thread)", xlabel="virtual layers", ylabel="RTF")
    axes[0][1].set(title="stored parameters", xlabel="virtual layers", ylabel="millions")
    axes[1][0].set(title="peak RSS above the torch baseline", xlabel="virtual layers", ylabel="MiB")
    chunk_rows = sorted((r for r in rows if r["sweep"] == "chunk"), key=lambda r: r["chunk_ms"])
    ax = axes[1][1]
    for prec in sorted({r["precision"] for r in chunk_rows}):
        sel = [r for r in chunk_rows if r["precision"] == prec]
        ax.plot([r["chunk_ms"] for r in sel], [r["rtf"] for r in sel], marker="o", label=f"RTF ({prec})")
    ax.set(title="ambient-base: RTF and per-chunk latency vs chunk", xlabel="chunk (ms)", ylabel="RTF")
    ax.set_xscale("log", base=2)
    chunk_ticks = sorted({r["chunk_ms"] for r in chunk_rows})
    ax.set_xticks(chunk_ticks, [str(c) for c in chunk_ticks])
    ax.minorticks_off()
    ax2 = ax.twinx()
    for prec in sorted({r["precision"] for r in chunk_rows}):
        sel = [r for r in chunk_rows if r["precision"] == prec]
        ax2.plot(
            [r["chunk_ms"] for r in sel], [r["lat_p95_ms"] for r in sel], "--", marker="x", label=f"p95 ms ({prec})"
        )
    ax2.set_ylabel("chunk latency p95 (ms)")
    for a in (axes[0][0], axes[0][1], axes[1][0]):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend()
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    if lines:
        ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


COLUMNS = (
    Column("config", "name"),
    Column("prec", "precision"),
    Column("L", "layers"),
    Column("chunk", "chunk_ms"),
    Column("thr", "threads"),
    Column("stored", "stored_params", ","),
    Column("virtual", "virtual_params", ","),
    Column("RTF", "rtf", ".4f"),
    Column("p50 ms", "lat_p50_ms", ".1f"),
    Column("p95 ms", "lat_p95_ms", ".1f"),
    Column("model MiB", "model_mb", ".1f"),
    Column("peak-base MiB", "stream_mb", ".1f"),
    Column("peak MiB", "rss_peak_mb", ".0f"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sweeps", default="layers,chunk,threads", help="comma-separated: layers, chunk, threads")
    ap.add_argument("--layers", default="4,8,12,16,24", help="virtual layer counts")
    ap.add_argument("--schemes", default=",".join(SCHEMES), help=f"for the layers sweep: {', '.join(SCHEMES)}")
    ap.add_argument("--chunks", default="160,320,640,1280", help="chunk sizes (ms)")
    ap.add_argument("--threads", default="1,2", help="torch thread counts")
    ap.add_argument("--precisions", default="fp32", help="fp32 and/or int8")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per run (full run: 60)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration (median)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--png", type=Path, default=None, help="chart (default: beside --json)")
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if bad := set(args.schemes.split(",")) - set(SCHEMES):
        ap.error(f"unknown scheme(s): {', '.join(sorted(bad))}")
    if bad := set(args.precisions.split(",")) - {"fp32", "int8"}:
        ap.error(f"unknown precision(s): {', '.join(sorted(bad))}")
    if bad := set(args.sweeps.split(",")) - {"layers", "chunk", "threads"}:
        ap.error(f"unknown sweep(s): {', '.join(sorted(bad))}")
    machine = machine_info()
    rows = []
    for spec in plan(args):
        row = run_spec(spec)
        rows.append(row)
        print(
            f"  {row['name']:22} {row['precision']:4} RTF {row['rtf']:.4f}  p95 {row['lat_p95_ms']:6.1f} ms  "
            f"peak {row['rss_peak_mb']:5.0f} MiB",
            flush=True,
        )
    print_table(f"scaling: {args.seconds:g} s of audio, median of {args.repeats} runs, random weights", COLUMNS, rows)
    png = args.png or (args.json.with_suffix(".png") if args.json else None)
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        chart(rows, png)
        print(f"chart: {png}")
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "json", "png")}
    write_results(
        args.json,
        benchmark="scaling",
        machine=machine,
        settings=settings,
        results=rows,
        extra={"chart": str(png) if png else None},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
