"""``ambient captions``: serve live captions of a running daemon to a browser."""

from __future__ import annotations

import argparse
import ipaddress

from ambient.cli.listen import add_socket_args

__all__ = ["parse_listen", "register"]

DEFAULT_LISTEN = "127.0.0.1:8765"
#: How often the counters are logged (when they changed).
STATS_EVERY_S = 60.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``captions`` subcommand."""
    p = sub.add_parser(
        "captions",
        help="serve live captions of a running daemon as a web page",
        description=(
            "Follow the daemon's socket (reconnecting when it restarts) and serve a page with the live "
            "captions and a websocket on --listen (loopback by default). Open http://127.0.0.1:8765/ in a "
            "browser. Needs the `captions` extra (pip install 'ambient[captions]'). Counters at /stats."
        ),
    )
    p.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; [::1]:8765 for IPv6; port 0 picks a free one)",
    )
    add_socket_args(p)
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers may use for this server besides IP addresses and localhost (repeatable)",
    )
    p.add_argument(
        "--max-clients", type=int, default=64, metavar="N", help="most caption pages open at once (default 64)"
    )
    p.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="diagnostic log format on stderr (default: console on a terminal, else JSON)",
    )
    p.set_defaults(func=run)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> ``(host, port)``; the host must be an IP address or
    ``localhost``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IP address: {host!r}") from None
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return host, port


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (exit 0) or until the daemon refuses this user (exit 1)."""
    import asyncio

    from ambient.cli.listen import socket_path
    from ambient.config import LoggingConfig
    from ambient.errors import AmbientError
    from ambient.logs import configure_logging

    if args.max_clients < 1:
        raise AmbientError("--max-clients must be at least 1")
    try:
        from ambient.captions.serve import serve
    except ImportError as e:
        raise AmbientError(f"ambient captions needs aiohttp: pip install 'ambient[captions]' ({e})") from None
    configure_logging(LoggingConfig(format=args.log_format))
    host, port = args.listen
    return asyncio.run(
        serve(
            socket_path(args),
            host=host,
            port=port,
            allow_hosts=tuple(args.allow_host),
            max_clients=args.max_clients,
            stats_every_s=STATS_EVERY_S,
        )
    )
