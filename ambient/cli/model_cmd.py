"""``ambient model info [PATH] [--json]``: what a model file holds."""

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
