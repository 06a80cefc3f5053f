"""``python -m ambient.train --config train.yaml [--resume]``: one rank of a training run.

Start it directly for one process, or under torchrun for several (DDP; NCCL on GPUs, gloo on CPU)::

    torchrun --nproc_per_node=4 -m ambient.train --config configs/train/librispeech.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ambient.errors import AmbientError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and train; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m ambient.train", description="Train an ambient recognizer.")
    parser.add_argument("--config", required=True, help="training YAML (see docs/training.md)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require a training state in the run directory (it is used anyway if present)",
    )
    args = parser.parse_args(argv)
    try:
        from ambient.train.config import load_train_config
        from ambient.train.trainer import run_training

        run_training(load_train_config(args.config), require_resume=args.resume)
    except AmbientError as e:
        print(f"ambient: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
