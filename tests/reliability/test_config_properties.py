"""Property-based tests of configuration loading: whatever the file or the environment holds,
``parse_config``/``load_config`` return a ``Config`` or raise ``ConfigError`` with one short line,
never anything else. (Client-protocol parsing has its own properties in tests/publish.)"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ambient.config import ENV_OVERRIDES, Config, load_config, parse_config
from ambient.errors import ConfigError

_SECTIONS = list(Config.model_fields)
_KEYS = sorted({k for s in _SECTIONS for k in Config.model_fields[s].annotation.model_fields})  # type: ignore[union-attr]
#: Longest error message we accept: one line a person reads in a journal.
_MAX_MESSAGE = 400

# What YAML can produce: scalars of every type safe_load builds, nested in lists and mappings whose
# keys are mostly the real section and key names (so values reach the validators).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=10)
    | st.dates()
    | st.datetimes()
    | st.sampled_from(["0660", "0640", "0o777", "mic", "file", "stdin", "always", "debug", "json", "-1", "1e999"])
)
_keys = st.sampled_from(_SECTIONS + _KEYS) | st.text(max_size=8) | st.integers() | st.booleans() | st.none()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=12,
)
_documents = st.dictionaries(
    st.sampled_from(_SECTIONS) | _keys,
    st.dictionaries(st.sampled_from(_KEYS) | _keys, _values, max_size=6) | _values,
    max_size=5,
)
_env = st.dictionaries(
    st.sampled_from([var for var, _, _ in ENV_OVERRIDES]),
    st.text(max_size=12) | st.sampled_from(["0", "12", "²", "DEBUG", "Warning", "/tmp/x.sock", "a\x00b"]),
    max_size=5,
)


def _check(load: Any) -> None:
    try:
        cfg = load()
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
        assert len(msg) <= _MAX_MESSAGE, msg
        return
    assert isinstance(cfg, Config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents | _values, _env)
def test_parse_config_on_arbitrary_data(data: Any, env: dict[str, str]) -> None:
    _check(lambda: parse_config(data, source="fuzz.yaml", env=env))


def _load_text(payload: bytes, env: dict[str, str]) -> None:
    with tempfile.NamedTemporaryFile(suffix=".yaml") as f:
        f.write(payload)
        f.flush()
        _check(lambda: load_config(f.name, env=env))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents, _env)
def test_load_config_on_arbitrary_yaml_documents(data: Any, env: dict[str, str]) -> None:
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:  # a value safe_dump cannot write (bytes keys...): its repr is YAML-ish text too
        text = repr(data)
    _load_text(text.encode("utf-8", "surrogatepass"), env)


_yaml_fragments = st.sampled_from(
    [
        "audio:",
        "  source: mic",
        "  device: 2",
        "vad: {aggressiveness: 3}",
        "socket:",
        "  mode: 0660",
        "  allow_uids: [yes, 0]",
        "event_log: !!binary aGVsbG8=",
        "model: &m {path: /x}",
        "logging: *m",
        "- a",
        "? [a, b]",
        ": 1",
        "\t",
        "  ",
        "---",
        "...",
        "%YAML 1.1",
        "!!python/object:os.system {}",
        "[[[[[[[[[[",
        "]]]]",
        "{a: {b: {c: {",
        'audio: {file: "\\0"}',
        "recognizer: {chunk_ms: 99999999999999999999999999}",
        "vad: {max_utterance_s: .nan}",
        "\ufeff",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_yaml_fragments | st.text(max_size=20), max_size=12), _env)
def test_load_config_on_yaml_ish_text(lines: list[str], env: dict[str, str]) -> None:
    _load_text("\n".join(lines).encode("utf-8", "surrogatepass"), env)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_load_config_on_arbitrary_bytes(payload: bytes) -> None:
    _load_text(payload, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("{a: " * 5000 + "1" + "}" * 5000, "nested too deeply"),
        ("vad:\n  aggressiveness: " + "9" * 5000 + "\n", "not valid YAML"),
        ('model:\n  path: "/x\\0y"\n', "'model.path': Value error, must not contain a NUL byte"),
        ('socket:\n  path: "/tmp/a\\0b.sock"\n', "'socket.path'"),
        ('event_log:\n  path: "/tmp/e\\0v.jsonl"\n', "'event_log.path'"),
        ('socket:\n  group: "wheel\\0"\n', "'socket.group'"),
        ("socket:\n  allow_uids: [yes]\n", "ids are numbers"),
        ("event_log:\n  file_mode: 0644\n", "must not be readable by others"),
        ("audio:\n  source: " + "x" * 10000 + "\n", "'audio.source'"),
    ],
)
def test_cases_that_once_raised_something_else(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    msg = str(info.value)
    assert expected in msg and "\n" not in msg and len(msg) <= _MAX_MESSAGE, msg


def test_environment_overrides_never_crash() -> None:
    # str.isdigit() is true for "²", which int() refuses
    for value in ("²", "٣", "7", " 7", "-1", "\x00"):
        _check(lambda v=value: parse_config({}, env={"AMBIENT_DEVICE": v}))


def test_a_valid_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("socket:\n  mode: 0660\n  allow_uids: [1000]\nevent_log:\n  file_mode: 0640\n")
    cfg = load_config(path, env={})
    assert cfg.socket.mode == 0o660 and cfg.socket.allow_uids == [1000] and cfg.event_log.file_mode == 0o640
