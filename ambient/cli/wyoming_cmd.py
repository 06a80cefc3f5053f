"""``ambient wyoming``: the Wyoming speech-to-text server for Home Assistant and other voice apps."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO, cast

from ambient.cli.run import config_path_from

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``wyoming`` subcommand."""
    p = sub.add_parser(
        "wyoming",
        help="serve speech-to-text over the Wyoming protocol (Home Assistant)",
        description=(
            "A Wyoming ASR server with streaming transcripts (transcript-start/-chunk/-stop while the audio "
            "arrives, then the final transcript), one resident model for all connections. Listens on "
            "wyoming.uri (default tcp://127.0.0.1:10300); a non-loopback address needs wyoming.allow_lan: true. "
            "SIGHUP re-reads recognizer.phrases. Example: `ambient wyoming --uri tcp://127.0.0.1:10300`."
        ),
    )
    p.add_argument(
        "--uri",
        action="append",
        default=None,
        metavar="URI",
        help="tcp://HOST:PORT or unix://PATH; repeat to listen on several (replaces wyoming.uri)",
    )
    p.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="FILE",
        help="YAML configuration (default: $AMBIENT_CONFIG, else built-in defaults)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ambient.runtime.heap import tune_malloc

    tune_malloc()  # before any thread starts: a long-running process must not fragment its heap
    import structlog

    from ambient.config import load_config
    from ambient.daemon.logstream import SafeStream
    from ambient.logs import configure_logging
    from ambient.stream.phrases import load_phrases
    from ambient.wyoming.server import parse_uri

    path = config_path_from(args)
    cfg = load_config(path)
    listeners = [parse_uri(u, allow_lan=cfg.wyoming.allow_lan) for u in (args.uri or cfg.wyoming.uri)]
    load_phrases(cfg.recognizer.phrases)  # a missing phrase file fails before the slow model load
    configure_logging(cfg.logging, stream=cast(TextIO, SafeStream(sys.stderr)))
    log = structlog.get_logger("ambient.wyoming")

    from ambient.daemon.service import load_recognizer
    from ambient.wyoming.server import WyomingServer

    recognizer, name = load_recognizer(cfg, logger=log)
    server = WyomingServer(
        cfg=cfg, config_path=path, listeners=listeners, recognizer=recognizer, model_name=name, logger=log
    )
    return asyncio.run(server.serve())
