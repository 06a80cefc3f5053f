"""One ``transcribe`` request: audio in any PCM format -> the recognizer -> committed words -> final.

:class:`PcmConverter` turns ``audio-chunk`` payloads (any rate, 8/16/32-bit integer samples, any
channel count) into 16 kHz mono float32 the way the daemon's input does (channel mean, then the
same :class:`~ambient.audio.resample.StreamResampler`), keeping a partial frame across chunks.

:class:`TranscribeSession` feeds a recognizer and decides which words are *committed*: sent as
``transcript-chunk`` and never taken back. A word is committed once two more words follow it in
the hypothesis (the trigram LM has seen its right context; the last word may be a greedy tail
still being spelled) and it stood at the same place in the previous hypothesis too. The final
``transcript`` is the recognizer's final (with ``final_pass: full`` a second pass over the whole
utterance), which may differ from the committed words; the chunks then stop at the first
difference, and the final text is the one to act on (docs/protocol.md).
"""

from __future__ import annotations

import numpy as np

from ambient.audio.resample import TARGET_RATE, StreamResampler
from ambient.model.ctc import Hypothesis
from ambient.stream.recognizer import StreamingRecognizer

__all__ = ["AudioFormatError", "PcmConverter", "TranscribeSession"]

#: Words at the end of a hypothesis that are never committed (they may still change).
_HOLD_WORDS = 2
_WIDTHS = {1: np.uint8, 2: np.int16, 4: np.int32}


class AudioFormatError(ValueError):
    """An ``audio-start``/``audio-chunk`` format this server cannot take."""


class PcmConverter:
    """Interleaved PCM bytes at ``rate`` Hz, ``width`` bytes, ``channels`` -> ``(n,)`` float32 at 16 kHz."""

    def __init__(self, *, rate: int, width: int, channels: int) -> None:
        if type(rate) is not int or not 1000 <= rate <= 384000:
            raise AudioFormatError(f"unsupported rate {rate!r} (1000 to 384000 Hz)")
        if type(width) is not int or width not in _WIDTHS:
            raise AudioFormatError(f"unsupported sample width {width!r} (1, 2 or 4 bytes)")
        if type(channels) is not int or not 1 <= channels <= 32:
            raise AudioFormatError(f"unsupported channel count {channels!r} (1 to 32)")
        self.rate, self.width, self.channels = rate, width, channels
        self._frame = width * channels
        self._rest = b""
        self._resampler = StreamResampler(orig_rate=rate, new_rate=TARGET_RATE)

    def same_format(self, rate: object, width: object, channels: object) -> bool:
        """Whether a chunk's declared format is this converter's."""
        return (rate, width, channels) == (self.rate, self.width, self.channels)

    def convert(self, data: bytes) -> np.ndarray:
        """The samples of ``data`` that are ready (a partial frame waits for the next chunk)."""
        data = self._rest + data
        n = len(data) // self._frame * self._frame
        self._rest = data[n:]
        if not n:
            return np.zeros(0, dtype=np.float32)
        a = np.frombuffer(data[:n], dtype=_WIDTHS[self.width]).reshape(-1, self.channels)
        if self.width == 1:
            f = (a.astype(np.float32) - 128.0) / 128.0
        else:
            f = a.astype(np.float32) / float(2 ** (8 * self.width - 1))
        mono = f.mean(axis=1) if self.channels > 1 else f[:, 0]
        return self._resampler.process(mono.astype(np.float32, copy=False))

    def flush(self) -> np.ndarray:
        """End of stream: what is left inside the resampling filter."""
        return self._resampler.flush()


class TranscribeSession:
    """Feeds ``recognizer`` (a fresh one per request) and tracks the committed words."""

    def __init__(self, recognizer: StreamingRecognizer, converter: PcmConverter) -> None:
        self.recognizer = recognizer
        self.converter = converter
        self.committed: list[str] = []
        self._previous: list[str] = []
        recognizer.reset()

    @property
    def audio_seconds(self) -> float:
        """Seconds of 16 kHz audio fed so far."""
        return self.recognizer.audio_seconds

    def _commit(self, hyp: Hypothesis) -> str | None:
        words = [w.word for w in hyp.words]
        n = len(self.committed)
        k = n
        if words[:n] == self.committed:
            limit = len(words) - _HOLD_WORDS
            while k < limit and k < len(self._previous) and self._previous[k] == words[k]:
                k += 1
        self._previous = words
        return self._take(words[n:k])

    def _take(self, new: list[str]) -> str | None:
        if not new:
            return None
        text = (" " if self.committed else "") + " ".join(new)
        self.committed += new
        return text

    def accept(self, pcm: bytes) -> str | None:
        """Feed one chunk's payload; returns the text of newly committed words, if any."""
        samples = self.converter.convert(pcm)
        hyp = self.recognizer.accept(samples) if len(samples) else None
        return None if hyp is None else self._commit(hyp)

    def finish(self) -> tuple[str | None, Hypothesis]:
        """End of audio: ``(last chunk text or None, final hypothesis)``. The last chunk holds the
        final's words after the committed ones, if the final begins with them."""
        tail = self.converter.flush()
        if len(tail):
            self.recognizer.accept(tail)
        final = self.recognizer.finish()
        words = [w.word for w in final.words]
        n = len(self.committed)
        last = self._take(words[n:]) if words[:n] == self.committed else None
        return last, final
