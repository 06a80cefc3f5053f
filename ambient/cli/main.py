"""``ambient`` entry point: builds the argument parser from the subcommand modules and dispatches.

Each subcommand lives in ``ambient/cli/<module>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking the
parsed ``argparse.Namespace`` and returning an exit status). Modules are imported when the parser is
built; heavy imports (torch) happen inside the handlers so ``ambient listen`` stays light.
``AmbientError`` becomes a one-line message on stderr and its exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ambient import __version__
from ambient.errors import AmbientError

__all__ = ["build_parser", "main"]

#: Subcommand modules, in the order ``ambient --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "listen",
    "captions_cmd",
    "transcribe",
    "devices",
    "config_cmd",
    "model_cmd",
    "data_cmd",
    "train_cmd",
    "eval_cmd",
    "wyoming_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``ambient`` parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="ambient", description="Always-on streaming speech recognition.")
    parser.add_argument("--version", action="version", version=f"ambient {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"ambient.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AmbientError as e:
        print(f"ambient: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
