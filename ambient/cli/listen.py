"""``ambient listen``: print a running daemon's transcripts (or its raw events) as they happen."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = ["register"]

_SYSTEM_SOCKET = Path("/run/ambient/ambient.sock")
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``listen`` subcommand."""
    p = sub.add_parser(
        "listen",
        help="print live transcripts from a running daemon",
        description=(
            "Connect to the daemon's socket and print finals as '[HH:MM:SS] text' (partials overwrite the "
            "current line on a terminal), or every message as JSON Lines with --json. Reconnects when "
            "the daemon restarts; Ctrl-C exits with status 0."
        ),
    )
    add_socket_args(p)
    p.add_argument("--json", action="store_true", help="print every message from the daemon, one JSON object a line")
    p.add_argument(
        "--events",
        type=_event_list,
        default=None,
        metavar="LIST",
        help="comma-separated event types: speech_start,partial,final,status "
        "(default: all with --json; else final,status, plus partial on a terminal)",
    )
    count = p.add_mutually_exclusive_group()
    count.add_argument("--count", type=_positive_int, default=None, metavar="N", help="exit after N finals")
    count.add_argument("--once", dest="count", action="store_const", const=1, help="exit after the first final")
    p.add_argument(
        "--no-reconnect",
        action="store_true",
        help="fail (status 1) when the daemon is not there or the connection ends, instead of retrying",
    )
    p.set_defaults(func=run)


def _event_list(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    bad = [n for n in names if not _EVENT_NAME.fullmatch(n)]
    if bad:
        raise argparse.ArgumentTypeError(f"not an event type name: {bad[0]!r}")
    return names


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_socket_args(p: argparse.ArgumentParser) -> None:
    """``--socket PATH`` and ``--config FILE``: where a client finds the daemon (see :func:`socket_path`)."""
    p.add_argument(
        "--socket",
        type=Path,
        default=None,
        metavar="PATH",
        help="daemon socket (default: $AMBIENT_SOCKET, else the daemon's default path)",
    )
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="take the socket path from this config")


def socket_path(args: argparse.Namespace) -> Path:
    """--socket, else the --config file's socket.path, else $AMBIENT_SOCKET, else the default
    path for this user (falling back to the system daemon's socket when only that exists)."""
    from ambient.config import default_socket_path, load_config

    if args.socket is not None:
        return Path(args.socket)
    if args.config is not None:
        return load_config(args.config).socket.path
    if env := os.environ.get("AMBIENT_SOCKET"):
        return Path(env)
    default = default_socket_path()
    if not default.exists() and _SYSTEM_SOCKET.exists():
        return _SYSTEM_SOCKET
    return default


class _TextOutput:
    """Human-readable transcript: one line per final; partials redraw one line on a terminal."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._partial_shown = False

    def final(self, text: str, start: float) -> None:
        self.clear()
        if text:
            self._out.write(f"[{_clock(start)}] {text}\n")
            self._out.flush()

    def partial(self, text: str, start: float) -> None:
        if not self._tty:
            return
        width = max(20, shutil.get_terminal_size().columns - 1)
        line = f"[{_clock(start)}] {text}"
        if len(line) > width:
            line = "…" + line[-(width - 1) :]
        self._out.write("\r\x1b[K" + line)
        self._out.flush()
        self._partial_shown = True

    def clear(self) -> None:
        if self._partial_shown:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._partial_shown = False


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def run(args: argparse.Namespace) -> int:
    """Follow the daemon until Ctrl-C, ``--count`` finals, or (``--no-reconnect``) disconnection."""
    from ambient.publish.client import follow
    from ambient.publish.protocol import Final, Partial, Status

    # Ctrl-C must stop the client even when it was started with SIGINT ignored or blocked (a parent
    # shell's `trap '' INT`, a supervisor, a test runner): children inherit both, and Python installs
    # its KeyboardInterrupt handler only where SIGINT was not ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    path = socket_path(args)
    tty = sys.stdout.isatty()
    text = _TextOutput(sys.stdout, tty=tty)
    events: tuple[str, ...] | None = args.events
    if events is None and not args.json:
        events = ("partial", "final", "status") if tty else ("final", "status")

    def note(msg: str) -> None:
        text.clear()
        print(f"ambient listen: {msg}", file=sys.stderr, flush=True)

    finals = 0
    try:
        for item in follow(path, events=events, reconnect=not args.no_reconnect, note=note):
            msg = item.message
            if args.json:
                sys.stdout.buffer.write(item.raw + b"\n")
                sys.stdout.buffer.flush()
            elif isinstance(msg, Final):
                text.final(msg.text, msg.start)
            elif isinstance(msg, Partial):
                text.partial(msg.text, msg.start)
            elif isinstance(msg, Status):
                note(f"status {msg.state}" + (f": {msg.detail}" if msg.detail else ""))
            if isinstance(msg, Final):
                finals += 1
                if args.count is not None and finals >= args.count:
                    return 0
    except KeyboardInterrupt:
        text.clear()
        return 0
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time flush quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    return 0
