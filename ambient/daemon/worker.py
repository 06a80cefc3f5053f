"""The recognition worker: capture -> voice gate -> streaming recognizer -> events.

One thread owns the audio path after startup: it reads blocks from :class:`Capture`, cuts them
into VAD frames, runs the :class:`VoiceGate`, and feeds the frames of an utterance to the
:class:`StreamingRecognizer` (all torch work happens here, never on the event loop). What it hears
becomes protocol events handed to the :class:`EventSink`:

``speech_start`` when the gate announces an utterance, ``partial`` when the hypothesis changed
(at most once per encoder chunk), and exactly one ``final`` per ``speech_start``, also when the
utterance is cut short by a shutdown (reason ``shutdown``), the end of the input
(``end_of_stream``), a lost device (``audio_lost``) or an internal error (``error``).

Finals come from a second, full-context pass over the utterance when ``recognizer.final_pass`` is
``full``: the worker starts it once ``final_pass_silence_ms`` of trailing silence have passed, so
it runs while the hangover elapses, and drops it if speech resumes (:meth:`StreamingRecognizer.speculate`).

While the gate is closed no features are computed and the encoder does not run: the thread
sleeps on the capture queue and wakes once per audio block for one webrtcvad call per frame.

Positions: ``offset`` fields count the 16 kHz samples this worker received since it started
(seconds), so they are monotonic; gaps (a lost device, blocks dropped on overload) are not
counted. Wall-clock fields come from the capture timestamps of the blocks that held the samples.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
from structlog.typing import FilteringBoundLogger

from ambient.audio.capture import AudioBlock, AudioEnded, AudioLost, AudioRestored, Capture, CaptureItem
from ambient.audio.fbank import SAMPLE_RATE
from ambient.audio.vad import GateEvent, SpeechAudio, SpeechEnded, SpeechStarted, VoiceGate
from ambient.config import VadConfig
from ambient.daemon.ids import UlidGenerator
from ambient.daemon.notify import Notifier
from ambient.daemon.sink import EventSink
from ambient.model.ctc import Hypothesis
from ambient.publish.protocol import Final, FinalReason, Partial, SpeechStart, WordInfo
from ambient.stream.recognizer import StreamingRecognizer

__all__ = ["RecognitionWorker", "Timeline"]

#: How long one capture read may wait: the latency of noticing a stop request.
_READ_TIMEOUT_S = 0.2
#: At shutdown, audio already captured is still recognized for at most this long.
_DRAIN_BUDGET_S = 0.5
#: Minimum seconds between two "falling behind" warnings.
_OVERFLOW_LOG_INTERVAL_S = 10.0


class Timeline:
    """Maps stream sample positions to wall-clock time from the blocks' capture timestamps."""

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, max_anchors: int = 4096) -> None:
        self._rate = sample_rate
        self._positions: deque[int] = deque(maxlen=max_anchors)
        self._times: deque[float] = deque(maxlen=max_anchors)

    def add(self, position: int, wall: float) -> None:
        """The sample at ``position`` was captured at Unix time ``wall`` (positions ascend)."""
        self._positions.append(position)
        self._times.append(wall)

    def wall(self, position: int) -> float:
        """Wall-clock time of stream sample ``position`` (extrapolated from the nearest anchor)."""
        if not self._positions:
            return time.time()
        i = max(0, bisect.bisect_right(self._positions, position) - 1)
        return self._times[i] + (position - self._positions[i]) / self._rate


@dataclass
class _Utterance:
    id: str
    start: int  # stream sample where its audio begins (pre-roll included)
    onset: int  # stream sample of the first voiced frame
    last_text: str = ""
    partials: int = 0
    compute_s: float = 0.0
    speculations_dropped: int = 0  # full final passes discarded because speech resumed


class RecognitionWorker:
    """The thread that turns audio into events (see the module docstring)."""

    def __init__(
        self,
        *,
        capture: Capture,
        recognizer: StreamingRecognizer,
        vad: VadConfig,
        partials: bool,
        sink: EventSink,
        final_pass_silence_ms: int | None = None,
        notifier: Notifier,
        on_exit: Callable[[], None],
        loop_alive: Callable[[], bool] = lambda: True,
        gate_factory: Callable[[VadConfig], VoiceGate] | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._capture = capture
        self._recognizer = recognizer
        self._sink = sink
        self._notifier = notifier
        self._on_exit = on_exit
        self._loop_alive = loop_alive
        self._gate_factory = gate_factory if gate_factory is not None else (lambda cfg: VoiceGate(cfg))
        self._log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.worker")
        self._gate = self._gate_factory(vad)
        self._gate_base = 0  # stream position of the current gate's sample 0
        self._partials = partials
        self._final_pass_silence_ms = final_pass_silence_ms
        self._pending_vad: VadConfig | None = None
        self._settings_lock = threading.Lock()
        self._ids = UlidGenerator()
        self._timeline = Timeline()
        self._carry = np.zeros(0, dtype=np.int16)
        self._received = 0  # samples received from capture
        self._consumed = 0  # samples handed to the gate (received minus the carry)
        self._utt: _Utterance | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ended = False  # the input reached its end
        self.error: str | None = None  # why the worker or the input failed
        self.utterances = 0
        self.partials_sent = 0
        self._dropped_reported = 0
        self._last_overflow_log = float("-inf")

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="ambient-recognizer", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to finish: the utterance in flight gets a final (reason ``shutdown``)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def set_vad(self, cfg: VadConfig) -> None:
        """New gate settings; applied when no utterance is in progress (never splits one)."""
        with self._settings_lock:
            self._pending_vad = cfg

    def set_partials(self, enabled: bool) -> None:
        """Turn ``partial`` events on or off (from the next hypothesis on)."""
        self._partials = enabled

    @property
    def in_utterance(self) -> bool:
        """True between a ``speech_start`` and its ``final``."""
        return self._utt is not None

    @property
    def stream_seconds(self) -> float:
        """Seconds of audio received."""
        return self._received / SAMPLE_RATE

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._capture.read(timeout=_READ_TIMEOUT_S)
                self._watchdog(item)
                self._apply_pending_vad()
                self._report_overflow()
                if item is not None and not self._handle(item):
                    return
                # No utterance open: batch the microphone's wake-ups (audio.idle_poll_ms).
                self._capture.lazy = self._gate.idle
            self._shutdown()
        except Exception as e:
            self.error = f"recognition worker failed: {e!r}"
            self._log.exception("recognition worker failed")
            self._abandon_utterance()
            try:
                self._capture.close()
            except Exception:
                self._log.exception("closing the audio input after the failure failed too")
        finally:
            self._on_exit()

    def _handle(self, item: CaptureItem) -> bool:
        """Process one capture item; False when the input has ended."""
        if isinstance(item, AudioBlock):
            self._audio(item)
        elif isinstance(item, AudioLost):
            self._flush("audio_lost")
            self._sink.status("audio_lost", item.reason)
            self._notifier.status(f"Audio input lost ({item.reason}); retrying")
        elif isinstance(item, AudioRestored):
            self._sink.status("audio_restored", item.source)
            self._notifier.status(f"Listening: {item.source}")
        elif isinstance(item, AudioEnded):
            self._flush("end_of_stream")
            self.ended = True
            if item.error:
                self.error = item.error
            return False
        return True

    def _shutdown(self) -> None:
        self._capture.close()
        deadline = time.monotonic() + _DRAIN_BUDGET_S
        for item in self._capture.drain():
            if isinstance(item, AudioBlock) and time.monotonic() < deadline:
                self._audio(item)
        self._flush("shutdown")

    # ------------------------------------------------------------------ audio -> gate

    def _audio(self, block: AudioBlock) -> None:
        self._timeline.add(self._received, block.time)
        self._received += len(block.samples)
        buf = np.concatenate([self._carry, block.samples]) if len(self._carry) else block.samples
        n = self._gate.frame_samples
        full = len(buf) - len(buf) % n
        for i in range(0, full, n):
            events = self._gate.process(buf[i : i + n])
            self._consumed += n
            for event in events:
                self._gate_event(event)
        self._carry = buf[full:].copy()

    def _gate_event(self, event: GateEvent) -> None:
        if isinstance(event, SpeechAudio):
            self._feed(event.audio)
            self._speculate(event.silence_ms)
        elif isinstance(event, SpeechStarted):
            self._begin(event)
        elif isinstance(event, SpeechEnded):
            base = self._gate_base
            self._finish(event.reason, end=base + event.end_sample, speech_end=base + event.speech_end_sample)

    # ------------------------------------------------------------------ utterances

    def _begin(self, event: SpeechStarted) -> None:
        start = self._gate_base + event.start_sample
        utt = _Utterance(id=self._ids.new(), start=start, onset=self._gate_base + event.onset_sample)
        self._utt = utt
        self._recognizer.reset()
        self._sink.emit(SpeechStart(utterance_id=utt.id, offset=start / SAMPLE_RATE, time=self._timeline.wall(start)))
        self._log.debug("speech started", utterance_id=utt.id, offset=round(start / SAMPLE_RATE, 3))
        if len(event.audio):
            self._feed(event.audio)

    def _feed(self, audio: np.ndarray) -> None:
        utt = self._utt
        if utt is None:
            return
        t0 = time.perf_counter()
        hyp = self._recognizer.accept(audio)
        utt.compute_s += time.perf_counter() - t0
        if hyp is None or not self._partials or hyp.text == utt.last_text:
            return
        utt.last_text = hyp.text
        utt.partials += 1
        self.partials_sent += 1
        end = utt.start + round(self._recognizer.audio_seconds * SAMPLE_RATE)
        self._sink.emit(
            Partial(
                utterance_id=utt.id,
                text=hyp.text,
                start=self._timeline.wall(utt.start),
                end=self._timeline.wall(end),
                offset_start=utt.start / SAMPLE_RATE,
                offset_end=end / SAMPLE_RATE,
            )
        )

    def _speculate(self, silence_ms: int) -> None:
        """Two-pass finals: start the full pass once the trailing silence reaches
        ``final_pass_silence_ms``, while the hangover runs out; drop it if speech resumes."""
        rec, utt, after = self._recognizer, self._utt, self._final_pass_silence_ms
        if utt is None or rec.final_pass != "full" or after is None:
            return
        if silence_ms == 0:
            if rec.speculated:
                rec.drop_speculation()
                utt.speculations_dropped += 1
        elif silence_ms >= after and not rec.speculated:
            t0 = time.perf_counter()
            rec.speculate()
            utt.compute_s += time.perf_counter() - t0

    def _finish(self, reason: FinalReason, *, end: int, speech_end: int) -> None:
        utt = self._utt
        if utt is None:
            return
        t0 = time.perf_counter()
        hyp = self._recognizer.finish()
        utt.compute_s += time.perf_counter() - t0
        self._utt = None
        self.utterances += 1
        self._sink.emit(self._final(utt, hyp, reason=reason, speech_end=speech_end))
        audio_s = (end - utt.start) / SAMPLE_RATE
        self._log.info(
            "utterance",
            utterance_id=utt.id,
            reason=reason,
            audio_s=round(audio_s, 3),
            words=len(hyp.words),
            partials=utt.partials,
            speculations_dropped=utt.speculations_dropped,
            rtf=round(utt.compute_s / audio_s, 4) if audio_s > 0 else None,
        )

    def _final(self, utt: _Utterance, hyp: Hypothesis, *, reason: FinalReason, speech_end: int) -> Final:
        words = tuple(
            WordInfo(
                word=w.word,
                start=self._timeline.wall(utt.start + round(w.start * SAMPLE_RATE)),
                end=self._timeline.wall(utt.start + round(w.end * SAMPLE_RATE)),
                offset_start=utt.start / SAMPLE_RATE + w.start,
                offset_end=utt.start / SAMPLE_RATE + w.end,
                confidence=_unit(w.confidence),
            )
            for w in hyp.words
        )
        if words:
            offset_start, offset_end = words[0].offset_start, words[-1].offset_end
            wall_start, wall_end = words[0].start, words[-1].end
        else:  # nothing recognized: the span the gate heard as speech
            last = max(utt.onset, speech_end)
            offset_start, offset_end = utt.onset / SAMPLE_RATE, last / SAMPLE_RATE
            wall_start, wall_end = self._timeline.wall(utt.onset), self._timeline.wall(last)
        return Final(
            utterance_id=utt.id,
            text=hyp.text,
            words=words,
            start=wall_start,
            end=wall_end,
            offset_start=offset_start,
            offset_end=offset_end,
            confidence=_unit(hyp.confidence),
            reason=reason,
        )

    def _flush(self, reason: FinalReason) -> None:
        """End the utterance in flight (if any) with ``reason`` and forget buffered audio."""
        for event in self._gate.flush(reason):
            self._gate_event(event)
        self._consumed += len(self._carry)  # the carry never reaches the gate: skip it
        self._carry = np.zeros(0, dtype=np.int16)
        self._rebase_gate(self._gate)

    def _abandon_utterance(self) -> None:
        """After an internal error: keep the promise of one final per speech_start."""
        utt, self._utt = self._utt, None
        if utt is None:
            return
        try:
            self._recognizer.reset()
            empty = Hypothesis(text="", words=[], confidence=0.0)
            self._sink.emit(self._final(utt, empty, reason="error", speech_end=self._consumed))
        except Exception:
            self._log.exception("cannot publish the final of an abandoned utterance", utterance_id=utt.id)

    # ------------------------------------------------------------------ settings, health

    def _apply_pending_vad(self) -> None:
        if self._pending_vad is None or not self._gate.idle:
            return
        with self._settings_lock:
            cfg, self._pending_vad = self._pending_vad, None
        if cfg is None:
            return
        self._rebase_gate(self._gate_factory(cfg))
        self._log.info("voice gate settings applied")

    def _rebase_gate(self, gate: VoiceGate) -> None:
        """Use ``gate`` from the current stream position on (a fresh gate, or the old one after a
        flush so that stale history never becomes pre-roll across a gap)."""
        if gate is self._gate:
            gate = self._gate_factory(gate.cfg)
        self._gate = gate
        self._gate_base = self._consumed

    def _watchdog(self, item: CaptureItem | None) -> None:
        """Ping systemd's watchdog while the audio path is demonstrably alive: audio arrived, or the
        capture knows the device is gone and is retrying (a missing microphone must not get the
        service killed), and the event loop is responsive. A hung capture or worker, or a stream close
        stuck for long (``Capture.wedged``), stops the pings so systemd restarts the process."""
        if not self._loop_alive() or self._capture.wedged:
            return
        if item is not None or self._capture.lost or self._capture.config.source != "mic":
            self._notifier.watchdog()

    def _report_overflow(self) -> None:
        dropped = self._capture.stats.dropped_blocks
        if dropped <= self._dropped_reported:
            return
        now = time.monotonic()
        if now - self._last_overflow_log < _OVERFLOW_LOG_INTERVAL_S:
            return
        self._log.warning(
            "audio blocks dropped: recognition is falling behind the input",
            dropped=dropped - self._dropped_reported,
            dropped_total=dropped,
        )
        self._dropped_reported = dropped
        self._last_overflow_log = now


def _unit(x: float) -> float:
    return min(1.0, max(0.0, float(x)))
