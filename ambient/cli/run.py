"""``ambient run``: the daemon (microphone, file or stdin -> transcripts on the socket and in the log)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["config_path_from", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run the recognition daemon",
        description=(
            "Listen to the configured audio source, transcribe speech and publish events on the Unix "
            "socket and in the event log. SIGHUP reloads the configuration; SIGTERM or Ctrl-C stops "
            "after finishing the utterance in progress. Under systemd (Type=notify) it reports "
            "READY, STATUS and WATCHDOG. Examples: `ambient run --config /etc/ambient/config.yaml`, "
            "`arecord -f S16_LE -r 16000 -c 1 | ambient run --source stdin`, `ambient run --file talk.wav`."
        ),
    )
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML configuration (default: $AMBIENT_CONFIG, else built-in defaults)",
    )
    p.add_argument(
        "--source", choices=("mic", "file", "stdin"), default=None, help="override audio.source for this run"
    )
    p.add_argument(
        "--file",
        type=Path,
        default=None,
        metavar="AUDIO",
        help="transcribe this WAV/FLAC file (implies --source file; add --fast to skip real-time pacing)",
    )
    p.add_argument("--fast", action="store_true", help="with a file source: read it as fast as possible")
    p.set_defaults(func=_run)


def config_path_from(args: argparse.Namespace) -> Path | None:
    """``--config``, else ``$AMBIENT_CONFIG``, else None (defaults)."""
    if args.config is not None:
        return Path(args.config)
    env = os.environ.get("AMBIENT_CONFIG")
    return Path(env) if env else None


def _run(args: argparse.Namespace) -> int:
    from ambient.runtime.heap import tune_malloc

    tune_malloc()  # before any thread starts: a long-running process must not fragment its heap
    from ambient.config import load_config
    from ambient.daemon.overrides import apply_audio_overrides
    from ambient.daemon.preflight import preflight

    path = config_path_from(args)
    overrides: dict[str, Any] = {}
    if args.file is not None:
        overrides |= {"source": "file", "file": args.file}
    if args.source is not None:
        overrides["source"] = args.source
    if args.fast:
        overrides["realtime"] = False
    cfg = apply_audio_overrides(load_config(path), overrides)
    preflight(cfg, source=str(path) if path is not None else "config")  # before the slow torch import

    from ambient.daemon.service import run_daemon

    return run_daemon(cfg, config_path=path, audio_overrides=overrides)
