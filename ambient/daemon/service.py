"""The daemon: startup, the event loop, signals, reload and shutdown.

Startup: logging, the model (loaded once by :func:`ambient.stream.factory.build_recognizer`, warmed
up, kept resident, optionally ``mlockall``-ed), the event socket, the event log, the audio input, the
recognition worker, then ``READY=1``. Threads: PortAudio's callback -> bounded queue -> the
recognition worker (gate, recognizer, event log writes) -> ``EventServer.publish`` on the asyncio
loop, which only serves clients, signals and a one-second heartbeat.

Signals: ``SIGHUP`` reloads the configuration (see :mod:`ambient.daemon.reload`) without dropping
clients; ``SIGTERM``/``SIGINT`` stop capture, finish the utterance in flight with a final (reason
``shutdown``), flush the log, send ``bye`` to clients, remove the socket and exit 0. A second
``SIGTERM``/``SIGINT`` during shutdown exits at once with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import numpy as np
import structlog
from structlog.typing import FilteringBoundLogger

from ambient.audio.capture import Capture
from ambient.audio.fbank import SAMPLE_RATE
from ambient.config import Config, load_config
from ambient.daemon.logstream import SafeStream
from ambient.daemon.memlock import lock_memory
from ambient.daemon.notify import Notifier
from ambient.daemon.overrides import apply_audio_overrides
from ambient.daemon.preflight import preflight
from ambient.daemon.reload import plan_reload
from ambient.daemon.sink import EventSink
from ambient.daemon.worker import RecognitionWorker
from ambient.errors import ConfigError
from ambient.logs import configure_logging
from ambient.publish.eventlog import EventLog
from ambient.publish.protocol import Status, StatusState
from ambient.publish.server import EventServer, HelloInfo

if TYPE_CHECKING:
    from ambient.stream.recognizer import StreamingRecognizer

__all__ = ["Daemon", "load_recognizer", "run_daemon"]

#: How long the recognition worker may take to finish the utterance in flight at shutdown.
_WORKER_STOP_TIMEOUT_S = 1.5
#: The event loop counts as alive (for the watchdog) if its heartbeat is at most this old.
_LOOP_ALIVE_S = 5.0
#: Event-log maintenance period when fsync is not ``interval`` (retention of rotated files).
_MAINTAIN_EVERY_S = 60.0


def load_recognizer(cfg: Config, *, logger: FilteringBoundLogger) -> tuple[StreamingRecognizer, str]:
    """Load the model once (:func:`ambient.stream.factory.build_recognizer`: ``model.*`` and
    ``recognizer.*``, the onnx or torch backend) and warm it up; returns the recognizer and the model's
    name. Raises ``CheckpointError``."""
    from ambient.stream.factory import build_recognizer

    t0 = time.perf_counter()
    recognizer = build_recognizer(cfg)
    model, lm = recognizer.model, recognizer.lm
    # One second of silence through the whole path: allocates the caches and touches the weights,
    # so the first utterance is as fast as the rest and mlockall sees the resident set.
    recognizer.accept(np.zeros(SAMPLE_RATE, dtype=np.int16))
    recognizer.finish()
    name = str(model.meta.get("name", cfg.model.path.stem))
    logger.info(
        "model loaded",
        model=name,
        path=str(cfg.model.path),
        backend=model.backend,
        int8=model.int8,
        threads=cfg.model.threads,
        chunk_ms=recognizer.chunk_ms,
        final_pass=recognizer.final_pass,
        lm=None if lm is None else str(lm.arpa),
        seconds=round(time.perf_counter() - t0, 3),
    )
    return recognizer, name


class Daemon:
    """One daemon run; :meth:`serve` returns the process exit status."""

    def __init__(
        self,
        *,
        cfg: Config,
        config_path: Path | None,
        recognizer: StreamingRecognizer,
        model_name: str,
        notifier: Notifier,
        audio_overrides: Mapping[str, Any] | None = None,
        logger: FilteringBoundLogger | None = None,
        log_stream: TextIO | None = None,
    ) -> None:
        self._cfg = cfg
        self._log_stream = log_stream  # where a reload sends the diagnostic log (None: stderr)
        self._config_path = config_path
        self._recognizer = recognizer
        from ambient.stream.phrases import RecognizerPhrases, load_phrases

        # recognizer.phrases: biased LM built now (a missing phrase file stops the start, like any config error).
        self._phrases = RecognizerPhrases(recognizer, boost=cfg.recognizer.phrase_boost)
        self._phrases.apply(load_phrases(cfg.recognizer.phrases))
        self._model_name = model_name
        self._notifier = notifier
        self._overrides = dict(audio_overrides or {})
        self._log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.daemon")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_reason: str | None = None
        self._beat = time.monotonic()
        self._clients = 0
        self._server: EventServer | None = None
        self._eventlog: EventLog | None = None
        self._sink: EventSink | None = None
        self._capture: Capture | None = None
        self._worker: RecognitionWorker | None = None

    # ------------------------------------------------------------------ main

    async def serve(self) -> int:
        """Run until a signal or the end of the input; returns the exit status."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._install_signals()
        server = EventServer(self._cfg.socket, hello=HelloInfo(model=self._model_name, sample_rate=SAMPLE_RATE))
        await server.start()
        self._server = server
        heartbeat: asyncio.Task[None] | None = None
        try:
            self._eventlog = EventLog(self._cfg.event_log, on_health_change=self._on_log_health)
            self._sink = EventSink(server=server, log=self._eventlog, counters=self._counters)
            capture = self._capture = Capture(self._cfg.audio)
            capture.open()
            self._worker = RecognitionWorker(
                capture=capture,
                recognizer=self._recognizer,
                vad=self._cfg.vad,
                partials=self._cfg.recognizer.partials,
                final_pass_silence_ms=self._cfg.recognizer.final_pass_silence_ms,
                sink=self._sink,
                notifier=self._notifier,
                on_exit=self._worker_exited,
                loop_alive=self._loop_alive,
            )
            self._sink.status("listening", capture.description)
            self._worker.start()
            heartbeat = asyncio.create_task(self._heartbeat())
            self._notifier.ready(status=self._status_line())
            self._log.info(
                "ready", socket=str(server.path), audio=capture.description, pid=os.getpid(), instance=server.instance
            )
            await self._stop.wait()
            return await self._shutdown()
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            self._remove_signals()
            if self._eventlog is not None:
                self._eventlog.close()
            await server.close("shutdown")
            self._notifier.close()

    async def _shutdown(self) -> int:
        worker = self._worker
        assert worker is not None
        reason = self._stop_reason or ("end of input" if worker.ended else "worker stopped")
        self._log.info("shutting down", reason=reason)
        self._notifier.stopping()
        self._notifier.status(f"Stopping ({reason})")
        worker.request_stop()
        if not await asyncio.to_thread(worker.join, _WORKER_STOP_TIMEOUT_S):
            self._log.error("the recognition worker did not stop in time; exiting without it")
            return 1
        if worker.error:
            self._log.error("stopping after a failure", error=worker.error)
            return 1
        return 0

    # ------------------------------------------------------------------ signals

    def _install_signals(self) -> None:
        loop = self._loop
        assert loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _remove_signals(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        assert self._stop is not None
        if self._stop_reason is not None:
            self._log.warning("second stop signal: exiting immediately", signal=sig.name)
            os._exit(1)
        self._stop_reason = sig.name
        self._stop.set()

    def _worker_exited(self) -> None:
        """Called on the worker thread when it ends (end of input, failure, or stop)."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed: shutdown is under way
            loop.call_soon_threadsafe(stop.set)

    # ------------------------------------------------------------------ reload

    def _reload(self) -> None:
        sink, worker, capture, eventlog = self._sink, self._worker, self._capture, self._eventlog
        if sink is None or worker is None or capture is None or eventlog is None:
            self._log.warning("SIGHUP during startup ignored")
            return
        self._notifier.reloading()
        try:
            detail = self._apply_reload(worker, capture, eventlog)
        except ConfigError as e:
            self._log.error("reload failed; keeping the running configuration", error=str(e))
            sink.status("reload_failed", str(e))
        else:
            sink.status("reloaded", detail)
        self._notifier.ready(status=self._status_line())

    def _apply_reload(self, worker: RecognitionWorker, capture: Capture, eventlog: EventLog) -> str:
        if self._config_path is None:
            eventlog.reopen()
            self._log.info("SIGHUP: running without a config file; event log reopened")
            return "no configuration file; event log reopened"
        source = str(self._config_path)
        loaded = apply_audio_overrides(load_config(self._config_path), self._overrides)
        preflight(loaded, source=source)
        plan = plan_reload(self._cfg, loaded)
        new = plan.effective
        from ambient.stream.phrases import load_phrases

        phrases = load_phrases(new.recognizer.phrases)  # re-read the file; unreadable: the reload fails here
        if "logging" in plan.applied:
            configure_logging(new.logging, stream=self._log_stream)
        if "vad" in plan.applied:
            worker.set_vad(new.vad)
        if "recognizer" in plan.applied:
            worker.set_partials(new.recognizer.partials)
        if "audio" in plan.applied:
            capture.reconfigure(new.audio)
        eventlog.reopen(new.event_log)  # always: SIGHUP is also how log rotation tools say "reopen"
        self._cfg = new
        parts = [f"applied: {', '.join(plan.applied)}" if plan.applied else "no changes"]
        if phrases != self._phrases.phrases and self._phrases.bias is not None and self._loop is not None:
            # Building the biased LM takes a fraction of a second: off the loop; the next utterance uses it.
            self._loop.run_in_executor(None, self._phrases.apply, phrases).add_done_callback(self._phrases_applied)
            parts.append(f"phrase list: {len(phrases)} phrases")
        if plan.restart_needed:
            parts.append(f"restart needed for: {', '.join(plan.restart_needed)}")
            self._log.warning("changed settings take effect after a restart", keys=list(plan.restart_needed))
        self._log.info("configuration reloaded", path=source, applied=list(plan.applied))
        return "; ".join(parts)

    def _phrases_applied(self, done: asyncio.Future[bool]) -> None:
        if (e := done.exception()) is not None:
            self._log.error("phrase list not applied; keeping the previous one", error=str(e))
        else:
            self._log.info("phrase list applied", phrases=len(self._phrases.phrases))

    # ------------------------------------------------------------------ health

    async def _heartbeat(self) -> None:
        """Once a second: prove the loop is alive (watchdog), refresh counters, maintain the log."""
        last_maintain = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            self._beat = time.monotonic()
            if self._server is not None:
                self._clients = self._server.client_count
            log = self._eventlog
            every = (
                self._cfg.event_log.fsync_interval_s if self._cfg.event_log.fsync == "interval" else _MAINTAIN_EVERY_S
            )
            if log is not None and self._beat - last_maintain >= every:
                last_maintain = self._beat
                await asyncio.to_thread(log.maintain)

    def _loop_alive(self) -> bool:
        return time.monotonic() - self._beat < _LOOP_ALIVE_S

    def _on_log_health(self, healthy: bool, reason: str) -> None:
        state: StatusState = "event_log_ok" if healthy else "event_log_error"
        status = Status(state=state, detail=reason, time=time.time(), counters=self._counters())
        if self._sink is not None:
            self._sink.publish_only(status)
        elif self._server is not None:
            self._server.publish_threadsafe(status)

    def _counters(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {"clients": self._clients}
        if self._worker is not None:
            out |= {
                "utterances": self._worker.utterances,
                "partials": self._worker.partials_sent,
                "audio_seconds": round(self._worker.stream_seconds, 3),
            }
        if self._capture is not None:
            st = self._capture.stats
            out |= {"dropped_blocks": st.dropped_blocks, "xruns": st.xruns, "audio_losses": st.losses}
        if self._eventlog is not None:
            out["event_log_failures"] = self._eventlog.failures
        return out

    def _status_line(self) -> str:
        capture = self._capture
        audio = "no audio" if capture is None else ("audio lost, retrying" if capture.lost else capture.description)
        return f"Listening: {audio}; model {self._model_name}"


def run_daemon(
    cfg: Config,
    *,
    config_path: Path | None,
    audio_overrides: Mapping[str, Any] | None = None,
) -> int:
    """``ambient run``: set everything up, serve until stopped; returns the exit status.

    Raises :class:`~ambient.errors.AmbientError` subclasses for problems a user can fix (bad
    configuration, missing or corrupt model, unreadable audio file, socket in use).
    """
    # A broken stderr (journald restarted, a full disk) must cost log lines, never the daemon.
    log_stream = cast(TextIO, SafeStream(sys.stderr))
    configure_logging(cfg.logging, stream=log_stream)
    log: FilteringBoundLogger = structlog.get_logger("ambient.daemon")
    preflight(cfg, source=str(config_path) if config_path is not None else "config")
    notifier = Notifier.from_env()
    notifier.status("Loading the model")
    recognizer, name = load_recognizer(cfg, logger=log)
    if cfg.model.mlock:
        problem = lock_memory()
        if problem is None:
            log.info("process memory locked (mlockall)")
        else:
            log.warning(problem)
    daemon = Daemon(
        cfg=cfg,
        config_path=config_path,
        recognizer=recognizer,
        model_name=name,
        notifier=notifier,
        audio_overrides=audio_overrides,
        log_stream=log_stream,
    )
    return asyncio.run(daemon.serve())
