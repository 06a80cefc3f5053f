"""The Wyoming server's parts without a model: bounded event reading, PCM conversion, committed
words, request phrases and the loopback rule."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from ambient.errors import ConfigError
from ambient.model.ctc import Hypothesis, WordTiming
from ambient.wyoming.framing import FramingError, Limits, read_event
from ambient.wyoming.handler import request_phrases
from ambient.wyoming.server import build_info, parse_uri
from ambient.wyoming.session import AudioFormatError, PcmConverter, TranscribeSession


def _read(data: bytes, limits: Limits | None = None) -> object:
    async def go() -> object:
        reader = asyncio.StreamReader(limit=1 << 16)
        reader.feed_data(data)
        reader.feed_eof()
        return await read_event(reader, limits or Limits(max_event_bytes=1024, max_payload_bytes=4096, timeout_s=1))

    return asyncio.run(go())


def test_events_with_data_sections_and_payloads_are_read_whole() -> None:
    header = {"type": "audio-chunk", "data": {"rate": 16000}, "data_length": 13, "payload_length": 4}
    ev = _read(json.dumps(header).encode() + b"\n" + b'{"width": 2}\n' + b"\x01\x02\x03\x04")
    assert ev.type == "audio-chunk" and ev.data == {"rate": 16000, "width": 2} and ev.payload == b"\x01\x02\x03\x04"  # type: ignore[attr-defined]
    assert _read(b"") is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"garbage\n", "bad_event"),
        (b"[1, 2]\n", "bad_event"),
        (b'{"data": {}}\n', "bad_event"),
        (b'{"type": "x", "payload_length": -1}\n', "bad_event"),
        (b'{"type": "x", "payload_length": "9"}\n', "bad_event"),
        (b'{"type": "x", "payload_length": 99999999999}\n', "too_large"),
        (b'{"type": "x", "data_length": 5000}\n', "too_large"),
        (b'{"type": "x", "payload_length": 10}\nabc', "bad_event"),
        (b'{"type": "x"', "bad_event"),
        (b'{"type": "x", "data": []}\n', "bad_event"),
        (b"x" * 2000 + b"\n", "too_large"),
    ],
)
def test_malformed_or_oversized_events_raise_with_a_code(raw: bytes, code: str) -> None:
    with pytest.raises(FramingError) as e:
        _read(raw)
    assert e.value.code == code


def test_pcm_of_any_rate_width_and_channels_becomes_16k_mono_float() -> None:
    t = np.arange(4800) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    stereo = np.stack([tone, tone], axis=1).tobytes()
    conv = PcmConverter(rate=48000, width=2, channels=2)
    out = np.concatenate([conv.convert(stereo[:1001]), conv.convert(stereo[1001:]), conv.flush()])
    assert len(out) == 1600 and abs(float(np.abs(out).max()) - 0.5) < 0.02
    u8 = PcmConverter(rate=16000, width=1, channels=1).convert(bytes([128, 255, 0]))
    assert np.allclose(u8, [0.0, 127 / 128, -1.0])
    for bad in (
        {"rate": 0, "width": 2, "channels": 1},
        {"rate": 16000, "width": 3, "channels": 1},
        {"rate": 16000, "width": 2.0, "channels": 1},
        {"rate": "16000", "width": 2, "channels": 1},
        {"rate": 16000, "width": 2, "channels": True},
    ):
        with pytest.raises(AudioFormatError):
            PcmConverter(**bad)  # type: ignore[arg-type]


class _Scripted:
    """A recognizer stand-in returning scripted hypotheses, one per ``accept``."""

    def __init__(self, texts: list[str], final: str) -> None:
        self.texts, self.final, self.audio_seconds = texts, final, 0.0

    def reset(self) -> None:
        pass

    @staticmethod
    def _hyp(text: str) -> Hypothesis:
        return Hypothesis(text=text, words=[WordTiming(w, 0.0, 0.0, 1.0) for w in text.split()], confidence=1.0)

    def accept(self, pcm: np.ndarray) -> Hypothesis | None:
        return self._hyp(self.texts.pop(0)) if self.texts else None

    def finish(self) -> Hypothesis:
        return self._hyp(self.final)


def test_only_words_that_stood_still_and_have_two_successors_are_committed_and_never_revised() -> None:
    rec = _Scripted(["turn", "turn of", "turn on the", "turn on the kitchen", "turn on the kitten light"], "")
    s = TranscribeSession(rec, PcmConverter(rate=16000, width=2, channels=1))  # type: ignore[arg-type]
    chunks = [s.accept(b"\0\0") for _ in range(5)]
    assert chunks == [None, None, "turn", " on", " the"]  # "of" never stood still with two successors
    rec.final = "turn on the kitchen light"
    assert s.finish()[0] == " kitchen light"  # the chunks add up to the final text
    rec2 = _Scripted(["a b c d", "a b c d"], "x b c d")
    s2 = TranscribeSession(rec2, PcmConverter(rate=16000, width=2, channels=1))  # type: ignore[arg-type]
    assert [s2.accept(b"\0\0"), s2.accept(b"\0\0")] == [None, "a b"]
    last, final = s2.finish()
    assert last is None and final.text == "x b c d"  # the final revised a committed word: no chunk


def test_request_phrases_come_from_context_names_and_terms_within_limits() -> None:
    data = {"context": {"phrases": ["Zorblax lamp"]}, "transcript_names": ["Siobhan"], "transcript_terms": ["dim"]}
    assert request_phrases(data, limit=10) == ["Zorblax lamp", "Siobhan", "dim"]
    with pytest.raises(FramingError, match="at most 2"):
        request_phrases(data, limit=2)
    with pytest.raises(FramingError, match="list of strings"):
        request_phrases({"transcript_names": "Siobhan"}, limit=10)


def test_tcp_is_loopback_unless_the_configuration_allows_the_lan() -> None:
    assert parse_uri("tcp://127.0.0.1:10300", allow_lan=False).port == 10300
    assert parse_uri("tcp://[::1]:10300", allow_lan=False).host == "::1"
    assert str(parse_uri("unix:///run/x.sock", allow_lan=False)) == "unix:///run/x.sock"
    with pytest.raises(ConfigError, match=r"wyoming\.allow_lan"):
        parse_uri("tcp://0.0.0.0:10300", allow_lan=False)
    assert parse_uri("tcp://0.0.0.0:10300", allow_lan=True).host == "0.0.0.0"
    for bad in ("http://x:1", "tcp://127.0.0.1", "unix://"):
        with pytest.raises(ConfigError):
            parse_uri(bad, allow_lan=False)


def test_info_announces_streaming_transcripts() -> None:
    info = build_info("ambient-base").event().data["asr"][0]
    assert info["supports_transcript_streaming"] is True
    assert info["models"][0]["name"] == "ambient-base" and info["models"][0]["languages"] == ["en"]
