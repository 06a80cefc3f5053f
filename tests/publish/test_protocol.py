"""The wire protocol: serialization, validation, parsing, and property tests of the parser."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from publish_helpers import final, partial, speech_start, status
from pydantic import BaseModel

from ambient.publish.protocol import (
    CLIENT_MESSAGES,
    EVENT_TYPES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    Bye,
    ErrorMessage,
    Final,
    FinalReason,
    Hello,
    Partial,
    Ping,
    Pong,
    ProtocolError,
    Status,
    StatusState,
    Subscribe,
    Subscribed,
    WordInfo,
    encode_event,
    parse_client_message,
    parse_server_message,
)


def test_final_line_has_every_documented_field() -> None:
    line = encode_event(final(7, "turn on the light"), seq=42)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = json.loads(line)
    assert list(obj)[:2] == ["type", "seq"]
    assert obj["type"] == "final" and obj["seq"] == 42
    for key in ("utterance_id", "text", "words", "start", "end", "offset_start", "offset_end", "confidence", "reason"):
        assert key in obj, key
    assert obj["text"] == "turn on the light"
    assert [w["word"] for w in obj["words"]] == ["turn", "on", "the", "light"]
    assert set(obj["words"][0]) == {"word", "start", "end", "offset_start", "offset_end", "confidence"}


def test_to_json_is_one_compact_line_without_newline_and_keeps_unicode() -> None:
    text = "naïve café\nsecond line"
    s = final(1, text).to_json()
    assert "\n" not in s
    assert "naïve café" in s  # UTF-8, not \u escapes
    assert json.loads(s)["text"] == text
    assert "seq" not in json.loads(s)  # only the server stamps seq


def test_floats_are_rounded_to_microseconds() -> None:
    p = Partial(utterance_id="u", text="x", start=1.0, end=2.0, offset_start=12.340000000000001, offset_end=13.0)
    assert json.loads(p.to_json())["offset_start"] == 12.34


@pytest.mark.parametrize(
    "msg",
    [
        final(3),
        partial(2),
        speech_start(4),
        status("audio_lost"),
        Hello(version="0.1.0", model="m", sample_rate=16000, time=1.5, instance="abc", last_seq=9),
        ErrorMessage(code="bad_json", message="not valid JSON"),
        Bye(reason="shutdown"),
        Pong(id="x1", time=2.0),
        Pong(time=2.0),
        Subscribed(events=("final",), ignored=("later_type",)),
    ],
)
def test_server_messages_round_trip(msg: Any) -> None:
    assert parse_server_message(msg.to_json().encode()) == msg


def test_every_registered_message_has_its_type() -> None:
    for kind, cls in {**SERVER_MESSAGES, **CLIENT_MESSAGES}.items():
        assert kind == cls.TYPE
    assert set(EVENT_TYPES) <= set(SERVER_MESSAGES)


def test_hello_carries_protocol_version() -> None:
    hello = Hello(version="0.1.0", model="m", sample_rate=16000, time=1.0, instance="i", last_seq=0)
    assert json.loads(hello.to_json())["protocol"] == PROTOCOL_VERSION == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"type":"ping"}', Ping()),
        (b'{"type":"ping","id":7}\n', Ping(id=7)),
        (b'{"type":"ping","id":"abc"}\r\n', Ping(id="abc")),
        (b'{"type":"subscribe"}', Subscribe()),
        (b'{"type":"subscribe","events":null}', Subscribe()),
        (b'{"type":"subscribe","events":["final","partial"]}', Subscribe(events=("final", "partial"))),
        (b'{"type":"subscribe","events":[]}', Subscribe(events=())),
        # forward compatibility: unknown fields are ignored
        (b'{"type":"ping","id":1,"future_field":{"x":[1,2]}}', Ping(id=1)),
    ],
)
def test_parse_client_message_valid(line: bytes, expected: Any) -> None:
    assert parse_client_message(line) == expected


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\xff\xfe{}", "bad_encoding"),
        (b'{"type":"ping","id":"\xc3"}', "bad_encoding"),
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b'{"type":"ping"} trailing', "bad_json"),
        (b'{"type":"ping","id":NaN}', "bad_json"),
        (b'{"type":"ping","id":Infinity}', "bad_json"),
        (b"[" * 100_000, "bad_json"),
        (b'{"type":"ping","id":' + b"9" * 5000 + b"}", "bad_json"),
        (b"[1,2]", "not_object"),
        (b'"ping"', "not_object"),
        (b"null", "not_object"),
        (b"{}", "bad_field"),
        (b'{"type":5}', "bad_field"),
        (b'{"type":"hello"}', "unknown_type"),  # a server message is not a client message
        (b'{"type":"launch_rockets"}', "unknown_type"),
        (b'{"type":"ping","id":1.5}', "bad_field"),
        (b'{"type":"ping","id":true}', "bad_field"),
        (b'{"type":"ping","id":"\\ud800"}', "bad_field"),  # lone surrogate: could never be sent back
        (b'{"type":"subscribe","events":"final"}', "bad_field"),
        (b'{"type":"subscribe","events":[1]}', "bad_field"),
    ],
)
def test_parse_client_message_errors(line: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(line)
    assert info.value.code == code
    assert "\n" not in str(info.value)


def test_server_message_parser_reports_unknown_types_for_clients_to_skip() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_server_message(b'{"type":"a_future_event","seq":3}')
    assert info.value.code == "unknown_type"


def test_constructors_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        Status(state="x", time=math.nan)
    with pytest.raises(ValueError, match="confidence"):
        WordInfo(word="a", start=0, end=1, offset_start=0, offset_end=1, confidence=1.5)
    with pytest.raises(ValueError, match="text"):
        Final(
            utterance_id="u",
            text=None,  # type: ignore[arg-type]
            start=0,
            end=1,
            offset_start=0,
            offset_end=1,
            confidence=0.5,
            reason="silence",
        )
    with pytest.raises(ValueError, match="seq"):
        Partial(utterance_id="u", text="x", start=1.0, end=2.0, offset_start=0.0, offset_end=1.0, seq=0)


def test_constructors_normalize_lists_and_ints() -> None:
    f = Final(
        utterance_id="u",
        text="a",
        words=[{"word": "a", "start": 1, "end": 2, "offset_start": 0, "offset_end": 1, "confidence": 1}],  # type: ignore[arg-type]
        start=1,
        end=2,
        offset_start=0,
        offset_end=1,
        confidence=1,
        reason="silence",
    )
    assert isinstance(f.words, tuple) and isinstance(f.words[0], WordInfo)
    assert isinstance(f.start, float) and isinstance(f.words[0].confidence, float)


# --------------------------------------------------------------------------- properties

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_types = st.sampled_from(["ping", "subscribe", "hello", "final", "", "PING"]) | st.text(max_size=10)
_fields = st.sampled_from(["id", "events", "type", "seq", "x"]) | st.text(max_size=8)
_messages = st.builds(
    lambda t, extra: {**extra, "type": t},
    _types | _json_values,
    st.dictionaries(_fields, _json_values | st.lists(st.sampled_from([*EVENT_TYPES, "bogus"]), max_size=5), max_size=4),
)


def _check_parse(line: bytes) -> None:
    try:
        msg = parse_client_message(line)
    except ProtocolError as e:
        assert e.code in {"bad_encoding", "bad_json", "not_object", "unknown_type", "bad_field"}
        assert "\n" not in str(e)
        ErrorMessage(code=e.code, message=str(e)).to_json().encode("utf-8")  # always sendable back
        return
    assert isinstance(msg, (Subscribe, Ping))
    again = parse_client_message(msg.to_json().encode("utf-8"))  # what parses re-encodes and re-parses
    assert again == msg
    if isinstance(msg, Ping):
        Pong(id=msg.id, time=0.0).to_json().encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_arbitrary_bytes(line: bytes) -> None:
    _check_parse(line)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_parse_arbitrary_json(value: Any) -> None:
    _check_parse(json.dumps(value).encode())


@settings(max_examples=500, deadline=None)
@given(_messages, st.booleans())
def test_parse_message_shaped_objects(obj: dict[str, Any], ascii_only: bool) -> None:
    _check_parse(json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@settings(max_examples=100, deadline=None)
@given(
    st.text(),
    st.lists(st.text(min_size=1, max_size=12), max_size=8),
    st.floats(min_value=0, max_value=4e9),
    st.floats(min_value=0, max_value=1),
)
def test_final_serialization_is_stable(text: str, words: list[str], t: float, conf: float) -> None:
    f = Final(
        utterance_id="u",
        text=text,
        words=tuple(
            WordInfo(word=w, start=t, end=t + 1, offset_start=0.5, offset_end=1.5, confidence=conf) for w in words
        ),
        start=t,
        end=t + 1,
        offset_start=0.5,
        offset_end=1.5,
        confidence=conf,
        reason="silence",
    )
    line = f.to_json()
    parsed = parse_server_message(line.encode("utf-8"))
    assert isinstance(parsed, Final) and parsed.text == text and [w.word for w in parsed.words] == words
    assert parsed.to_json() == line  # rounding is idempotent


def _documented(field: str) -> set[str]:
    """The backticked values in the docs/protocol.md table row of ``field`` (before "an open set")."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{field}` | string |") and "open set" in line)
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[3].split("an open set")[0]))


def test_final_reasons_and_status_states_are_one_vocabulary_each_and_the_docs_list_it() -> None:
    assert set(get_args(FinalReason)) == _documented("reason")
    assert set(get_args(StatusState)) == _documented("state")
    assert get_type_hints(Final)["reason"] == FinalReason and get_type_hints(Status)["state"] == StatusState


def test_reasons_and_states_stay_open_sets_for_receivers() -> None:
    """A newer daemon may add values: a parser accepts any string there, and only a string."""
    line = final(1, "hi").to_dict() | {"reason": "some_new_reason", "seq": 3}
    parsed = parse_server_message(json.dumps(line).encode())
    assert isinstance(parsed, Final) and parsed.reason == "some_new_reason"
    with pytest.raises(ProtocolError, match="'state': Input should be a valid string"):
        parse_server_message(json.dumps(status().to_dict() | {"state": 7}).encode())


def test_every_message_is_a_strict_pydantic_model_with_one_line_field_errors() -> None:
    """One validation system: the messages are pydantic models (as the configuration is), strict
    (no int for a string, no bool for a number), and a bad field is one ``bad_field`` line naming it."""
    for cls in (*SERVER_MESSAGES.values(), *CLIENT_MESSAGES.values(), WordInfo):
        assert issubclass(cls, BaseModel) and cls.model_config.get("strict"), cls
    cases = {
        b'{"type":"subscribe","events":["final",1]}': "subscribe: 'events[1]': Input should be a valid string",
        b'{"type":"ping","id":true}': "ping: 'id': ",
        b'{"type":"ping","id":1.5}': "ping: 'id': ",
    }
    for line, message in cases.items():
        with pytest.raises(ProtocolError) as info:
            parse_client_message(line)
        assert info.value.code == "bad_field" and str(info.value).startswith(message), str(info.value)
    with pytest.raises(ProtocolError, match=r"final: 'words\[0\]': 'confidence' must be between 0 and 1"):
        parse_server_message(
            json.dumps(
                final(1, "hi").to_dict() | {"words": [{**final(1, "hi").to_dict()["words"][0], "confidence": 2}]}
            ).encode()
        )
    with pytest.raises(ProtocolError, match="missing field 'text'"):
        parse_server_message(json.dumps({k: v for k, v in final(1, "hi").to_dict().items() if k != "text"}).encode())
