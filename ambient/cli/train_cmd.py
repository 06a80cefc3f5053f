"""``ambient train --config train.yaml [--resume]``: train in this process (see docs/training.md).

For several processes or GPUs use ``torchrun --nproc_per_node=N -m ambient.train --config ...``;
both run the same code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train a recognizer from a training YAML")
    p.add_argument("--config", type=Path, required=True, help="training YAML (configs/train/*.yaml)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="require a training state in the run directory (a run directory with one resumes anyway)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train until the config's limits; prints a JSON summary on stdout."""
    from ambient.train.config import load_train_config
    from ambient.train.trainer import run_training

    result = run_training(load_train_config(args.config), require_resume=args.resume)
    summary = {
        "run_dir": str(result.run_dir),
        "step": result.step,
        "stopped_by": result.stopped_by,
        "audio_hours": round(result.audio_hours, 3),
        "train_hours": round(result.train_hours, 3),
        "dev_wer_full": result.dev_wer_full,
        "dev_wer_stream": result.dev_wer_stream,
        "best_dev_wer_stream": result.best_wer,
        "skipped": result.skipped,
    }
    print(json.dumps(summary), flush=True)
    return 0
