"""Audio capture with supervision: 16 kHz mono blocks in, device loss and recovery handled.

:class:`Capture` owns the current :class:`~ambient.audio.sources.Source` and the bounded queue it
fills. The recognition worker calls :meth:`Capture.read` in a loop; it returns one
:data:`CaptureItem` at a time, or ``None`` when nothing arrived within the timeout:

- :class:`AudioBlock`: ``(n,)`` int16 samples at 16 kHz and the wall-clock time of the first;
- :class:`AudioLost`: the microphone went away (PortAudio error, stream stopped, or no audio for
  ``audio.stall_timeout_s``). Capture closes it and reopens it with exponential backoff
  (``reopen_initial_s`` doubling up to ``reopen_max_s``), re-scanning devices before each try;
- :class:`AudioRestored`: audio flows again (sent with the first block after a loss, not when the
  stream merely opened: a stream can open and still deliver nothing);
- :class:`AudioEnded`: a file or stdin reached its end (``error`` set if reading failed).

All source operations (open, close, reopen, reconfigure) happen on the thread that calls
``read``; other threads only call :meth:`Capture.reconfigure`, which is applied at the next read.

While :attr:`Capture.lazy` is set (the worker sets it when no utterance is open), the microphone
callback does not wake the reader for each block; ``read`` collects what arrived every
``audio.idle_poll_ms`` instead. Nothing is lost or reordered, only the wake-ups are batched.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import structlog
from structlog.typing import FilteringBoundLogger

from ambient.audio.blockqueue import BlockQueue
from ambient.audio.devices import rescan
from ambient.audio.resample import TARGET_RATE
from ambient.audio.sources import (
    MicSource,
    QueueItem,
    RawBlock,
    Source,
    SourceFailed,
    make_source,
)
from ambient.config import AudioConfig
from ambient.errors import AudioError

__all__ = ["AudioBlock", "AudioEnded", "AudioLost", "AudioRestored", "Capture", "CaptureItem", "CaptureStats"]

#: How long closing a stream may block the reading thread before it is left to finish alone.
_CLOSE_WAIT_S = 0.5
#: A close still pending after this long means the audio stack is wedged in this process.
_WEDGED_S = 30.0
#: Keys of ``AudioConfig`` whose change needs the source to be reopened.
_REOPEN_KEYS = ("source", "device", "file", "realtime", "stdin_rate", "device_rate", "block_ms", "queue_blocks")


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioBlock:
    """``samples (n,)`` int16 at 16 kHz; ``time`` is the wall-clock time of the first sample."""

    samples: np.ndarray
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioLost:
    """The input went away; capture is retrying."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioRestored:
    """Audio flows again after :class:`AudioLost`, from ``source``."""

    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioEnded:
    """The source reached its end; ``error`` says why if it was not a clean end."""

    error: str | None = None


CaptureItem = AudioBlock | AudioLost | AudioRestored | AudioEnded


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureStats:
    """Counters since the capture was created."""

    dropped_blocks: int  # blocks the bounded queue dropped because the worker fell behind
    xruns: int  # input overflows PortAudio reported
    losses: int  # times the input was lost
    reopen_attempts: int


class Capture:
    """Supervised audio input (see the module docstring)."""

    def __init__(self, cfg: AudioConfig, *, logger: FilteringBoundLogger | None = None, stdin_fd: int = 0) -> None:
        self._cfg = cfg
        self._stdin_fd = stdin_fd
        self._log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.audio")
        self._queue: BlockQueue[QueueItem] = BlockQueue(capacity=cfg.queue_blocks)
        self._source: Source | None = None
        self._out: deque[CaptureItem] = deque()
        self._pending_cfg: AudioConfig | None = None
        self._cfg_lock = threading.Lock()
        self._lost = False  # AudioLost reported, AudioRestored not yet
        self._ended = False
        self._flowing = False  # the current source delivered at least one block
        self._retry_at: float | None = None
        self._backoff = cfg.reopen_initial_s
        self._last_audio = time.monotonic()
        self._next_time: float | None = None  # wall-clock time just after the last delivered sample
        self._dropped_before = 0  # drops counted by queues replaced on reconfigure
        self._xruns_before = 0
        self._losses = 0
        self._attempts = 0
        self._retired: deque[Source] = deque(maxlen=4)  # closed by a reconfigure; queued blocks still count
        self._closer: threading.Thread | None = None  # a stream close that did not return in time
        self._closer_since = 0.0

    # ------------------------------------------------------------------ public surface

    @property
    def config(self) -> AudioConfig:
        """The settings in effect."""
        return self._cfg

    @property
    def description(self) -> str:
        """What is being captured, for logs and status lines."""
        return self._source.description if self._source is not None else f"{self._cfg.source} (not open)"

    @property
    def lost(self) -> bool:
        """True while the input is lost and being retried."""
        return self._lost

    @property
    def wedged(self) -> bool:
        """True when a lost stream has been stuck closing for so long that only a restart of the
        process can be expected to help (the daemon then stops feeding systemd's watchdog)."""
        return (
            self._closer is not None and self._closer.is_alive() and time.monotonic() - self._closer_since > _WEDGED_S
        )

    @property
    def lazy(self) -> bool:
        """True while blocks are collected every ``audio.idle_poll_ms`` rather than as they come."""
        return self._queue.lazy

    @lazy.setter
    def lazy(self, on: bool) -> None:
        self._queue.lazy = on and self._cfg.idle_poll_ms > 0

    @property
    def ended(self) -> bool:
        """True once the source reached its end."""
        return self._ended

    @property
    def stats(self) -> CaptureStats:
        """Counters for status events and logs."""
        xruns = self._xruns_before + (self._source.xruns if isinstance(self._source, MicSource) else 0)
        return CaptureStats(
            dropped_blocks=self._dropped_before + self._queue.dropped,
            xruns=xruns,
            losses=self._losses,
            reopen_attempts=self._attempts,
        )

    def open(self) -> None:
        """Open the configured source.

        A file or stdin that cannot be opened raises :class:`AudioError`. A microphone that
        cannot be opened is not an error: it is reported as :class:`AudioLost` by the first
        :meth:`read` and retried with backoff, so the daemon can start before the device exists.
        """
        self._open_source(first=True)

    def reconfigure(self, cfg: AudioConfig) -> None:
        """New audio settings, from any thread; applied by the next :meth:`read`."""
        with self._cfg_lock:
            self._pending_cfg = cfg

    def read(self, timeout: float) -> CaptureItem | None:
        """The next item, waiting up to ``timeout`` seconds; None if nothing happened."""
        deadline = time.monotonic() + timeout
        while True:
            if self._out:
                return self._out.popleft()
            self._apply_pending_config()
            now = time.monotonic()
            if self._retry_at is not None and now >= self._retry_at:
                self._reopen()
                continue
            wait = deadline - now
            if self._retry_at is not None:
                wait = min(wait, self._retry_at - now)
            stall_at = self._stall_deadline()
            if stall_at is not None:
                wait = min(wait, stall_at - now)
            if self._queue.lazy:
                wait = min(wait, self._cfg.idle_poll_ms / 1000)
            item = self._queue.get(timeout=max(0.0, wait))
            if item is not None:
                self._handle(item)
                continue
            now = time.monotonic()
            stall_at = self._stall_deadline()
            if stall_at is not None and now >= stall_at:
                self._lose(f"no audio for {self._cfg.stall_timeout_s:g} s")
                continue
            if now >= deadline:
                return None

    def close(self) -> None:
        """Stop the source. Blocks already queued can still be read with :meth:`drain`."""
        self._close_source()
        self._retry_at = None

    def drain(self) -> list[CaptureItem]:
        """What is left after :meth:`close`: queued blocks (converted) and the end of a stream."""
        while (item := self._queue.get(timeout=0)) is not None:
            self._handle(item, accept_closed=True)
        out = list(self._out)
        self._out.clear()
        return out

    # ------------------------------------------------------------------ internals

    def _handle(self, item: QueueItem, *, accept_closed: bool = False) -> None:
        src = item.source
        if src is not self._source:
            # Audio captured before a reconfigure (or before close(), when draining) is still
            # audio of this stream; anything from a source that was lost is not delivered.
            if isinstance(item, RawBlock) and (accept_closed or src in self._retired):
                samples = src.converter.convert(item.data)
                if len(samples):
                    self._deliver(samples, item.time)
            return
        if isinstance(item, RawBlock):
            samples = src.converter.convert(item.data)
            self._last_audio = time.monotonic()
            if not self._flowing:
                self._flowing = True
                self._backoff = self._cfg.reopen_initial_s
                if self._lost:
                    self._lost = False
                    self._log.info("audio restored", source=src.description)
                    self._out.append(AudioRestored(source=src.description))
            if len(samples):
                self._deliver(samples, item.time)
        elif isinstance(item, SourceFailed):
            self._lose(item.reason)
        else:
            self._finish(src, error=item.error, t=item.time)

    def _deliver(self, samples: np.ndarray, t: float) -> None:
        self._out.append(AudioBlock(samples=samples, time=t))
        self._next_time = t + len(samples) / TARGET_RATE

    def _finish(self, source: Source | None, *, error: str | None, t: float) -> None:
        if source is not None:
            tail = source.converter.flush()
            if len(tail):
                self._deliver(tail, self._next_time if self._next_time is not None else t)
        where = source.description if source is not None else self._cfg.source
        if error:
            self._log.error("audio input failed", source=where, error=error)
        else:
            self._log.info("audio input ended", source=where)
        self._ended = True
        self._close_source()
        self._out.append(AudioEnded(error=error))

    def _stall_deadline(self) -> float | None:
        if isinstance(self._source, MicSource) and not self._source.closed and not self._ended:
            return self._last_audio + self._cfg.stall_timeout_s
        return None

    def _open_source(self, *, first: bool = False) -> None:
        source = make_source(self._cfg, self._queue, logger=self._log, stdin_fd=self._stdin_fd)
        self._flowing = False
        self._last_audio = time.monotonic()
        try:
            source.open()
        except AudioError as e:
            if not source.reopenable:
                raise
            self._source = None
            self._schedule_retry(str(e), first=first)
            return
        self._source = source
        self._retry_at = None
        self._log.info("audio input opened", source=source.description)

    def _reopen(self) -> None:
        self._retry_at = None
        if self._closer is not None:
            if self._closer.is_alive():
                # PortAudio cannot be re-initialized while a stream is still closing.
                self._schedule_retry("the previous audio stream is still closing")
                return
            self._closer = None
        self._attempts += 1
        try:
            rescan()
        except AudioError as e:
            self._schedule_retry(str(e))
            return
        self._open_source()

    def _schedule_retry(self, reason: str, *, first: bool = False) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._cfg.reopen_max_s)
        self._retry_at = time.monotonic() + delay
        if not self._lost:
            self._lost = True
            self._losses += 1
            event = "audio input not available" if first else "audio input lost"
            self._log.warning(event, reason=reason, retry_in_s=round(delay, 3))
            self._out.append(AudioLost(reason=reason))
        else:
            self._log.debug("audio input still unavailable", reason=reason, retry_in_s=round(delay, 3))

    def _lose(self, reason: str) -> None:
        source = self._source
        self._close_source()
        if source is not None and not source.reopenable:
            # A file or a pipe that broke cannot come back: end the stream.
            self._finish(source, error=reason, t=time.time())
            return
        self._schedule_retry(reason)

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is None:
            return
        if not isinstance(source, MicSource):
            source.close()
            return
        self._xruns_before += source.xruns
        # Pa_CloseStream blocks for as long as a frozen sound server does not answer. Close on a
        # helper thread so this thread keeps reporting, retrying and obeying stop requests.
        closer = threading.Thread(target=source.close, name="ambient-audio-close", daemon=True)
        closer.start()
        closer.join(_CLOSE_WAIT_S)
        if closer.is_alive():
            self._log.warning("the audio stream is slow to close; continuing without waiting")
            self._closer = closer
            self._closer_since = time.monotonic()

    def _apply_pending_config(self) -> None:
        with self._cfg_lock:
            cfg, self._pending_cfg = self._pending_cfg, None
        if cfg is None:
            return
        old, self._cfg = self._cfg, cfg
        self._queue.lazy = self._queue.lazy and cfg.idle_poll_ms > 0
        if self._ended or all(getattr(old, k) == getattr(cfg, k) for k in _REOPEN_KEYS):
            return
        self._log.info("audio settings changed; reopening the input")
        if self._source is not None:
            self._retired.append(self._source)
        self._close_source()
        if cfg.queue_blocks != old.queue_blocks:
            self._dropped_before += self._queue.dropped
            lazy = self._queue.lazy
            self._queue = BlockQueue(capacity=cfg.queue_blocks)
            self._queue.lazy = lazy
        self._backoff = cfg.reopen_initial_s
        self._retry_at = None
        try:
            self._open_source()
        except AudioError as e:
            self._finish(None, error=str(e), t=time.time())
