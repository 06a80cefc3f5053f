"""``ambient wyoming`` end to end: the real server process with the shipped model, driven by the
``wyoming`` package's own client over TCP and over a Unix socket, with synthesized speech."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.event import Event
from wyoming.info import Describe

from ambient.config import default_model_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not default_model_path().exists(), reason="the shipped model is not here"),
]

LONG = (
    "please turn on the kitchen light and set the thermostat in the living room to twenty degrees, "
    "then close the garage door and play some music in the bedroom"
)
SHORT = "what is the weather like today"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One server listening on TCP and on a Unix socket: ``tcp``, ``unix`` (URIs), ``pid``, ``phrases``
    (its phrase-list file, empty), ``log``."""
    d = tmp_path_factory.mktemp("wyoming")
    cfg = d / "config.yaml"
    phrases = d / "phrases.txt"
    phrases.write_text("# none yet\n", encoding="utf-8")
    cfg.write_text(
        "logging: {format: json, level: info}\n"
        f"recognizer: {{phrases: {phrases}}}\n"
        "wyoming: {write_timeout_s: 2, idle_timeout_s: 20, max_payload_bytes: 65536}\n",
        encoding="utf-8",
    )
    uris = {"tcp": f"tcp://127.0.0.1:{_free_port()}", "unix": f"unix://{d / 'asr.sock'}"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBIENT_")}
    log = (d / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ambient", "wyoming", "--config", str(cfg), "--uri", uris["tcp"], "--uri", uris["unix"]],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 180
        while not (d / "asr.sock").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{(d / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield {**uris, "pid": str(proc.pid), "phrases": str(phrases), "log": str(d / "server.log")}
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        log.close()
        assert not (d / "asr.sock").exists()  # removed on exit


@pytest.fixture(scope="module")
def wavs(
    synth: Callable[..., Path], compose: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wavs")
    long = compose(d / "long.wav", [0.3, synth(LONG), 0.5])
    short = compose(d / "short.wav", [0.3, synth(SHORT, engine="flite"), 0.5])
    # The same speech as 22.05 kHz stereo: resampled and mixed down by the server.
    audio, _ = sf.read(str(short), dtype="int16")
    from scipy.signal import resample_poly

    wide = resample_poly(audio.astype(np.float32), 441, 320).clip(-32768, 32767).astype(np.int16)
    stereo = d / "short-22k-stereo.wav"
    sf.write(str(stereo), np.stack([wide, wide], axis=1), 22050, subtype="PCM_16")
    return {"long": long, "short": short, "stereo": stereo}


@pytest.fixture(scope="module")
def transcribed(wavs: dict[str, Path]) -> dict[str, str]:
    """``ambient transcribe`` of each file, run in this process."""
    from ambient.cli.main import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["transcribe", "--json", *(str(p) for p in wavs.values())]) == 0
    texts = {json.loads(line)["file"]: json.loads(line)["text"] for line in out.getvalue().splitlines()}
    return {name: texts[str(p)] for name, p in wavs.items()}


async def _transcribe(
    uri: str, wav: Path, *, chunk_ms: int = 100, context: dict[str, object] | None = None, hold: bool = False
) -> tuple[list[Event], list[Event]]:
    """Send ``wav`` in chunks; returns (events received before audio-stop was sent, after it).
    ``hold``: after half the audio, wait for a transcript-chunk before sending the rest."""
    audio, rate = sf.read(str(wav), dtype="int16", always_2d=True)
    channels = audio.shape[1]
    step = rate * chunk_ms // 1000
    before: list[Event] = []
    after: list[Event] = []
    async with AsyncClient.from_uri(uri) as client:
        await client.write_event(Transcribe(language="en", context=context).event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
        got_chunk = asyncio.Event()

        async def reader() -> None:
            while True:
                ev = await client.read_event()
                if ev is None:
                    return
                (after if stopped else before).append(ev)
                if ev.type == "transcript-chunk":
                    got_chunk.set()
                if ev.type == "transcript":
                    return

        stopped = False
        task = asyncio.create_task(reader())
        for i in range(0, len(audio), step):
            if hold and i >= len(audio) // 2:
                await asyncio.wait_for(got_chunk.wait(), 60)
                hold = False
            chunk = AudioChunk(rate=rate, width=2, channels=channels, audio=audio[i : i + step].tobytes())
            await client.write_event(chunk.event())
        await asyncio.sleep(0)
        stopped = True
        await client.write_event(AudioStop().event())
        await asyncio.wait_for(task, 120)
    return before, after


def _text(events: list[Event]) -> str:
    return next(e.data["text"] for e in events if e.type == "transcript")


def test_describe_answers_info_with_streaming_transcripts(server: dict[str, str]) -> None:
    async def go() -> Event | None:
        async with AsyncClient.from_uri(server["tcp"]) as c:
            await c.write_event(Describe().event())
            return await asyncio.wait_for(c.read_event(), 30)

    info = asyncio.run(go())
    assert info is not None and info.type == "info"
    asr = info.data["asr"][0]
    assert asr["supports_transcript_streaming"] is True
    assert asr["models"][0]["name"] == "ambient-base" and asr["models"][0]["languages"] == ["en"]


def test_chunks_stream_while_audio_arrives_and_the_text_is_ambient_transcribes(
    server: dict[str, str], wavs: dict[str, Path], transcribed: dict[str, str]
) -> None:
    before, after = asyncio.run(_transcribe(server["unix"], wavs["long"], hold=True))
    assert before[0].type == "transcript-start"
    chunks = [e.data["text"] for e in before + after if e.type == "transcript-chunk"]
    assert any(e.type == "transcript-chunk" for e in before)  # before audio-stop was sent
    assert [e.type for e in after][-2:] == ["transcript-stop", "transcript"]
    final = _text(after)
    assert final == transcribed["long"] and "kitchen light" in final
    # Chunks are the chunked pass's committed words, append-only; the final comes from the full-context
    # second pass, which may word a committed stretch differently ("living on" -> "living room at",
    # "please turn" -> "lester"), so the two must tell the same story, not the same words.
    streamed = "".join(chunks).split()
    assert len(streamed) >= len(final.split()) // 2
    assert jiwer.wer(final, " ".join(streamed)) < 0.5, (final, streamed)
    assert "kitchen light" in " ".join(streamed)


def test_two_clients_at_once_over_tcp_and_unix_each_get_their_own_text(
    server: dict[str, str], wavs: dict[str, Path], transcribed: dict[str, str]
) -> None:
    async def both() -> list[tuple[list[Event], list[Event]]]:
        return await asyncio.gather(
            _transcribe(server["tcp"], wavs["short"], chunk_ms=30),
            _transcribe(server["unix"], wavs["stereo"], chunk_ms=250),
        )

    (_, a1), (_, a2) = asyncio.run(both())
    assert _text(a1) == transcribed["short"]
    assert _text(a2) == transcribed["stereo"]
    assert "weather" in _text(a1)


def test_request_context_phrases_bias_the_search(server: dict[str, str], synth: Callable[..., Path]) -> None:
    wav = synth("turn on the zorblax lamp")
    plain = _text(asyncio.run(_transcribe(server["tcp"], wav))[1])
    biased = _text(asyncio.run(_transcribe(server["tcp"], wav, context={"phrases": ["Zorblax lamp"]}))[1])
    assert "zorblax" not in plain
    assert "zorblax" in biased


def test_sighup_rereads_the_phrase_list_file(server: dict[str, str], synth: Callable[..., Path]) -> None:
    import signal

    wav = synth("turn on the zorblax lamp")
    log = Path(server["log"])

    def reload(text: str) -> None:
        before = log.read_text().count("configuration reloaded")
        Path(server["phrases"]).write_text(text, encoding="utf-8")
        os.kill(int(server["pid"]), signal.SIGHUP)
        deadline = time.monotonic() + 60
        while log.read_text().count("configuration reloaded") == before:
            assert time.monotonic() < deadline, "no reload logged"
            time.sleep(0.1)

    try:
        reload("Zorblax lamp\n")
        assert "zorblax" in _text(asyncio.run(_transcribe(server["tcp"], wav))[1])
    finally:
        reload("# none\n")
    assert "zorblax" not in _text(asyncio.run(_transcribe(server["tcp"], wav))[1])


async def _raw(uri: str, data: bytes, *, read: bool = True) -> bytes:
    path = uri.removeprefix("unix://")
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 30) if read else b""
    writer.close()
    return out


def test_hostile_clients_get_an_error_and_cost_only_their_connection(server: dict[str, str]) -> None:
    garbage = asyncio.run(_raw(server["unix"], b"\x00\xffnot json at all\n"))
    assert json.loads(garbage.split(b"\n")[0])["type"] == "error"
    huge = asyncio.run(_raw(server["unix"], b'{"type": "audio-chunk", "payload_length": 1000000000000}\n'))
    assert b"too_large" in huge

    async def never_reads() -> tuple[int, Event | None]:
        # Thousands of describes, never reading the answers: the server's writes stall and, after
        # wyoming.write_timeout_s (2 s here), it drops the connection instead of buffering more.
        path = server["unix"].removeprefix("unix://")
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            for _ in range(200):
                writer.write(b'{"type": "describe"}\n' * 100)
                await asyncio.wait_for(writer.drain(), 15)
        except (ConnectionError, TimeoutError):
            pass
        await asyncio.sleep(3)
        got = b""
        # A dropped connection ends (EOF or reset) at once; a live one would wait for more input.
        with contextlib.suppress(ConnectionError):
            got = await asyncio.wait_for(reader.read(), 10)
        writer.transport.abort()
        async with AsyncClient.from_uri(server["tcp"]) as c:  # meanwhile the server serves others
            await c.write_event(Describe().event())
            return got.count(b'"type": "info"'), await asyncio.wait_for(c.read_event(), 30)

    answered, info = asyncio.run(never_reads())
    assert answered < 20000
    assert info is not None and info.type == "info"
