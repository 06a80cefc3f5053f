"""The event-socket wire protocol: one frozen dataclass per message, one JSON object per line.

Every message is a JSON object on one line (UTF-8, ``\\n``-terminated) whose ``type`` field names
the message. ``to_json()`` gives the line without its newline; ``parse_client_message`` and
``parse_server_message`` turn a received line back into a typed message or raise
:class:`ProtocolError`. Field types are checked on construction as well as on parsing, so a
message that exists is valid: finite floats only, no lone surrogates in strings.

Versioning (``PROTOCOL_VERSION``, sent in ``hello``): adding a message type, adding a field, or
adding a value to an open set (status states, final reasons, error codes) keeps the version.
Receivers ignore fields they do not know and clients ignore message types they do not know.
Removing or renaming a field, or changing its type or meaning, bumps the version.
See docs/protocol.md for every message and field.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

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


class _FieldError(ValueError):
    """A field value of the wrong type or out of range (a ``ValueError`` for constructors)."""


class _BadValue(_FieldError):
    """The right kind of value but unusable (non-finite, lone surrogate): no union arm can help."""


# --------------------------------------------------------------------------- value checking

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _normalize(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it normalized (lists to tuples,
    ints to floats where a float is declared, nested dicts to dataclasses)."""
    origin = get_origin(tp)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _FieldError(f"'{where}' must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise _BadValue(f"'{where}' must be finite")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(f"'{where}' must be an integer")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _FieldError(f"'{where}' must be a string")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _BadValue(f"'{where}' is not valid Unicode (lone surrogate)") from None
        return value
    if origin is Literal:  # an open set of strings (FinalReason, StatusState): any string parses
        return _normalize(value, str, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise _FieldError(f"'{where}' must be true or false")
        return value
    if tp is type(None):
        if value is not None:
            raise _FieldError(f"'{where}' must be null")
        return None
    if origin is Union or origin is types.UnionType:
        for arm in get_args(tp):
            try:
                return _normalize(value, arm, where)
            except _BadValue:
                raise
            except _FieldError:
                continue
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in get_args(tp))
        raise _FieldError(f"'{where}' must be {names}")
    if origin is tuple:
        args = get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported annotation {tp!r}")
        if not isinstance(value, (list, tuple)):
            raise _FieldError(f"'{where}' must be a list")
        return tuple(_normalize(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _key_tp, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise _FieldError(f"'{where}' must be an object")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _FieldError(f"'{where}' keys must be strings")
            out[_normalize(k, str, f"{where} key")] = _normalize(v, val_tp, f"{where}.{k}")
        return out
    if isinstance(tp, type) and is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _FieldError(f"'{where}' must be an object")
        return _build(tp, value, where)
    raise TypeError(f"unsupported annotation {tp!r}")


_T = TypeVar("_T")


def _build(cls: type[_T], data: Mapping[str, Any], where: str) -> _T:
    """Construct dataclass ``cls`` from a mapping, ignoring unknown keys (forward compatibility)."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        if f.name in data:
            kwargs[f.name] = data[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:
            raise _FieldError(f"missing field '{_join(where, f.name)}'")
    try:
        return cls(**kwargs)
    except _FieldError as e:
        raise _FieldError(f"{where}: {e}" if where else str(e)) from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _check_fields(obj: Any) -> None:
    """Validate and normalize every field of a frozen dataclass instance in place."""
    for name, tp in _hints(type(obj)).items():
        if get_origin(tp) is ClassVar or tp is ClassVar:
            continue
        value = getattr(obj, name)
        norm = _normalize(value, tp, name)
        if norm is not value:
            object.__setattr__(obj, name, norm)


def _encode(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, _FLOAT_DIGITS)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    return value


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _check_unit(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise _FieldError(f"'{name}' must be between 0 and 1")


# --------------------------------------------------------------------------- messages

_OMIT_NONE = {"omit_none": True}


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every wire message; ``TYPE`` is the value of its ``type`` field."""

    TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_fields(self)
        self._validate()

    def _validate(self) -> None:
        """Range checks beyond the field types (subclasses override)."""

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict, ``type`` first."""
        out: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _encode(value)
        return out

    def to_json(self) -> str:
        """One line of JSON (UTF-8 text, no trailing newline)."""
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """Build the message from a decoded JSON object; unknown keys are ignored.

        Raises :class:`ProtocolError` (``bad_field``) for a missing or mistyped field.
        """
        try:
            return _build(cls, data, "")
        except _FieldError as e:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{cls.TYPE}: {e}") from None


_M = TypeVar("_M", bound=Message)


@dataclass(frozen=True, kw_only=True)
class Event(Message):
    """A broadcast event; ``seq`` is stamped by the server (1, 2, 3, … per server instance)."""

    seq: int | None = field(default=None, metadata=_OMIT_NONE)

    def _validate(self) -> None:
        if self.seq is not None and self.seq < 1:
            raise _FieldError("'seq' must be positive")


@dataclass(frozen=True, kw_only=True)
class WordInfo:
    """One recognized word. ``start``/``end`` are wall-clock Unix seconds, ``offset_*`` seconds
    since the daemon's audio stream began, ``confidence`` in [0, 1]."""

    word: str
    start: float
    end: float
    offset_start: float
    offset_end: float
    confidence: float

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_unit(self.confidence, "confidence")


@dataclass(frozen=True, kw_only=True)
class SpeechStart(Event):
    """The voice-activity gate opened: an utterance begins at stream ``offset`` (wall-clock ``time``)."""

    TYPE: ClassVar[str] = "speech_start"
    utterance_id: str
    offset: float
    time: float


@dataclass(frozen=True, kw_only=True)
class Partial(Event):
    """The current, still-changing hypothesis of utterance ``utterance_id``."""

    TYPE: ClassVar[str] = "partial"
    utterance_id: str
    text: str
    start: float
    end: float
    offset_start: float
    offset_end: float


@dataclass(frozen=True, kw_only=True)
class Final(Event):
    """The final transcript of one utterance. ``reason`` says why it ended (:data:`FinalReason`)."""

    TYPE: ClassVar[str] = "final"
    utterance_id: str
    text: str
    words: tuple[WordInfo, ...] = ()
    start: float
    end: float
    offset_start: float
    offset_end: float
    confidence: float
    reason: FinalReason

    def _validate(self) -> None:
        super()._validate()
        _check_unit(self.confidence, "confidence")


@dataclass(frozen=True, kw_only=True)
class Status(Event):
    """A daemon state change (:data:`StatusState`) with a human-readable ``detail`` and counters."""

    TYPE: ClassVar[str] = "status"
    state: StatusState
    detail: str = ""
    time: float
    counters: dict[str, int | float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """First message on every connection. ``last_seq`` is the ``seq`` of the newest event
    published before this connection (0 if none); ``instance`` changes on every daemon start."""

    TYPE: ClassVar[str] = "hello"
    protocol: int = PROTOCOL_VERSION
    version: str
    model: str
    sample_rate: int
    time: float
    instance: str
    last_seq: int
    events: tuple[str, ...] = EVENT_TYPES


@dataclass(frozen=True, kw_only=True)
class ErrorMessage(Message):
    """Something the client did (or failed to do); see :class:`ErrorCode`."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Bye(Message):
    """The server is closing this connection; ``reason`` e.g. ``shutdown``, ``too_slow``."""

    TYPE: ClassVar[str] = "bye"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Pong(Message):
    """Reply to ``ping``, echoing its ``id``."""

    TYPE: ClassVar[str] = "pong"
    id: str | int | None = None
    time: float


@dataclass(frozen=True, kw_only=True)
class Subscribed(Message):
    """Reply to ``subscribe``: the event types now delivered, and the requested names this
    server does not know (ignored)."""

    TYPE: ClassVar[str] = "subscribed"
    events: tuple[str, ...]
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Subscribe(Message):
    """Client request: deliver these event types (``None``/absent: all of them)."""

    TYPE: ClassVar[str] = "subscribe"
    events: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Ping(Message):
    """Client request: answer with ``pong`` carrying the same ``id``."""

    TYPE: ClassVar[str] = "ping"
    id: str | int | None = None


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
