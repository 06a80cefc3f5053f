"""``ambient devices``: the audio input devices PortAudio sees (for ``audio.device``)."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``devices`` subcommand."""
    p = sub.add_parser(
        "devices",
        help="list audio input devices",
        description=(
            "List capture devices with their index, name, host API, input channels and default rate. "
            "Use the index or a unique part of the name as audio.device; '*' marks the default."
        ),
    )
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ambient.audio.devices import list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps([d.to_dict() for d in devices], indent=2))
        return 0
    if not devices:
        print(
            "no audio input devices found (is a sound server running, is the user in group 'audio'?)", file=sys.stderr
        )
        return 0
    width = max(len(d.name) for d in devices)
    print(f"{'index':>5}  {'name':<{width}}  {'host api':<10}  {'channels':>8}  {'default rate':>12}")
    for d in devices:
        mark = "*" if d.default else " "
        print(f"{d.index:>4}{mark}  {d.name:<{width}}  {d.hostapi:<10}  {d.channels:>8}  {d.default_rate:>9.0f} Hz")
    return 0
