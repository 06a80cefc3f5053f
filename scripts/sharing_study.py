"""The sharing study: the same data and the same number of steps for each weight-sharing scheme.

Usage:
    python scripts/sharing_study.py --base configs/train/study.yaml --steps 500 --out runs/study \\
        [--variants none-3L,none-6L,repeat-3of6,lowrank-6L-r88,residual-6L-K3] [--dev MANIFEST] \\
        [--lm DIR] [--json docs/sharing_study.json] [--png docs/sharing_study.png]

Every variant takes the base config's data, optimization (with ``max_steps = --steps``, no time
limit), chunking and run settings (``init_from``/``init_parts`` included), and only changes the
``model`` section. Each trains in ``OUT/NAME`` with ``ambient train`` (so an interrupted study
resumes where it stopped: run the same command again), then its final model is measured: stored
and virtual parameters, dev WER through the streaming path at 640 ms chunks (greedy, and with the
word LM of ``--lm``), and streaming RTF on 1 thread (20 s of audio fed in 10 ms blocks, features
included). Prints a markdown table and writes JSON and a PNG (dev WER against stored parameters)
for ``docs/model.md``.

The variants are sized around the default model (d = 144): equal stored parameters (≈ 1.67M:
``none-3L``, ``repeat-3of6``, ``lowrank-6L-r88``, ``residual-6L-K3``) and equal compute
(≈ 3.1–3.6M applied per frame: ``none-6L``, ``repeat-3of6``, ``residual-6L-K3``).

``configs/train/study.yaml`` starts every variant from the same pretrained pieces of the shipped
model (convolutional front end, output layer, feature normalization: ``run.init_parts``) with
fresh encoder layers. From a random front end every variant would first sit ≈ 40 h of audio
(≈ 35 minutes of this machine each) on the CTC blank plateau, where all WERs are 100 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ambient.model.checkpoint import load_model
from ambient.model.dims import SharingConfig
from ambient.model.info import stored_params, virtual_params
from ambient.model.lexicon_lm import load_lm
from ambient.stream.recognizer import StreamingRecognizer
from ambient.train.config import load_train_config
from ambient.train.evaluate import evaluate_streaming
from ambient.train.manifest import read_manifest
from ambient.train.trainer import build_tokenizer

#: name -> (virtual layers, sharing)
VARIANTS: dict[str, tuple[int, SharingConfig]] = {
    "none-3L": (3, SharingConfig(scheme="none")),
    "none-6L": (6, SharingConfig(scheme="none")),
    "repeat-3of6": (6, SharingConfig(scheme="repeat", n_stored_blocks=3)),
    "lowrank-6L-r88": (6, SharingConfig(scheme="lowrank", group_size=0, rank=88, shared_factor="u")),
    "residual-6L-K3": (6, SharingConfig(scheme="residual", group_size=3, rank=16, diag=True)),
}


def variant_config(base: dict[str, Any], name: str, steps: int, out: Path) -> dict[str, Any]:
    """The base config (plain data, absolute paths) with this variant's model and schedule."""
    layers, sharing = VARIANTS[name]
    cfg = json.loads(json.dumps(base))
    cfg["model"]["n_layers"] = layers
    cfg["model"]["sharing"] = dataclasses.asdict(sharing)
    cfg["model"].pop("vocab_size", None)
    cfg["optim"]["max_steps"] = steps
    cfg["optim"]["max_hours"] = None
    cfg["optim"]["warmup_steps"] = min(cfg["optim"]["warmup_steps"], max(1, steps // 5))
    cfg["run"]["output_dir"] = str(out / name)
    cfg["run"]["name"] = f"study-{name}"
    cfg["run"]["dev_every_steps"] = steps
    return cfg


def streaming_rtf(model: Any, seconds: float = 20.0) -> float:
    """Wall time per audio second, 1 thread, 10 ms blocks, 640 ms chunks, features included."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * 16000)) * 1000).astype(np.int16)
    rec = StreamingRecognizer(model, chunk_ms=640)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(0, len(audio), 160):
            rec.accept(audio[i : i + 160])
        rec.finish()
        best = min(best, time.perf_counter() - t0)
    return best / seconds


def _final_loss(run_dir: Path, last: int = 5) -> float:
    """Mean training loss of the last ``last`` metrics records of a run (``metrics.jsonl``)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if r.get("kind") == "train"][-last:]
    return float(np.mean(losses)) if losses else float("nan")


def plot(rows: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    for i, r in enumerate(rows):
        x = r["stored_params"] / 1e6
        size = 20 + r["virtual_params"] / 1e5
        color = f"C{i}"
        ax.scatter(x, 100 * r["dev_wer"], s=size, facecolors="none", edgecolors=color)
        best = r["dev_wer"] if r["dev_wer_lm"] is None else r["dev_wer_lm"]
        label = f"{r['name']}: {r['virtual_params'] / 1e6:.2f}M virtual"
        ax.scatter(x, 100 * best, s=size, color=color, label=label)
    ax.legend(fontsize=8, loc="center right")
    if any(r["dev_wer_lm"] is not None for r in rows):
        ax.text(0.01, 0.01, "filled: with the word LM; hollow: greedy", transform=ax.transAxes, fontsize=8)
    ax.set_xlabel("stored parameters (millions); marker size: virtual parameters")
    ax.set_ylabel("dev WER % (streaming, 640 ms)")
    ax.set_title(f"Weight sharing at an equal budget ({rows[0]['steps']} steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="training config whose data and schedule all share")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True, help="study directory (outside git, e.g. runs/study)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--dev", type=Path, default=None, help="dev manifest (default: the base config's)")
    ap.add_argument("--dev-limit", type=int, default=None, help="first N dev utterances")
    ap.add_argument("--lm", default="off", help="word LM folder for a second dev WER (off: greedy only)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--replot", action="store_true", help="only redraw --png from the rows in --json")
    args = ap.parse_args()
    if args.replot:
        if args.json is None or args.png is None:
            ap.error("--replot needs --json (to read) and --png (to write)")
        plot(json.loads(args.json.read_text())["rows"], args.png)
        return 0
    names = args.variants.split(",")
    for n in names:
        if n not in VARIANTS:
            ap.error(f"unknown variant {n!r}; choose from {', '.join(VARIANTS)}")
    base_cfg = load_train_config(args.base)
    base = base_cfg.model_dump(mode="json")
    dev = args.dev or base_cfg.data.dev
    if dev is None:
        ap.error("no dev manifest: pass --dev")
    dev_utts = read_manifest(dev)[: args.dev_limit] if args.dev_limit else read_manifest(dev)
    args.out.mkdir(parents=True, exist_ok=True)
    # One load for all variants: they share the base config's tokenizer.
    lm = load_lm(args.lm, model_path=args.out / "last.pt", tokenizer=build_tokenizer(base_cfg))

    rows: list[dict[str, Any]] = []
    for name in names:
        cfg_path = args.out / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(variant_config(base, name, args.steps, args.out.resolve())))
        print(f"== {name}: training {args.steps} steps ({cfg_path})", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "ambient", "train", "--config", str(cfg_path)], check=True)
        hours = (time.monotonic() - t0) / 3600
        model = load_model(args.out / name / "last.pt")
        torch.set_num_threads(1)
        report = evaluate_streaming(model, dev_utts, chunk_ms=640)
        lm_wer = None if lm is None else evaluate_streaming(model, dev_utts, chunk_ms=640, lm=lm).overall.wer
        rows.append(
            {
                "name": name,
                "steps": args.steps,
                "sharing": VARIANTS[name][1].describe(),
                "layers": VARIANTS[name][0],
                "stored_params": stored_params(model),
                "virtual_params": virtual_params(model),
                "dev_wer": report.overall.wer,
                "dev_wer_lm": lm_wer,
                "train_loss": _final_loss(args.out / name),
                "dev_utterances": report.overall.utterances,
                "rtf": streaming_rtf(model),
                "train_wall_hours_this_call": round(hours, 3),
                "audio_hours_seen": model.meta.get("training", {}).get("audio_hours_seen"),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    print(
        "| variant | sharing | virtual layers | stored params | virtual params | train loss | "
        "dev WER % greedy | dev WER % LM | RTF (1 thread) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lm_cell = "–" if r["dev_wer_lm"] is None else f"{100 * r['dev_wer_lm']:.1f}"
        print(
            f"| {r['name']} | {r['sharing']} | {r['layers']} | {r['stored_params'] / 1e6:.2f}M | "
            f"{r['virtual_params'] / 1e6:.2f}M | {r['train_loss']:.3f} | {100 * r['dev_wer']:.1f} | {lm_cell} | "
            f"{r['rtf']:.4f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"base": str(args.base), "dev": str(dev), "rows": rows}, indent=2) + "\n")
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
