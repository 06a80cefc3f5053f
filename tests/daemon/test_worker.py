"""The recognition worker on its own thread: a scripted capture, the real voice gate and a real
(tiny-model) recognizer, or one that raises; events are collected from a recording sink.

The promise under test (``ambient/daemon/worker.py``): exactly one ``final`` per ``speech_start``,
whatever ends the utterance, an internal error included."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from ambient.audio.capture import AudioBlock, AudioEnded, AudioLost, CaptureItem, CaptureStats
from ambient.audio.features import SAMPLE_RATE
from ambient.audio.vad import VoiceGate
from ambient.config import AudioConfig, VadConfig
from ambient.daemon.notify import Notifier
from ambient.daemon.worker import RecognitionWorker
from ambient.model.ctc import Hypothesis
from ambient.model.testing import build_tiny_model
from ambient.publish.protocol import Final, Partial, ServerEvent, SpeechStart, Status
from ambient.stream.recognizer import StreamingRecognizer

BLOCK = 1600  # 100 ms
VAD = VadConfig(frame_ms=30, noise_margin_db=None, release_db=None, hangover_ms=300, min_speech_ms=90)


def _is_speech(frame: bytes) -> bool:
    return bool(np.abs(np.frombuffer(frame, dtype=np.int16)).max() > 1000)


def _audio(*parts: tuple[str, float]) -> list[CaptureItem]:
    """100 ms blocks of ``("tone" | "silence", seconds)`` parts, with capture times."""
    t = np.arange(BLOCK) / SAMPLE_RATE
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    items: list[CaptureItem] = []
    for kind, seconds in parts:
        for _ in range(round(seconds * SAMPLE_RATE / BLOCK)):
            block = tone if kind == "tone" else np.zeros(BLOCK, np.int16)
            items.append(AudioBlock(samples=block.copy(), time=1_000_000.0 + len(items) * BLOCK / SAMPLE_RATE))
    return items


class FakeCapture:
    """What the worker reads from :class:`~ambient.audio.capture.Capture`: scripted items, then
    nothing (``None`` after the read timeout) until closed."""

    def __init__(self, items: list[CaptureItem]) -> None:
        self._items: queue.Queue[CaptureItem] = queue.Queue()
        for item in items:
            self._items.put(item)
        self.config = AudioConfig(source="file", file="scripted.wav")
        self.lazy = False
        self.lost = False
        self.wedged = False
        self.stats = CaptureStats(dropped_blocks=0, xruns=0, losses=0, reopen_attempts=0)
        self.closed = False

    def read(self, timeout: float) -> CaptureItem | None:
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[CaptureItem]:
        out = []
        while not self._items.empty():
            out.append(self._items.get_nowait())
        return out

    def close(self) -> None:
        self.closed = True

    @property
    def exhausted(self) -> bool:
        return self._items.empty()


@dataclass
class RecordingSink:
    """The :class:`~ambient.daemon.sink.EventSink` calls the worker makes, recorded."""

    events: list[ServerEvent] = field(default_factory=list)

    def emit(self, event: ServerEvent) -> None:
        self.events.append(event)

    def status(self, state: Any, detail: str = "") -> Status:
        event = Status(state=state, detail=detail, time=0.0)
        self.emit(event)
        return event

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class RaisingRecognizer(StreamingRecognizer):
    """A real recognizer that fails on its ``fail_on``-th ``accept`` call, or in ``finish``."""

    def __init__(self, *, fail_on: int | None = None, fail_finish: bool = False) -> None:
        super().__init__(build_tiny_model("repeat"), chunk_ms=160)
        self.accepts, self.fail_on, self.fail_finish = 0, fail_on, fail_finish

    def accept(self, pcm: np.ndarray) -> Hypothesis | None:
        self.accepts += 1
        if self.accepts == self.fail_on:
            raise RuntimeError("injected recognizer failure")
        return super().accept(pcm)

    def finish(self) -> Hypothesis:
        if self.fail_finish:
            raise RuntimeError("injected failure in finish")
        return super().finish()


def _run(
    items: list[CaptureItem],
    recognizer: StreamingRecognizer,
    *,
    stop_when: Callable[[RecordingSink, FakeCapture], bool] | None = None,
    vad: VadConfig = VAD,
) -> tuple[RecognitionWorker, RecordingSink]:
    """Run a worker over ``items`` until its thread exits (the input ended or it failed), or until
    ``stop_when`` holds and a stop was requested."""
    capture, sink, exited = FakeCapture(items), RecordingSink(), threading.Event()
    worker = RecognitionWorker(
        capture=capture,  # type: ignore[arg-type]
        recognizer=recognizer,
        vad=vad,
        partials=True,
        sink=sink,  # type: ignore[arg-type]
        notifier=Notifier(address=None),
        on_exit=exited.set,
        gate_factory=lambda cfg: VoiceGate(cfg, is_speech=_is_speech),
    )
    worker.start()
    if stop_when is not None:
        for _ in range(500):
            if stop_when(sink, capture):
                break
            exited.wait(0.02)
        worker.request_stop()
    assert exited.wait(30), "the worker thread did not exit"
    assert worker.join(5)
    return worker, sink


def _one_final_per_speech_start(sink: RecordingSink) -> list[Final]:
    starts = [e.utterance_id for e in sink.of(SpeechStart)]
    finals = sink.of(Final)
    assert [f.utterance_id for f in finals] == starts, sink.events
    for f in finals:  # each final comes after its own speech_start and its partials
        i = sink.events.index(f)
        earlier = [e for e in sink.events[:i] if getattr(e, "utterance_id", None) == f.utterance_id]
        assert isinstance(earlier[0], SpeechStart) and all(isinstance(e, Partial) for e in earlier[1:])
    return finals


def test_utterances_ended_by_silence_and_by_the_end_of_the_input() -> None:
    items = [*_audio(("silence", 0.5), ("tone", 1.0), ("silence", 0.8), ("tone", 0.6)), AudioEnded()]
    worker, sink = _run(items, StreamingRecognizer(build_tiny_model("repeat"), chunk_ms=160))
    finals = _one_final_per_speech_start(sink)
    assert [f.reason for f in finals] == ["silence", "end_of_stream"]
    assert worker.ended and worker.error is None and worker.utterances == 2
    assert finals[0].offset_start < 0.5 < finals[0].offset_end < finals[1].offset_start


def test_a_lost_device_and_a_shutdown_each_close_the_utterance_in_flight() -> None:
    items = [*_audio(("tone", 0.6)), AudioLost(reason="unplugged"), *_audio(("tone", 0.6))]
    worker, sink = _run(
        items,
        StreamingRecognizer(build_tiny_model("repeat"), chunk_ms=160),
        stop_when=lambda s, c: c.exhausted and len(s.of(SpeechStart)) == 2,
    )
    finals = _one_final_per_speech_start(sink)
    assert [f.reason for f in finals] == ["audio_lost", "shutdown"]
    assert [s.state for s in sink.of(Status)] == ["audio_lost"]
    assert sink.events.index(finals[0]) < sink.events.index(sink.of(Status)[0])  # final first, then the news
    assert worker.error is None


@pytest.mark.parametrize("where", ["accept", "finish"])
def test_a_recognizer_that_raises_still_gives_its_utterance_exactly_one_final(where: str) -> None:
    recognizer = RaisingRecognizer(fail_on=4) if where == "accept" else RaisingRecognizer(fail_finish=True)
    items = [*_audio(("tone", 1.0), ("silence", 0.8), ("tone", 1.0)), AudioEnded()]
    worker, sink = _run(items, recognizer)
    finals = _one_final_per_speech_start(sink)
    assert len(finals) == 1  # the worker stopped at the failure: the second utterance never began
    assert finals[0].reason == "error" and finals[0].text == "" and finals[0].words == ()
    assert worker.error is not None and "injected" in worker.error
    assert not worker.in_utterance
