"""One Wyoming connection: describe -> info; transcribe -> audio-start -> audio-chunk... -> audio-stop.

While audio arrives: ``transcript-start`` (at ``audio-start``), then ``transcript-chunk`` with the
newly committed words (see :mod:`ambient.wyoming.session`); at ``audio-stop``: a last chunk,
``transcript-stop``, then ``transcript`` with the final text. The connection stays open for the
next request. Recognition runs in a worker thread (``asyncio.to_thread``), one call at a time per
connection; the next event is read only when the previous one is handled, so a client that sends
faster than we recognize is slowed down by TCP itself and nothing queues without bound.

Failures are per connection: a malformed or oversized event, an unsupported audio format or too
much audio gets an ``error`` event (``text``, ``code``) and the connection is closed, and so does an
internal failure (code ``internal``, logged with its traceback); a client
that stops reading what we send is dropped after ``wyoming.write_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog
from structlog.typing import FilteringBoundLogger
from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event

from ambient.wyoming.framing import FramingError, Limits, read_event
from ambient.wyoming.session import AudioFormatError, PcmConverter, TranscribeSession

if TYPE_CHECKING:
    from ambient.wyoming.server import WyomingServer

__all__ = ["Connection", "request_phrases"]

#: The language of every transcript.
LANGUAGE = "en"


class _Dropped(Exception):
    """The client stopped reading: close without a goodbye."""


def request_phrases(data: dict[str, Any], *, limit: int) -> list[str]:
    """Extra phrases a ``transcribe`` event carries: ``context.phrases`` (ambient's key) and the
    ``transcript_names`` / ``transcript_terms`` fields of wyoming >= 1.9. Raises :class:`FramingError`
    for a wrong type or too many."""
    found: list[object] = []
    context = data.get("context")
    if context is not None and not isinstance(context, dict):
        raise FramingError("bad_event", "transcribe context must be an object")
    sources = [("context.phrases", (context or {}).get("phrases"))]
    sources += [(k, data.get(k)) for k in ("transcript_names", "transcript_terms")]
    for key, value in sources:
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise FramingError("bad_event", f"transcribe {key} must be a list of strings")
        found += value
    if len(found) > limit:
        raise FramingError("too_large", f"transcribe carries {len(found)} phrases, at most {limit}")
    if any(len(p) > 200 for p in found):  # type: ignore[arg-type]
        raise FramingError("too_large", "a phrase is longer than 200 characters")
    return [p for p in found if isinstance(p, str) and p.strip()]


class Connection:
    """Serves one client until it leaves, misbehaves or the server stops."""

    def __init__(self, server: WyomingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        cfg = server.settings
        self.limits = Limits(
            max_event_bytes=cfg.max_event_bytes,
            max_payload_bytes=cfg.max_payload_bytes,
            timeout_s=cfg.idle_timeout_s,
        )
        peer = writer.get_extra_info("peername")
        self.log: FilteringBoundLogger = structlog.get_logger("ambient.wyoming").bind(peer=str(peer or "unix"))
        self._phrases: list[str] = []
        self._session: TranscribeSession | None = None
        self._stop_at = 0.0

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Read and handle events until the client leaves or must be dropped."""
        try:
            while True:
                event = await read_event(self.reader, self.limits)
                if event is None:
                    return
                await self._handle(event)
        except FramingError as e:
            self.log.warning("bad client input; closing", code=e.code, error=e.text)
            with contextlib.suppress(_Dropped, ConnectionError):
                await self.send(Error(text=e.text, code=e.code).event())
        except TimeoutError:
            self.log.info("client idle; closing", timeout_s=self.limits.timeout_s)
        except _Dropped:
            self.log.warning("client does not read; dropped", timeout_s=self.server.settings.write_timeout_s)
            self.writer.transport.abort()
        except ConnectionError as e:
            self.log.info("client connection lost", error=str(e))
        except Exception:  # a bug or a failing recognizer: this request fails, the server goes on
            self.log.exception("request failed; closing the connection")
            with contextlib.suppress(_Dropped, ConnectionError):
                await self.send(Error(text="internal error; see the server log", code="internal").event())
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the connection (a transport that cannot flush within the write timeout is aborted)."""
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), self.server.settings.write_timeout_s)
        except (TimeoutError, ConnectionError):
            self.writer.transport.abort()

    async def send(self, event: Event) -> None:
        """Write one event; raises :class:`_Dropped` if the client does not take it in time."""
        try:
            await asyncio.wait_for(async_write_event(event, self.writer), self.server.settings.write_timeout_s)
        except TimeoutError:
            raise _Dropped from None

    # ------------------------------------------------------------------ events

    async def _handle(self, event: Event) -> None:
        kind, data = event.type, event.data
        if kind == "describe":
            await self.send(self.server.info_event)
        elif kind == "transcribe":
            self._phrases = request_phrases(data, limit=self.server.settings.max_request_phrases)
            self._session = None
        elif kind == "audio-start":
            await self._start(data)
        elif kind == "audio-chunk":
            await self._chunk(event)
        elif kind == "audio-stop":
            await self._stop()
        elif kind == "ping":
            await self.send(Event(type="pong", data={"text": data.get("text")} if data.get("text") else {}))
        else:
            self.log.debug("event ignored", type=kind[:40])

    async def _start(self, data: dict[str, Any]) -> None:
        try:
            converter = PcmConverter(rate=data.get("rate"), width=data.get("width"), channels=data.get("channels"))  # type: ignore[arg-type]
        except AudioFormatError as e:
            raise FramingError("bad_audio", str(e)) from None
        lm = await self.server.lm_for(self._phrases)
        self._session = TranscribeSession(self.server.new_recognizer(lm), converter)
        await self.send(TranscriptStart(language=LANGUAGE).event())

    async def _chunk(self, event: Event) -> None:
        data = event.data
        session = self._session
        if session is None:  # audio without audio-start: the first chunk's format starts the stream
            await self._start(data)
            session = self._session
            assert session is not None
        if not session.converter.same_format(data.get("rate"), data.get("width"), data.get("channels")):
            raise FramingError("bad_audio", "audio-chunk format differs from audio-start")
        pcm = event.payload or b""
        conv = session.converter
        seconds = len(pcm) / (conv.rate * conv.width * conv.channels)
        if session.audio_seconds + seconds > self.server.settings.max_audio_s:
            raise FramingError("too_long", f"more than {self.server.settings.max_audio_s:g} s of audio in one request")
        text = await asyncio.to_thread(session.accept, pcm)
        if text:
            await self.send(TranscriptChunk(text=text).event())

    async def _stop(self) -> None:
        session, self._session, self._phrases = self._session, None, []
        if session is None:
            await self.send(Transcript(text="", language=LANGUAGE).event())
            return
        t0, audio_s = time.perf_counter(), session.audio_seconds
        last, final = await asyncio.to_thread(session.finish)
        if last:
            await self.send(TranscriptChunk(text=last).event())
        await self.send(TranscriptStop().event())
        await self.send(Transcript(text=final.text, language=LANGUAGE).event())
        self.log.info(
            "transcribed",
            audio_s=round(audio_s, 3),
            final_s=round(time.perf_counter() - t0, 3),
            words=len(final.words),
        )
