"""The event-socket wire protocol: one frozen pydantic model per message, one JSON object per line.

Every message is a JSON object on one line (UTF-8, ``\\n``-terminated) whose ``type`` field names
the message. ``to_json()`` gives the line without its newline; ``parse_client_message`` and
``parse_server_message`` turn a received line back into a typed message or raise
:class:`ProtocolError`. Every message is a strict, frozen pydantic model, so field types are
checked on construction as well as on parsing and a message that exists is valid: no int for a
string nor bool for a number, finite floats only, no lone surrogates in strings.

Versioning (``PROTOCOL_VERSION``, sent in ``hello``): adding a message type, adding a field, or
adding a value to an open set (status states, final reasons, error codes) keeps the version.
Receivers ignore fields they do not know and clients ignore message types they do not know.
Removing or renaming a field, or changing its type or meaning, bumps the version.
See docs/protocol.md for every message and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from typing_extensions import Self

from ambient.errors import AmbientError

__all__ = [
    "CLIENT_MESSAGES",
    "CONTROL_TYPES",
    "EVENT_TYPES",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "Bye",
    "ClientMessage",
    "ErrorCode",
    "ErrorMessage",
    "Event",
    "Final",
    "FinalReason",
    "Hello",
    "Message",
    "Partial",
    "Ping",
    "Pong",
    "ProtocolError",
    "ServerEvent",
    "ServerMessage",
    "SpeechStart",
    "Status",
    "StatusState",
    "Subscribe",
    "Subscribed",
    "WordInfo",
    "decode_object",
    "encode_event",
    "parse_client_message",
    "parse_server_message",
]

#: Major version of the wire protocol; bumped only by incompatible changes.
PROTOCOL_VERSION = 1

#: Broadcast event types a client can subscribe to (all of them by default).
EVENT_TYPES: tuple[str, ...] = ("speech_start", "partial", "final", "status")

#: Per-connection messages every client receives whatever it subscribed to.
CONTROL_TYPES: tuple[str, ...] = ("hello", "error", "bye", "pong", "subscribed")

#: Why an utterance ended (``final.reason``): the gate's hangover or length limit, the daemon
#: stopping, the end of the input, a lost audio device, an internal error. An open set on the wire:
#: the daemon sends only these, and a parser accepts any string a newer daemon may add.
FinalReason = Literal["silence", "max_length", "shutdown", "end_of_stream", "audio_lost", "error"]

#: A daemon state change (``status.state``); an open set on the wire like :data:`FinalReason`.
StatusState = Literal[
    "listening", "audio_lost", "audio_restored", "event_log_error", "event_log_ok", "reloaded", "reload_failed"
]

# Floats go out rounded to microseconds / 1e-6: enough for wall-clock times and confidences,
# and it keeps binary noise such as 12.340000000000001 off the wire.
_FLOAT_DIGITS = 6


class ErrorCode:
    """The ``code`` values of ``error`` messages (an open set: clients must accept others)."""

    BAD_ENCODING = "bad_encoding"  # the line is not valid UTF-8
    BAD_JSON = "bad_json"  # not parseable JSON (NaN/Infinity included)
    NOT_OBJECT = "not_object"  # JSON, but not an object
    UNKNOWN_TYPE = "unknown_type"  # no message of that ``type``
    BAD_FIELD = "bad_field"  # a field is missing or has the wrong type
    TOO_LONG = "too_long"  # the line is longer than ``socket.max_message_bytes``
    FORBIDDEN = "forbidden"  # peer credentials not in the allow-lists
    TOO_MANY_CLIENTS = "too_many_clients"  # ``socket.max_clients`` reached
    TOO_SLOW = "too_slow"  # the client did not read fast enough to receive an important event


class ProtocolError(AmbientError):
    """A line that is not a valid message; ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- value checking
#
# Every message is a strict, frozen pydantic model (the library the configuration is checked with
# too): an int is never a string, a bool never a number, floats must be finite; JSON arrays become
# tuples; unknown keys are ignored (forward compatibility). A parse error is one ``bad_field`` line.


def _valid_unicode(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode (lone surrogate)") from None
    return value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _open_set(value: Any) -> str:
    """A value of an open set (:data:`FinalReason`, :data:`StatusState`): any string parses."""
    if not isinstance(value, str):
        raise ValueError("Input should be a valid string")
    return _valid_unicode(value)


#: A string that can be encoded (no lone surrogates).
_Str = Annotated[str, AfterValidator(_valid_unicode)]
#: Strings of a JSON array.
_Strs = Annotated[tuple[_Str, ...], BeforeValidator(_as_tuple)]


def _check_unit(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"'{name}' must be between 0 and 1")


def _where(loc: tuple[int | str, ...], data: Any) -> str:
    """The field path of an error location, without pydantic's union-arm and validator tags."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            parts.append(f".{part}" if parts else str(part))
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(f"[{part}]")
            node = node[part]
        else:
            if not parts:
                parts.append(str(part))
            break
    return "".join(parts)


def _first_error(err: ValidationError, data: Any) -> str:
    first = err.errors()[0]
    where = _where(first["loc"], data)
    if first["type"] == "missing":
        return f"missing field '{where}'"
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"'{where}': {msg}" if where else msg


def _encode(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, _FLOAT_DIGITS)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, BaseModel):
        return {name: _encode(getattr(value, name)) for name in type(value).model_fields}
    return value


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# --------------------------------------------------------------------------- messages

_STRICT = ConfigDict(strict=True, frozen=True, extra="ignore", allow_inf_nan=False)


class Message(BaseModel):
    """Base of every wire message; ``TYPE`` is the value of its ``type`` field. Constructors take
    keywords and raise ``ValueError`` (a pydantic ``ValidationError``) for a bad value."""

    model_config = _STRICT
    TYPE: ClassVar[str] = ""

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        self._validate()
        return self

    def _validate(self) -> None:
        """Range checks beyond the field types (subclasses override)."""

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict, ``type`` first (an event's ``seq`` only once stamped)."""
        out: dict[str, Any] = {"type": self.TYPE}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None and name == "seq":
                continue
            out[name] = _encode(value)
        return out

    def to_json(self) -> str:
        """One line of JSON (UTF-8 text, no trailing newline)."""
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build the message from a decoded JSON object; unknown keys are ignored.

        Raises :class:`ProtocolError` (``bad_field``) for a missing or mistyped field.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{cls.TYPE}: {_first_error(e, data)}") from None


class Event(Message):
    """A broadcast event; ``seq`` is stamped by the server (1, 2, 3, … per server instance)."""

    seq: int | None = None

    def _validate(self) -> None:
        if self.seq is not None and self.seq < 1:
            raise ValueError("'seq' must be positive")


class WordInfo(BaseModel):
    """One recognized word. ``start``/``end`` are wall-clock Unix seconds, ``offset_*`` seconds
    since the daemon's audio stream began, ``confidence`` in [0, 1]."""

    model_config = _STRICT
    word: _Str
    start: float
    end: float
    offset_start: float
    offset_end: float
    confidence: float

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _check_unit(self.confidence, "confidence")
        return self


class SpeechStart(Event):
    """The voice-activity gate opened: an utterance begins at stream ``offset`` (wall-clock ``time``)."""

    TYPE: ClassVar[str] = "speech_start"
    utterance_id: _Str
    offset: float
    time: float


class Partial(Event):
    """The current, still-changing hypothesis of utterance ``utterance_id``."""

    TYPE: ClassVar[str] = "partial"
    utterance_id: _Str
    text: _Str
    start: float
    end: float
    offset_start: float
    offset_end: float


class Final(Event):
    """The final transcript of one utterance. ``reason`` says why it ended (:data:`FinalReason`)."""

    TYPE: ClassVar[str] = "final"
    utterance_id: _Str
    text: _Str
    words: Annotated[tuple[WordInfo, ...], BeforeValidator(_as_tuple)] = ()
    start: float
    end: float
    offset_start: float
    offset_end: float
    confidence: float
    reason: Annotated[FinalReason, PlainValidator(_open_set)]

    def _validate(self) -> None:
        super()._validate()
        _check_unit(self.confidence, "confidence")


class Status(Event):
    """A daemon state change (:data:`StatusState`) with a human-readable ``detail`` and counters."""

    TYPE: ClassVar[str] = "status"
    state: Annotated[StatusState, PlainValidator(_open_set)]
    detail: _Str = ""
    time: float
    counters: dict[_Str, int | float] = Field(default_factory=dict)


class Hello(Message):
    """First message on every connection. ``last_seq`` is the ``seq`` of the newest event
    published before this connection (0 if none); ``instance`` changes on every daemon start."""

    TYPE: ClassVar[str] = "hello"
    protocol: int = PROTOCOL_VERSION
    version: _Str
    model: _Str
    sample_rate: int
    time: float
    instance: _Str
    last_seq: int
    events: _Strs = EVENT_TYPES


class ErrorMessage(Message):
    """Something the client did (or failed to do); see :class:`ErrorCode`."""

    TYPE: ClassVar[str] = "error"
    code: _Str
    message: _Str


class Bye(Message):
    """The server is closing this connection; ``reason`` e.g. ``shutdown``, ``too_slow``."""

    TYPE: ClassVar[str] = "bye"
    reason: _Str


class Pong(Message):
    """Reply to ``ping``, echoing its ``id``."""

    TYPE: ClassVar[str] = "pong"
    id: _Str | int | None = None
    time: float


class Subscribed(Message):
    """Reply to ``subscribe``: the event types now delivered, and the requested names this
    server does not know (ignored)."""

    TYPE: ClassVar[str] = "subscribed"
    events: _Strs
    ignored: _Strs = ()


class Subscribe(Message):
    """Client request: deliver these event types (``None``/absent: all of them)."""

    TYPE: ClassVar[str] = "subscribe"
    events: _Strs | None = None


class Ping(Message):
    """Client request: answer with ``pong`` carrying the same ``id``."""

    TYPE: ClassVar[str] = "ping"
    id: _Str | int | None = None


ServerEvent = SpeechStart | Partial | Final | Status
ServerMessage = Hello | SpeechStart | Partial | Final | Status | ErrorMessage | Bye | Pong | Subscribed
ClientMessage = Subscribe | Ping

#: Message classes by ``type``; adding a message is one dataclass and one entry here.
SERVER_MESSAGES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, SpeechStart, Partial, Final, Status, ErrorMessage, Bye, Pong, Subscribed)
}
CLIENT_MESSAGES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (Subscribe, Ping)}


def encode_event(event: Event, *, seq: int) -> bytes:
    """The wire line of a broadcast event stamped with ``seq``: UTF-8 JSON plus ``\\n``."""
    body = event.to_dict()
    body.pop("seq", None)
    kind = body.pop("type")
    return (_dumps({"type": kind, "seq": seq, **body}) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- parsing


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_object(line: bytes) -> dict[str, Any]:
    """Decode one received line (with or without its ``\\n``) into a JSON object with a string
    ``type``; raises :class:`ProtocolError`."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(ErrorCode.BAD_ENCODING, f"not valid UTF-8 at byte {e.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_JSON, "JSON nested too deeply") from None
    except ValueError as e:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.NOT_OBJECT, f"expected a JSON object, got {_json_kind(obj)}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, "missing or non-string 'type' field")
    return obj


def _json_kind(obj: object) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, (int, float)):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    return "an array"


def _parse(line: bytes, registry: Mapping[str, type[Message]]) -> Message:
    obj = decode_object(line)
    kind = obj["type"]
    cls = registry.get(kind)
    if cls is None:
        shown = kind if len(kind) <= 40 and kind.isprintable() else kind[:40].encode("unicode_escape").decode()
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}")
    return cls.from_dict(obj)


def parse_client_message(line: bytes) -> ClientMessage:
    """Parse one line a client sent. Raises :class:`ProtocolError` for anything else: bytes that
    are not UTF-8, not JSON, not an object, an unknown ``type``, or a missing/mistyped field.
    Unknown fields are ignored."""
    msg = _parse(line, CLIENT_MESSAGES)
    assert isinstance(msg, (Subscribe, Ping))
    return msg


def parse_server_message(line: bytes) -> ServerMessage:
    """Parse one line the server sent (for clients). Raises :class:`ProtocolError`; a client
    should skip lines whose error code is ``unknown_type`` (newer servers may send more types)."""
    msg = _parse(line, SERVER_MESSAGES)
    assert isinstance(msg, (Hello, SpeechStart, Partial, Final, Status, ErrorMessage, Bye, Pong, Subscribed))
    return msg
