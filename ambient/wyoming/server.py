"""``ambient wyoming``: listeners, the shared model, phrase lists, signals.

One process, one resident model: every connection gets its own recognizer state
(:meth:`~ambient.stream.recognizer.StreamingRecognizer.fork`) over the model and LM that
:func:`ambient.daemon.service.load_recognizer` loaded, the same construction the daemon uses.
Listeners are ``tcp://HOST:PORT`` (loopback unless ``wyoming.allow_lan``) and ``unix://PATH``
(handled like the event socket, :class:`~ambient.publish.socket_file.SocketFile`: a stale socket
is removed, a live one or another file refused, ours removed on exit).

Signals: ``SIGHUP`` re-reads the configuration's phrase list (and its file) and rebuilds the
biased LM in a worker thread; requests started afterwards use it. Other changed keys are logged
as needing a restart. ``SIGTERM``/``SIGINT`` stop listening, close connections and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import structlog
from structlog.typing import FilteringBoundLogger
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from ambient import __version__
from ambient.config import Config, SocketConfig, WyomingConfig, load_config
from ambient.daemon.notify import Notifier
from ambient.errors import AmbientError, ConfigError
from ambient.model.lexicon_lm import LexiconLm
from ambient.publish.socket_file import SocketFile
from ambient.stream.phrases import RecognizerPhrases, load_phrases
from ambient.stream.recognizer import StreamingRecognizer
from ambient.wyoming.handler import Connection

__all__ = ["Listener", "WyomingServer", "build_info", "parse_uri"]

#: No public home page yet: an empty URL rather than a made-up one.
_ATTRIBUTION = Attribution(name="ambient", url="")
_LISTEN_BACKLOG = 64


@dataclass(frozen=True)
class Listener:
    """A parsed ``--uri``: ``tcp`` with host and port, or ``unix`` with a path."""

    scheme: str
    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.scheme == "unix" else f"tcp://{self.host}:{self.port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_uri(uri: str, *, allow_lan: bool) -> Listener:
    """``tcp://HOST:PORT`` or ``unix://PATH``; a non-loopback TCP host needs ``allow_lan``.
    Raises :class:`ConfigError` with a message naming the setting."""
    try:
        u = urlparse(uri)
        port = u.port
    except ValueError as e:
        raise ConfigError(f"wyoming uri {uri!r}: {e}") from None
    if u.scheme == "unix":
        if not u.path:
            raise ConfigError(f"wyoming uri {uri!r}: unix:// needs a path")
        return Listener("unix", path=Path(u.path))
    if u.scheme != "tcp":
        raise ConfigError(f"wyoming uri {uri!r}: only tcp://HOST:PORT and unix://PATH are supported")
    if not u.hostname or port is None:
        raise ConfigError(f"wyoming uri {uri!r}: tcp:// needs a host and a port")
    if not allow_lan and not _is_loopback(u.hostname):
        raise ConfigError(
            f"wyoming uri {uri!r} is not a loopback address: set wyoming.allow_lan: true in the "
            "configuration to serve the network"
        )
    return Listener("tcp", host=u.hostname, port=port)


def build_info(model_name: str) -> Info:
    """The ``info`` answer to ``describe``."""
    model = AsrModel(
        name=model_name,
        attribution=_ATTRIBUTION,
        installed=True,
        description="ambient streaming Conformer (CTC + word LM beam search)",
        version=__version__,
        languages=["en"],
    )
    program = AsrProgram(
        name="ambient",
        attribution=_ATTRIBUTION,
        installed=True,
        description="Always-on streaming speech recognition",
        version=__version__,
        models=[model],
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])


class WyomingServer:
    """Serves Wyoming ASR clients with one resident model until stopped."""

    def __init__(
        self,
        *,
        cfg: Config,
        config_path: Path | None,
        listeners: Sequence[Listener],
        recognizer: StreamingRecognizer,
        model_name: str,
        notifier: Notifier | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self.cfg = cfg
        self.settings: WyomingConfig = cfg.wyoming
        self._config_path = config_path
        self._listeners = list(listeners)
        self._proto = recognizer
        self.info_event: Event = build_info(model_name).event()
        self._notifier = notifier or Notifier.from_env()
        self._log: FilteringBoundLogger = logger or structlog.get_logger("ambient.wyoming")
        self._phrases = RecognizerPhrases(recognizer, boost=cfg.recognizer.phrase_boost)
        self._servers: list[asyncio.Server] = []
        self._socket_files: list[SocketFile] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ recognizers

    async def set_phrases(self, phrases: Sequence[str]) -> None:
        """Use ``phrases`` (the configuration's list) for requests from now on."""
        if self._phrases.bias is None and phrases:
            self._log.warning("recognizer.phrases needs the language model (recognizer.lm); ignored")
        await asyncio.to_thread(self._phrases.apply, phrases)

    async def lm_for(self, extra: Sequence[str]) -> LexiconLm | None:
        """The LM of a request: the configuration's phrases plus the request's own."""
        bias = self._phrases.bias
        if bias is None or not extra:
            return self._proto.lm
        return await asyncio.to_thread(bias.lm_for, (*self._phrases.phrases, *extra))

    def new_recognizer(self, lm: LexiconLm | None) -> StreamingRecognizer:
        """Fresh recognizer state over the shared model."""
        return self._proto.fork(lm=lm)

    # ------------------------------------------------------------------ main

    async def serve(self) -> int:
        """Listen, serve until SIGTERM/SIGINT, clean up; returns the exit status."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.set_phrases(load_phrases(self.cfg.recognizer.phrases))
        try:
            for listener in self._listeners:
                await self._listen(listener)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload()))
            where = [str(x) for x in self.bound()]
            self._notifier.ready(status=f"Serving Wyoming on {', '.join(where)}")
            self._log.info("ready", listen=where, pid=os.getpid(), phrases=len(self._phrases.phrases))
            await self._stop.wait()
            self._log.info("shutting down")
            self._notifier.stopping()
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.close()

    def bound(self) -> list[Listener]:
        """The listeners as bound (a TCP port 0 shows the port it got)."""
        out: list[Listener] = []
        for s in self._servers:
            for sock in s.sockets:
                name = sock.getsockname()
                if sock.family == socket.AF_UNIX:
                    out.append(Listener("unix", path=Path(name)))
                else:
                    out.append(Listener("tcp", host=str(name[0]), port=int(name[1])))
        return out

    async def close(self) -> None:
        """Stop listening, close every connection, remove our socket files."""
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        for file in self._socket_files:
            file.remove()
        self._servers.clear()
        self._socket_files.clear()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen(self, listener: Listener) -> None:
        limit = self.settings.max_event_bytes + 1
        if listener.scheme == "tcp":
            try:
                server = await asyncio.start_server(
                    self._accept, listener.host, listener.port, limit=limit, backlog=_LISTEN_BACKLOG
                )
            except OSError as e:
                raise AmbientError(f"cannot listen on {listener}: {e.strerror or e}") from None
        else:
            assert listener.path is not None
            # The event socket's file handling: lock, stale socket removed, live one refused, mode
            # set before anyone can connect, and only our own socket removed at exit.
            file = SocketFile(SocketConfig(path=listener.path, mode=self.settings.unix_mode), logger=self._log)
            sock = file.bind()
            self._socket_files.append(file)
            server = await asyncio.start_unix_server(self._accept, sock=sock, limit=limit)
        self._servers.append(server)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if sum(1 for t in self._tasks if t.get_name().startswith("wyoming-client")) >= self.settings.max_clients:
                self._log.warning("too many clients; refusing one", max_clients=self.settings.max_clients)
                with contextlib.suppress(Exception):
                    err = Error(text="too many clients", code="busy").event()
                    await asyncio.wait_for(async_write_event(err, writer), self.settings.write_timeout_s)
                writer.transport.abort()
                return
            task.set_name("wyoming-client")
            await Connection(self, reader, writer).run()
        finally:
            self._tasks.discard(task)

    # ------------------------------------------------------------------ reload

    async def _reload(self) -> None:
        if self._config_path is None:
            self._log.info("SIGHUP: running without a configuration file; nothing to reload")
            return
        self._notifier.reloading()
        try:
            new = load_config(self._config_path)
            phrases = load_phrases(new.recognizer.phrases)
        except ConfigError as e:
            self._log.error("reload failed; keeping the running configuration", error=str(e))
        else:
            await self.set_phrases(phrases)
            changed = [
                f"{s}.{k}"
                for s in ("model", "recognizer", "wyoming")
                for k in type(getattr(new, s)).model_fields
                if k != "phrases" and getattr(getattr(new, s), k) != getattr(getattr(self.cfg, s), k)
            ]
            if changed:
                self._log.warning("changed settings take effect after a restart", keys=changed)
            self._log.info("configuration reloaded", phrases=len(self._phrases.phrases))
        self._notifier.ready(status=f"Serving Wyoming; {len(self._phrases.phrases)} phrases")
