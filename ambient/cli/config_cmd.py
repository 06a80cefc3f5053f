"""``ambient config``: check a configuration file, show the effective settings, print the reference."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` subcommand and its actions."""
    p = sub.add_parser(
        "config",
        help="check or show the daemon configuration",
        description="Validate a configuration file, print the effective settings, or print the key reference.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a file (exit 0 if ambient run would accept it, 2 if not)",
        description=(
            "Validate FILE (default: $AMBIENT_CONFIG, else the defaults): unknown keys, bad values, and "
            "whether the files it names exist. Prints one line; exit status 0 or 2."
        ),
    )
    check.add_argument("file", nargs="?", type=Path, default=None, metavar="FILE")
    check.add_argument(
        "--schema-only", action="store_true", help="only validate keys and values, do not look for the files named"
    )
    check.set_defaults(func=_check)
    show = actions.add_parser(
        "show",
        help="print the effective configuration as YAML (defaults and environment overrides included)",
    )
    show.add_argument("file", nargs="?", type=Path, default=None, metavar="FILE")
    show.set_defaults(func=_show)
    ref = actions.add_parser("reference", help="print the Markdown reference of every key (docs/configuration.md)")
    ref.set_defaults(func=_reference)


def _path(args: argparse.Namespace) -> Path | None:
    if args.file is not None:
        return Path(args.file)
    env = os.environ.get("AMBIENT_CONFIG")
    return Path(env) if env else None


def _check(args: argparse.Namespace) -> int:
    from ambient.config import load_config
    from ambient.daemon.preflight import preflight

    path = _path(args)
    cfg = load_config(path)
    if not args.schema_only:
        preflight(cfg, source=str(path) if path is not None else "defaults")
    print(f"{path if path is not None else 'defaults'}: ok")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ambient.config import dump_config, load_config

    sys.stdout.write(dump_config(load_config(_path(args))))
    return 0


def _reference(args: argparse.Namespace) -> int:
    from ambient.config import config_markdown

    sys.stdout.write(config_markdown())
    return 0
