"""``ambient model info [PATH] [--json]``: what a model file holds.

``ambient model average RUN_DIR --last N --out FILE``: the mean of the weights of a run's last ``N``
training states, written as a model file (see :mod:`ambient.train.average`); ``--files A B ...``
averages the given model files instead (e.g. a model and its fine-tuned version).

``ambient model grow MODEL --rank R --out FILE``: the same model with its low-rank factors grown to
rank ``R``, computing exactly what it did; ``--depth F`` repeats every virtual layer ``F`` times over
the same shared weights (a start for training, see :mod:`ambient.train.grow`).

``ambient model shrink MODEL --rank R --out FILE``: the low-rank factors replaced by their rank-``R``
truncated SVD, for factors that use fewer directions than they store (see :mod:`ambient.train.shrink`).

``ambient model export MODEL --onnx OUT``: the ONNX graph of the streaming step (every cache an explicit
input and output; also the full-context pass) and its int8 twin ``<OUT stem>-int8.onnx``, for the
torch-free runtime (see :mod:`ambient.model.export.onnx_graph`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` subcommand group."""
    p = sub.add_parser("model", help="inspect model files")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = msub.add_parser("info", help="parameters, sharing scheme, dims, size and SHA-256 of a model")
    info.add_argument("path", nargs="?", type=Path, default=None, help="model file (default: the shipped model)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)
    avg = msub.add_parser("average", help="average the weights of a run's last training states into a model file")
    avg.add_argument("run_dir", type=Path, nargs="?", help="training run directory (holds state-*.pt and last.pt)")
    avg.add_argument("--last", type=int, default=5, help="how many of the newest training states (default 5)")
    avg.add_argument(
        "--files",
        type=Path,
        nargs="+",
        default=None,
        help="average these model files or training states instead of a run's last ones (same dims), e.g. a "
        "model and its fine-tuned version",
    )
    avg.add_argument("--out", type=Path, required=True, help="model file to write (with its .sha256)")
    avg.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="model file giving dims, tokenizer, meta (default RUN_DIR/last.pt, or the last of --files)",
    )
    avg.set_defaults(func=run_average)
    grow = msub.add_parser("grow", help="grow a model's low-rank factors to a higher rank (same outputs)")
    grow.add_argument("path", type=Path, help="fp32 model file with low-rank factors (scheme residual or lowrank)")
    grow.add_argument("--rank", type=int, help="the new rank (at least the current one; default: unchanged)")
    grow.add_argument(
        "--depth",
        type=int,
        default=1,
        help="repeat every virtual layer this many times over the same shared weights (residual scheme; "
        "changes the outputs, so train after it)",
    )
    grow.add_argument("--out", type=Path, required=True, help="model file to write (with its .sha256)")
    grow.add_argument("--seed", type=int, default=0, help="seeds the fresh rows of the V factors (default 0)")
    grow.set_defaults(func=run_grow)
    shrink = msub.add_parser("shrink", help="shrink a model's low-rank factors to a lower rank (truncated SVD)")
    shrink.add_argument("path", type=Path, help="fp32 model file with low-rank factors (scheme residual or lowrank)")
    shrink.add_argument("--rank", type=int, required=True, help="the new rank (1 to the current one)")
    shrink.add_argument("--out", type=Path, required=True, help="model file to write (with its .sha256)")
    shrink.set_defaults(func=run_shrink)
    exp = msub.add_parser("export", help="export a model to ONNX for the torch-free runtime (fp32 and int8)")
    exp.add_argument("path", type=Path, help="fp32 model file (model.pt)")
    exp.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="ONNX file to write (with its .sha256)")
    exp.add_argument("--no-int8", action="store_true", help="skip the int8 twin (<OUT stem>-int8.onnx)")
    exp.add_argument(
        "--int8-scheme",
        choices=("block", "dynamic", "dynamic-per-channel"),
        default="block",
        help="block (default): weight-only int8, a scale per 32 weights (MatMulNBits), activations fp32; "
        "dynamic: int8 activations per call, a scale per tensor (or per output channel)",
    )
    exp.set_defaults(func=run_export)


def run_info(args: argparse.Namespace) -> int:
    """Print model information."""
    from ambient.config import load_config
    from ambient.model.checkpoint import load_model, verify_sha256
    from ambient.model.info import model_info

    path: Path = args.path or load_config(None).model.path
    sha = verify_sha256(path) if path.exists() else None
    model = load_model(path, verify=False) if sha else load_model(path)
    info = model_info(model, path, sha)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    d = info["dims"]
    print(f"model           {info['name']}  ({path})")
    print(f"stored params   {info['stored_params']:,}")
    print(f"virtual params  {info['virtual_params']:,}")
    print(f"sharing         {info['sharing_detail']}")
    print(
        f"dims            d={d['d_model']} heads={d['n_heads']} ff={d['d_ff']} layers={d['n_layers']} "
        f"kernel={d['conv_kernel']} subsampling={d['subsampling']}x vocab={d['vocab_size']} ({info['tokenizer']})"
    )
    print(f"file            {info['file_size']:,} bytes{'  int8' if info['int8'] else ''}")
    print(f"sha256          {info['sha256']}")
    return 0


def run_average(args: argparse.Namespace) -> int:
    """Average the newest training states of a run into a model file."""
    from ambient.errors import ConfigError
    from ambient.train.average import average_checkpoints, last_training_states

    if (args.run_dir is None) == (args.files is None):
        raise ConfigError("ambient model average: give a run directory or --files (exactly one)")
    if args.files is not None:
        states = list(args.files)
        reference: Path = args.reference or states[-1]
    else:
        states = last_training_states(args.run_dir, args.last)
        reference = args.reference or args.run_dir / "last.pt"
    sha = average_checkpoints(states, reference, args.out)
    print(f"averaged {', '.join(p.name for p in states)} -> {args.out} (sha256 {sha[:16]}...)")
    return 0


def run_grow(args: argparse.Namespace) -> int:
    """Grow a model file's low-rank factors."""
    from ambient.train.grow import grow_model_file

    if args.rank is None and args.depth == 1:
        from ambient.errors import ConfigError

        raise ConfigError("ambient model grow: give --rank, --depth or both")
    sha, before, after = grow_model_file(args.path, args.rank, args.out, seed=args.seed, depth=args.depth)
    how = [f"to rank {args.rank}"] if args.rank is not None else []
    how += [f"to {args.depth}x the virtual layers"] if args.depth > 1 else []
    print(f"grew {args.path} {' and '.join(how)}: {before:,} -> {after:,} stored params")
    print(f"wrote {args.out} (sha256 {sha[:16]}...)")
    return 0


def run_shrink(args: argparse.Namespace) -> int:
    """Shrink a model file's low-rank factors."""
    from ambient.train.shrink import shrink_model_file

    sha, before, after, kept = shrink_model_file(args.path, args.rank, args.out)
    print(f"shrank {args.path} to rank {args.rank}: {before:,} -> {after:,} stored params")
    print(f"every U·V keeps at least {100 * kept:.1f} % of its energy (squared singular values)")
    print(f"wrote {args.out} (sha256 {sha[:16]}...)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export a model file to ONNX."""
    from ambient.model.export.onnx_graph import export_onnx

    written = export_onnx(args.path, args.onnx, int8=not args.no_int8, int8_scheme=args.int8_scheme)
    for name, sha in written.items():
        size = (args.onnx.parent / name).stat().st_size
        print(f"wrote {args.onnx.parent / name} ({size / 1e6:.1f} MB, sha256 {sha[:16]}...)")
    return 0
