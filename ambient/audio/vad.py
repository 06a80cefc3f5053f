"""The voice-activity gate: a pure, synchronous state machine in front of the recognizer.

``VoiceGate(cfg).process(frame)`` takes one frame of ``vad.frame_ms`` of 16 kHz mono int16 audio
and returns what happened, as a list of :data:`GateEvent`:

- :class:`SpeechStarted` carries the audio of the utterance so far (pre-roll included);
- :class:`SpeechAudio` carries one more frame of an utterance in progress (and the silence so far);
- :class:`SpeechEnded` closes the utterance with a reason (``silence``, ``max_length``, or the
  reason given to :meth:`VoiceGate.flush`).

Every ``SpeechStarted`` is followed by exactly one ``SpeechEnded``, so the daemon can keep the
protocol's promise "``speech_start``, partials, exactly one ``final``".

A frame is *voiced* when webrtcvad says speech, its level stands ``noise_margin_db`` above the
background noise floor tracked by :class:`NoiseFloor` (so fans and hum do not hold the gate open),
and it is within ``release_db`` of the loudest frame of the last two seconds (:class:`PeakHold`: the
decay of the last word no longer delays the end of the utterance).

Rules (all lengths are rounded up to whole frames):

1. **Start.** The gate opens when at least ``start_ms`` of the last ``start_window_ms`` were voiced.
   The utterance begins ``preroll_ms`` before the first voiced frame of that window (as far as
   the history reaches), so word onsets that the VAD misses are not cut off.
2. **Minimum speech.** An utterance is announced (``SpeechStarted``) only once it holds
   ``min_speech_ms`` of voiced audio. Until then the gate is *pending*: it buffers the audio, and
   if ``hangover_ms`` of silence (or ``max_utterance_s`` of audio) arrives first, it discards the
   buffer silently: clicks and coughs never reach the recognizer and never produce an event. The
   cost is that ``speech_start`` comes up to ``min_speech_ms - start_ms`` later; no audio is lost.
3. **Hangover.** ``hangover_ms`` of continuous silence ends the utterance (reason ``silence``);
   the silent frames are part of it (they let the recognizer finish the last word).
4. **Maximum length.** An utterance of ``max_utterance_s`` ends with reason ``max_length``. If the
   frame that reached the limit was voiced, the next utterance starts at once with the next frame
   (no pre-roll: the audio is contiguous); otherwise the gate closes and the start rule applies.

Sample positions (``start_sample``, ``end_sample``, ...) count samples given to :meth:`process`
since the gate was created, so they are offsets into the daemon's audio stream.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ambient.audio.noisefloor import NoiseFloor, PeakHold, frame_dbfs
from ambient.config import VadConfig
from ambient.publish.protocol import FinalReason

__all__ = [
    "GateEvent",
    "SpeechAudio",
    "SpeechEnded",
    "SpeechStarted",
    "VoiceGate",
    "default_is_speech",
    "webrtc_is_speech",
]

#: Decides whether one frame (16-bit little-endian PCM bytes) is speech.
IsSpeech = Callable[[bytes], bool]


@dataclass(frozen=True, kw_only=True)
class SpeechStarted:
    """An utterance begins. ``audio (n,)`` int16 is everything buffered for it (pre-roll and the
    frames that opened the gate); it starts at stream sample ``start_sample``, and the first
    voiced frame is at ``onset_sample``."""

    audio: np.ndarray
    start_sample: int
    onset_sample: int


@dataclass(frozen=True, kw_only=True)
class SpeechAudio:
    """One more frame ``audio (frame_samples,)`` int16 of the utterance in progress.
    ``silence_ms`` is the run of silence this frame ends (0 when it is voiced)."""

    audio: np.ndarray
    silence_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class SpeechEnded:
    """The utterance ends. ``end_sample`` is the stream position after its last frame;
    ``speech_end_sample`` the position after its last voiced frame."""

    reason: FinalReason  # silence, max_length, or the reason given to flush()
    end_sample: int
    speech_end_sample: int


GateEvent = SpeechStarted | SpeechAudio | SpeechEnded


class _State(Enum):
    IDLE = "idle"  # listening for the start rule
    PENDING = "pending"  # opened, but not yet min_speech_ms of voiced audio: nothing announced
    ACTIVE = "active"  # announced: frames flow to the recognizer


def webrtc_is_speech(aggressiveness: int, sample_rate: int) -> IsSpeech:
    """A webrtcvad classifier for frames of 10, 20 or 30 ms at ``sample_rate``."""
    import webrtcvad  # the compiled module is only needed when a real gate is built

    vad = webrtcvad.Vad(aggressiveness)

    def is_speech(frame: bytes) -> bool:
        return bool(vad.is_speech(frame, sample_rate))

    return is_speech


def default_is_speech(cfg: VadConfig, sample_rate: int) -> IsSpeech:
    """webrtcvad, and (unless null) a level ``noise_margin_db`` above the tracked noise floor and
    within ``release_db`` of the loudest frame of the last two seconds."""
    vad = webrtc_is_speech(cfg.aggressiveness, sample_rate)
    if cfg.noise_margin_db is None and cfg.release_db is None:
        return vad
    floor = (
        NoiseFloor(frame_ms=cfg.frame_ms, window_s=cfg.noise_window_s, margin_db=cfg.noise_margin_db)
        if cfg.noise_margin_db is not None
        else None
    )
    peak = PeakHold(frame_ms=cfg.frame_ms, window_s=2.0, drop_db=cfg.release_db) if cfg.release_db is not None else None

    def is_speech(frame: bytes) -> bool:
        level = frame_dbfs(np.frombuffer(frame, dtype=np.int16))
        loud = floor.update(level) if floor is not None else True  # always track both levels
        near = peak.update(level) if peak is not None else True
        return loud and near and vad(frame)

    return is_speech


def _frames(ms: float, frame_ms: int) -> int:
    return max(0, math.ceil(ms / frame_ms))


class VoiceGate:
    """Speech/silence gate over fixed-size frames (see the module docstring for the rules).

    Args:
        cfg: the ``vad`` settings.
        sample_rate: rate of the frames (8000, 16000, 32000 or 48000 for webrtcvad).
        is_speech: frame classifier; default webrtcvad at ``cfg.aggressiveness``. Tests pass a
            deterministic function.
    """

    def __init__(self, cfg: VadConfig, *, sample_rate: int = 16000, is_speech: IsSpeech | None = None) -> None:
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * cfg.frame_ms // 1000
        self._is_speech = is_speech if is_speech is not None else default_is_speech(cfg, sample_rate)
        fm = cfg.frame_ms
        self._start_need = max(1, _frames(cfg.start_ms, fm))
        self._window = max(self._start_need, _frames(cfg.start_window_ms, fm))
        self._preroll = _frames(cfg.preroll_ms, fm)
        self._hangover = max(1, _frames(cfg.hangover_ms, fm))
        self._min_voiced = _frames(cfg.min_speech_ms, fm)
        self._max_frames = max(1, math.floor(cfg.max_utterance_s * 1000 / fm))
        self._history: deque[tuple[np.ndarray, bool]] = deque(maxlen=self._preroll + self._window)
        self._pending: list[tuple[np.ndarray, bool]] = []
        self._state = _State.IDLE
        self._samples = 0  # stream position after the last frame processed
        self._utt_frames = 0
        self._voiced = 0
        self._silence_run = 0
        self._start_sample = 0
        self._onset_sample = 0
        self._speech_end = 0

    @property
    def active(self) -> bool:
        """True between ``SpeechStarted`` and ``SpeechEnded``."""
        return self._state is _State.ACTIVE

    @property
    def idle(self) -> bool:
        """True when no utterance is announced or pending (a safe moment to replace the gate)."""
        return self._state is _State.IDLE

    @property
    def position(self) -> int:
        """Samples processed so far (the stream position of the next frame)."""
        return self._samples

    def process(self, frame: np.ndarray) -> list[GateEvent]:
        """Classify one ``(frame_samples,)`` int16 frame and advance the state machine."""
        frame = np.asarray(frame)
        if frame.dtype != np.int16 or frame.shape != (self.frame_samples,):
            raise ValueError(
                f"expected an int16 frame of {self.frame_samples} samples, got {frame.dtype} {frame.shape}"
            )
        voiced = self._is_speech(frame.tobytes())
        self._samples += self.frame_samples
        if self._state is _State.IDLE:
            return self._idle(frame, voiced)
        if self._state is _State.PENDING:
            return self._pending_frame(frame, voiced)
        return self._active(frame, voiced)

    def flush(self, reason: FinalReason) -> list[GateEvent]:
        """End of audio (shutdown, end of stream, device lost): close an announced utterance with
        ``reason``, drop a pending one, and start over from silence."""
        events: list[GateEvent] = []
        if self._state is _State.ACTIVE:
            events.append(self._end(reason))
        self._reset_to_idle()
        return events

    # ------------------------------------------------------------------ states

    def _idle(self, frame: np.ndarray, voiced: bool) -> list[GateEvent]:
        self._history.append((frame, voiced))
        recent = list(self._history)[-self._window :]
        if sum(v for _, v in recent) < self._start_need:
            return []
        history = list(self._history)
        first_in_window = len(history) - len(recent)
        onset = next(i for i in range(first_in_window, len(history)) if history[i][1])
        begin = max(0, onset - self._preroll)
        frames = history[begin:]
        self._history.clear()
        n = len(frames)
        self._start_sample = self._samples - n * self.frame_samples
        self._onset_sample = self._start_sample + (onset - begin) * self.frame_samples
        self._utt_frames = n
        self._voiced = sum(v for _, v in frames)
        self._silence_run = 0  # the frame that opened the gate is voiced
        self._speech_end = self._samples
        self._pending = frames
        self._state = _State.PENDING
        return self._maybe_announce()

    def _pending_frame(self, frame: np.ndarray, voiced: bool) -> list[GateEvent]:
        self._pending.append((frame, voiced))
        self._count(voiced)
        events = self._maybe_announce()
        if events:
            return events
        if self._silence_run >= self._hangover or self._utt_frames >= self._max_frames:
            # Too little voiced audio: a click, a cough, a door. Nothing was announced, so nothing
            # is owed; the unused frames become the history the next start looks back into.
            leftover = self._pending
            self._reset_to_idle()
            self._history.extend(leftover)
        return []

    def _active(self, frame: np.ndarray, voiced: bool) -> list[GateEvent]:
        self._count(voiced)
        events: list[GateEvent] = [SpeechAudio(audio=frame, silence_ms=self._silence_run * self.cfg.frame_ms)]
        if self._silence_run >= self._hangover:
            events.append(self._end("silence"))
            self._reset_to_idle()
        elif self._utt_frames >= self._max_frames:
            events.append(self._end("max_length"))
            continuing = self._silence_run == 0
            self._reset_to_idle()
            if continuing:
                events.append(self._start_contiguous())
        return events

    # ------------------------------------------------------------------ helpers

    def _count(self, voiced: bool) -> None:
        self._utt_frames += 1
        if voiced:
            self._voiced += 1
            self._silence_run = 0
            self._speech_end = self._samples
        else:
            self._silence_run += 1

    def _maybe_announce(self) -> list[GateEvent]:
        if self._voiced < self._min_voiced:
            return []
        audio = np.concatenate([f for f, _ in self._pending]) if self._pending else np.zeros(0, np.int16)
        self._pending = []
        self._state = _State.ACTIVE
        events: list[GateEvent] = [
            SpeechStarted(audio=audio, start_sample=self._start_sample, onset_sample=self._onset_sample)
        ]
        if self._utt_frames >= self._max_frames:  # only with max_utterance_s shorter than the pre-roll
            events.append(self._end("max_length"))
            self._reset_to_idle()
        return events

    def _start_contiguous(self) -> SpeechStarted:
        self._state = _State.ACTIVE
        self._start_sample = self._onset_sample = self._speech_end = self._samples
        return SpeechStarted(audio=np.zeros(0, np.int16), start_sample=self._samples, onset_sample=self._samples)

    def _end(self, reason: FinalReason) -> SpeechEnded:
        return SpeechEnded(reason=reason, end_sample=self._samples, speech_end_sample=self._speech_end)

    def _reset_to_idle(self) -> None:
        self._state = _State.IDLE
        self._history.clear()
        self._pending = []
        self._utt_frames = 0
        self._voiced = 0
        self._silence_run = 0
