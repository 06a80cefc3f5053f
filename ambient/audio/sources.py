"""Audio producers: a microphone (PortAudio), an audio file, raw PCM on stdin.

Each source pushes :class:`RawBlock` items (samples in the source's own rate and channel layout)
into a :class:`~ambient.audio.blockqueue.BlockQueue`, followed by :class:`SourceFailed` or
:class:`SourceFinished` when it stops. Conversion to 16 kHz mono happens in the consumer
(``Capture.read``) with the source's :class:`~ambient.audio.resample.BlockConverter`, so the
PortAudio callback does nothing but copy one block and append it.

- :class:`MicSource`: the callback never blocks and never allocates beyond one copy of the block;
  the queue drops the oldest block when full.
- :class:`FileSource`: a reader thread, paced in real time or as fast as the consumer takes it
  (blocking ``put``: a file never loses audio). Wall-clock times are the moment the file started
  playing plus the offset in the file.
- :class:`StdinSource`: a reader thread on file descriptor 0 (s16le mono at ``audio.stdin_rate``),
  blocking ``put`` so a pipe sees backpressure instead of silent loss.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from structlog.typing import FilteringBoundLogger

from ambient.audio.blockqueue import BlockQueue
from ambient.audio.devices import InputDevice, find_input_device
from ambient.audio.resample import TARGET_RATE, BlockConverter, to_int16
from ambient.config import AudioConfig
from ambient.errors import AudioError

__all__ = [
    "FileSource",
    "MicSource",
    "QueueItem",
    "RawBlock",
    "Source",
    "SourceFailed",
    "SourceFinished",
    "StdinSource",
    "make_source",
]

#: How often blocking producers re-check whether they were closed.
_POLL_S = 0.1


class Source:
    """Base of the producers: ``open()`` starts delivering into the queue, ``close()`` stops."""

    #: True when a failure is worth retrying (a device can come back; a file cannot).
    reopenable: bool = False

    def __init__(self, *, cfg: AudioConfig, queue: BlockQueue[QueueItem]) -> None:
        self.cfg = cfg
        self.queue = queue
        self.converter = BlockConverter(rate=TARGET_RATE)
        self.description = "audio source"
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed.is_set()

    def open(self) -> None:
        """Start producing. Raises :class:`AudioError` with a one-line reason."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop producing; idempotent. Items already queued stay in the queue."""
        self._closed.set()


@dataclass(frozen=True, slots=True, kw_only=True)
class RawBlock:
    """Samples ``data (n,)`` or ``(n, c)`` as ``source`` produced them (raw interleaved int16
    ``bytes`` from the microphone); ``time`` is the wall-clock time of the first sample."""

    source: Source
    data: np.ndarray | bytes
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFailed:
    """``source`` stopped delivering: the device went away or the stream broke."""

    source: Source
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFinished:
    """``source`` reached its end (end of file, EOF on stdin); ``error`` if reading failed."""

    source: Source
    error: str | None = None
    time: float = field(default_factory=time.time)


QueueItem = RawBlock | SourceFailed | SourceFinished


def _block_frames(rate: int, block_ms: int) -> int:
    return max(1, round(rate * block_ms / 1000))


class MicSource(Source):
    """A PortAudio input stream (``audio.device``), int16, mono when the device allows it."""

    reopenable = True

    def __init__(self, *, cfg: AudioConfig, queue: BlockQueue[QueueItem]) -> None:
        super().__init__(cfg=cfg, queue=queue)
        self.device: InputDevice | None = None
        self.rate = TARGET_RATE
        self.channels = 1
        self.xruns = 0  # input overflows reported by PortAudio (counted in the callback)
        self._stream: Any = None

    def open(self) -> None:
        import sounddevice as sd

        dev = find_input_device(self.cfg.device)
        rate = self.cfg.device_rate or (
            TARGET_RATE if _supports(sd, dev.index, TARGET_RATE, 1) else int(dev.default_rate)
        )
        channels = next(
            (c for c in (1, 2, dev.channels) if c <= dev.channels and _supports(sd, dev.index, rate, c)), None
        )
        if channels is None:
            raise AudioError(f"input device {dev.name!r} supports neither mono nor stereo int16 at {rate} Hz")
        self.device, self.rate, self.channels = dev, rate, channels
        self.converter = BlockConverter(rate=rate, channels=channels)
        self.description = f"{dev.name!r} (device {dev.index}, {rate} Hz, {channels} ch)"
        try:
            # A raw stream: the callback gets a buffer, not a numpy array it would have to build.
            stream = sd.RawInputStream(
                device=dev.index,
                samplerate=rate,
                channels=channels,
                dtype="int16",
                blocksize=_block_frames(rate, self.cfg.block_ms),
                callback=self._callback,
                finished_callback=self._finished,
            )
            stream.start()
        except sd.PortAudioError as e:
            raise AudioError(f"cannot open input device {dev.name!r}: {e}") from None
        self._stream = stream

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy, stamp, append. No logging, no waiting.
        if status.input_overflow:
            self.xruns += 1
        self.queue.offer(RawBlock(source=self, data=bytes(indata), time=time.time() - frames / self.rate))

    def _finished(self) -> None:
        # PortAudio calls this when the stream stops for any reason, our own close() included.
        if not self.closed:
            self.queue.offer(
                SourceFailed(source=self, reason="the audio stream stopped (device or sound server gone)"), wake=True
            )

    def close(self) -> None:
        super().close()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close(ignore_errors=True)


def _supports(sd: Any, device: int, rate: int, channels: int) -> bool:
    try:
        sd.check_input_settings(device=device, samplerate=rate, channels=channels, dtype="int16")
    except (sd.PortAudioError, ValueError):
        return False
    return True


class _ThreadSource(Source):
    """A source whose blocks come from a reader thread (blocking ``put`` with backpressure)."""

    def __init__(self, *, cfg: AudioConfig, queue: BlockQueue[QueueItem], logger: FilteringBoundLogger) -> None:
        super().__init__(cfg=cfg, queue=queue)
        self._log = logger
        self._thread: threading.Thread | None = None

    def _start_thread(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=name, daemon=True)
        self._thread.start()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as e:  # never die silently: the consumer must learn that audio ended
            self._log.exception("audio reader failed", source=self.description)
            self._finish(error=f"audio reader failed: {e!r}")

    def _run(self) -> None:
        raise NotImplementedError

    def _put(self, item: QueueItem) -> bool:
        """Hand an item to the consumer, waiting for room; False if the source was closed meanwhile."""
        while not self.closed:
            if self.queue.put(item, timeout=_POLL_S):
                return True
        return False

    def _finish(self, error: str | None = None) -> None:
        self._put(SourceFinished(source=self, error=error))

    def close(self) -> None:
        super().close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)


class FileSource(_ThreadSource):
    """``audio.file`` decoded block by block to 16 kHz mono (see :mod:`ambient.audio.io`)."""

    def open(self) -> None:
        from ambient.audio.io import audio_file_info

        path = self.cfg.file
        if path is None:
            raise AudioError("audio.source is 'file' but audio.file is not set")
        info = audio_file_info(path)  # raises AudioError for missing or non-audio files
        mode = "real time" if self.cfg.realtime else "as fast as possible"
        self.description = (
            f"file {str(path)!r} ({info.sample_rate} Hz, {info.channels} ch, {info.duration:.1f} s, {mode})"
        )
        self._start_thread("ambient-file-reader")

    def _run(self) -> None:
        from ambient.audio.io import iter_audio_blocks

        assert self.cfg.file is not None
        block = _block_frames(TARGET_RATE, self.cfg.block_ms)
        t0_wall, t0_mono = time.time(), time.monotonic()
        try:
            self._play(iter_audio_blocks(self.cfg.file, block_samples=block), t0_wall, t0_mono)
        except AudioError as e:  # a file that turns out to be damaged half-way through
            self._finish(error=str(e))

    def _play(self, chunks: Iterator[np.ndarray], t0_wall: float, t0_mono: float) -> None:
        sent = 0
        for chunk in chunks:
            if self.cfg.realtime:
                due = t0_mono + (sent + len(chunk)) / TARGET_RATE  # a block is available once recorded
                if self._closed.wait(max(0.0, due - time.monotonic())):
                    return
            if not self._put(RawBlock(source=self, data=to_int16(chunk), time=t0_wall + sent / TARGET_RATE)):
                return
            sent += len(chunk)
        self._finish()


class StdinSource(_ThreadSource):
    """Raw signed 16-bit little-endian mono PCM on standard input at ``audio.stdin_rate``."""

    def __init__(
        self, *, cfg: AudioConfig, queue: BlockQueue[QueueItem], logger: FilteringBoundLogger, fd: int = 0
    ) -> None:
        super().__init__(cfg=cfg, queue=queue, logger=logger)
        self._fd = fd

    def open(self) -> None:
        try:
            is_tty = os.isatty(self._fd)
            os.fstat(self._fd)
        except OSError as e:
            raise AudioError(f"audio.source is 'stdin' but standard input is not readable: {e.strerror}") from None
        if is_tty:
            raise AudioError("audio.source is 'stdin' but standard input is a terminal; pipe raw s16le PCM into it")
        self.converter = BlockConverter(rate=self.cfg.stdin_rate)
        self.description = f"stdin (s16le, {self.cfg.stdin_rate} Hz, mono)"
        self._start_thread("ambient-stdin-reader")

    def _run(self) -> None:
        rate = self.cfg.stdin_rate
        want = 2 * _block_frames(rate, self.cfg.block_ms)
        buf = bytearray()
        while not self.closed:
            ready, _, _ = select.select([self._fd], [], [], _POLL_S)
            if not ready:
                continue
            try:
                data = os.read(self._fd, want - len(buf))
            except InterruptedError:
                continue
            except OSError as e:
                self._finish(error=f"reading stdin failed: {e.strerror}")
                return
            if not data:
                break
            buf += data
            if len(buf) >= want:
                self._send(buf, rate)
                buf = bytearray()
        if self.closed:
            return
        usable = len(buf) - len(buf) % 2  # a trailing odd byte is half a sample: drop it
        if usable:
            self._send(buf[:usable], rate)
        self._finish()

    def _send(self, buf: bytearray, rate: int) -> None:
        samples = np.frombuffer(bytes(buf), dtype="<i2").astype(np.int16)
        self._put(RawBlock(source=self, data=samples, time=time.time() - len(samples) / rate))


def make_source(
    cfg: AudioConfig,
    queue: BlockQueue[QueueItem],
    *,
    logger: FilteringBoundLogger | None = None,
    stdin_fd: int = 0,
) -> Source:
    """The source ``cfg.source`` names (not opened yet); ``stdin_fd`` is where ``stdin`` reads."""
    log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.audio")
    if cfg.source == "mic":
        return MicSource(cfg=cfg, queue=queue)
    if cfg.source == "file":
        return FileSource(cfg=cfg, queue=queue, logger=log)
    return StdinSource(cfg=cfg, queue=queue, logger=log, fd=stdin_fd)
