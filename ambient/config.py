"""Daemon settings: one YAML file validated by pydantic. The only module that knows YAML.

Every key has a default and a description (``Field(description=...)``); ``docs/configuration.md``
is generated from these models (``python -m ambient.config --markdown``) and a test checks it is
current. Unknown keys and bad values raise :class:`ConfigError` with a one-line message naming the
key. A few per-host settings can be overridden by environment variables (see ``ENV_OVERRIDES``).
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ambient.errors import ConfigError
from ambient.model import decoding_defaults

__all__ = [
    "ENV_OVERRIDES",
    "AudioConfig",
    "Config",
    "EventLogConfig",
    "LoggingConfig",
    "ModelConfig",
    "RecognizerConfig",
    "SocketConfig",
    "VadConfig",
    "WyomingConfig",
    "default_event_log_path",
    "default_model_path",
    "default_socket_path",
    "format_validation_error",
    "load_config",
    "read_yaml_file",
]

DEFAULT_MODEL_NAME = "ambient-base"


def _runtime_dir() -> Path:
    """Where the socket lives: systemd's RuntimeDirectory, else the user's runtime dir, else /tmp."""
    if d := os.environ.get("RUNTIME_DIRECTORY"):
        return Path(d.split(":")[0])
    if os.geteuid() == 0:
        return Path("/run/ambient")
    if d := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(d) / "ambient"
    return Path("/tmp") / f"ambient-{os.geteuid()}"


def _state_dir() -> Path:
    """Where the event log lives: systemd's StateDirectory, else XDG state home."""
    if d := os.environ.get("STATE_DIRECTORY"):
        return Path(d.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/ambient")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ambient"


def default_socket_path() -> Path:
    """Default Unix socket path for this process (system service, user service or shell)."""
    return _runtime_dir() / "ambient.sock"


def default_event_log_path() -> Path:
    """Default event-log path for this process."""
    return _state_dir() / "events.jsonl"


def default_model_path() -> Path:
    """The shipped default model: ``models/<name>/model.pt`` in the source tree or a system install."""
    candidates = [
        Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME / "model.pt",
        Path("/usr/share/ambient/models") / DEFAULT_MODEL_NAME / "model.pt",
    ]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        # The OS cannot take a NUL byte in a path or a name: refuse it here, with the key, rather
        # than fail later with a ValueError deep inside os.open().
        if isinstance(v, str | Path) and "\0" in str(v):
            raise ValueError("must not contain a NUL byte")
        return v


class AudioConfig(_Section):
    """Where audio comes from."""

    source: Literal["mic", "file", "stdin"] = Field(
        "mic",
        description="Audio source: a microphone (sounddevice), a WAV/FLAC file, or raw PCM on stdin.",
    )
    device: str | int | None = Field(
        None,
        description="Input device for `mic`: a name substring or an index (`ambient devices`); null = system default.",
    )
    file: Path | None = Field(None, description="Audio file for `source: file` (WAV/FLAC, any rate, mono or stereo).")
    realtime: bool = Field(
        True,
        description="For `source: file`: pace the file in real time (true) or feed it as fast as possible (false).",
    )
    stdin_rate: int = Field(16000, ge=8000, le=192000, description="Sample rate of raw s16le mono PCM on stdin.")
    device_rate: int | None = Field(
        None,
        ge=8000,
        le=192000,
        description="Capture rate for `mic`; null = 16000 if the device supports it, else its native rate (resampled).",
    )
    block_ms: int = Field(
        60,
        ge=10,
        le=200,
        description="Audio block size handed from the capture callback to the daemon: smaller answers sooner, "
        "larger wakes the audio stack less often (60 ms: < 1 % of a core idle, final within hangover + 100 ms).",
    )
    queue_blocks: int = Field(
        200,
        ge=4,
        le=10000,
        description="Bound of the capture queue in blocks; overflowing blocks are dropped, counted and logged.",
    )
    idle_poll_ms: int = Field(
        200,
        ge=0,
        le=1000,
        description="While no utterance is open, collect microphone blocks this often instead of waking for each "
        "one (fewer wake-ups on silence). Batching ends when the gate opens; nothing is announced before "
        "`vad.min_speech_ms` more of voiced audio, so a poll shorter than that adds no latency (measured: none at "
        "200 ms). Never delays an utterance's end. 0 = off.",
    )
    reopen_initial_s: float = Field(0.5, gt=0, le=60, description="First delay before reopening a lost device.")
    reopen_max_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Longest delay between reopen attempts (exponential backoff).",
    )
    stall_timeout_s: float = Field(
        3.0,
        gt=0,
        le=120,
        description="No audio from an open device for this long counts as a lost device.",
    )


class VadConfig(_Section):
    """The voice-activity gate in front of the recognizer (webrtcvad)."""

    aggressiveness: int = Field(
        2,
        ge=0,
        le=3,
        description="webrtcvad aggressiveness, 0 (least) to 3 (most aggressive filtering of non-speech).",
    )
    frame_ms: Literal[10, 20, 30] = Field(30, description="webrtcvad frame length in ms.")
    noise_margin_db: float | None = Field(
        8.0,
        ge=0,
        le=60,
        description="A frame counts as speech only if its level is this many dB above the background noise "
        "floor (the quietest frame of the last `noise_window_s`); keeps fans and hum from holding the gate "
        "open. null = webrtcvad alone.",
    )
    noise_window_s: float = Field(
        5.0, ge=0.5, le=120, description="How far back the noise floor looks for the quietest frame."
    )
    release_db: float | None = Field(
        35.0,
        ge=6,
        le=90,
        description="Frames more than this many dB below the loudest frame of the last 2 s count as silence: "
        "the decay of the last word stops holding the utterance open, so the final comes sooner. null = off.",
    )
    start_ms: int = Field(
        150,
        ge=10,
        le=2000,
        description="Voiced audio needed within `start_window_ms` to open the gate.",
    )
    start_window_ms: int = Field(
        300, ge=10, le=5000, description="Window over which `start_ms` of voiced audio is counted."
    )
    preroll_ms: int = Field(
        300,
        ge=0,
        le=5000,
        description="Audio kept from before the gate opens and fed to the recognizer.",
    )
    hangover_ms: int = Field(600, ge=30, le=10000, description="Silence tolerated inside an utterance before it ends.")
    min_speech_ms: int = Field(
        250,
        ge=0,
        le=10000,
        description="Utterances with less voiced audio than this are discarded without a final.",
    )
    max_utterance_s: float = Field(
        20.0,
        ge=1,
        le=600,
        description="An utterance this long is forced to a final and a new one starts.",
    )


class ModelConfig(_Section):
    """The recognizer model."""

    path: Path = Field(
        default_factory=default_model_path,
        description="Model file: the torch checkpoint (`model.pt`) or an exported `model.onnx`; the onnx backend "
        "loads `model.onnx` (`model-int8.onnx` with `int8`) from beside a `.pt`. Its SHA-256 is verified on load.",
    )
    int8: bool | Literal["auto"] = Field(
        "auto",
        description=(
            "int8 weights: `auto` loads `model-int8.onnx` when the onnx backend runs and the model folder ships "
            "it (fp32 otherwise); `true` also quantizes a torch checkpoint at load; `false` keeps fp32."
        ),
    )
    threads: int = Field(1, ge=1, le=64, description="Intra-op threads for the encoder (onnxruntime or torch).")
    mlock: bool = Field(
        False,
        description="Lock the process memory (mlockall) so the resident model is never swapped out.",
    )


class RecognizerConfig(_Section):
    """Streaming decoding."""

    chunk_ms: int = Field(
        640,
        ge=40,
        le=5000,
        description="Encoder chunk length in ms: latency versus accuracy and CPU.",
    )
    backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="What runs the acoustic model: `onnx` = onnxruntime on the exported `model.onnx` (no torch "
        "needed), `torch` = the `model.pt` checkpoint through torch (installed by `scripts/setup.sh --train`), "
        "`auto` = onnx when the model folder ships `model.onnx`, else torch.",
    )
    partials: bool = Field(True, description="Publish `partial` events while an utterance is in progress.")
    final_pass: Literal["full", "streaming"] = Field(
        "full",
        description="How finals are made: `full` = a second pass over the whole utterance with full attention "
        "context (more accurate; partials still come from the chunked pass), `streaming` = the chunked pass's result.",
    )
    final_pass_silence_ms: int = Field(
        240,
        ge=0,
        le=10000,
        description="With `final_pass: full`, trailing silence after which the second pass starts, while "
        "`vad.hangover_ms` runs out (speech that resumes discards it); below the hangover, it hides the pass's cost.",
    )
    lm: str = Field(
        "auto",
        min_length=1,
        description="Word language model for a lexicon beam search: a folder holding `lm.bin` (KenLM binary), "
        "`lm.arpa` or `lm.arpa.gz`, and `lexicon.txt`; `auto` = the `lm/` folder beside the model file if there is "
        "one, `off` = greedy CTC.",
    )
    lm_weight: float = Field(
        decoding_defaults.LM_WEIGHT, ge=0, le=10, description="Weight of the language model's log-probability."
    )

    @field_validator("lm", mode="before")
    @classmethod
    def _lm_switch(cls, v: object) -> object:
        # YAML reads an unquoted `off` / `on` as a boolean.
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v

    word_score: float = Field(
        decoding_defaults.WORD_SCORE, ge=-10, le=10, description="Score added per word (counters the LM's short bias)."
    )
    blank_penalty: float = Field(
        decoding_defaults.BLANK_PENALTY,
        ge=0,
        le=10,
        description="Subtracted from the CTC blank's log-probability before the LM search (fewer dropped "
        "letters and words); greedy decoding (`lm: off`) ignores it.",
    )
    beam_size: int = Field(
        decoding_defaults.BEAM_SIZE,
        ge=1,
        le=1000,
        description="Hypotheses kept per frame by the beam search of the chunked pass (partials, streaming finals).",
    )
    final_beam_size: int = Field(
        decoding_defaults.FINAL_BEAM_SIZE,
        ge=1,
        le=4096,
        description="Hypotheses kept per frame by the beam search of `final_pass: full`: it runs once per "
        "utterance, within the hangover, so it affords a wider search.",
    )
    phrases: list[str] | Path | None = Field(
        None,
        description="Phrase biasing: names and commands (a YAML list, or a text file with one phrase per line) "
        "whose words get `phrase_boost` in the LM beam search; words outside the lexicon are added with their "
        "spelling. SIGHUP re-reads the list (and the file). Needs the LM (`lm` not `off`).",
    )
    phrase_boost: float = Field(
        2.0,
        ge=0,
        le=20,
        description="Score added to a phrase word each time the beam search completes it (log10 LM units, "
        "before `lm_weight`); 0 turns biasing off.",
    )


class WyomingConfig(_Section):
    """`ambient wyoming`: the Wyoming speech-to-text server (Home Assistant)."""

    uri: list[str] = Field(
        default_factory=lambda: ["tcp://127.0.0.1:10300"],
        min_length=1,
        max_length=8,
        description="Where to listen: `tcp://HOST:PORT` and/or `unix://PATH` (several allowed). "
        "`ambient wyoming --uri` replaces the list.",
    )
    allow_lan: bool = Field(
        False,
        description="Allow a TCP address other than loopback (for Home Assistant on another machine). "
        "Off, such an address is refused at startup: reaching the network is an explicit choice.",
    )
    unix_mode: int = Field(0o660, ge=0, le=0o777, description="File mode of a `unix://` socket (octal).")
    max_clients: int = Field(8, ge=1, le=1000, description="Connections beyond this get an `error` and are closed.")
    max_event_bytes: int = Field(
        65536,
        ge=1024,
        le=65536,
        description="Longest event header line plus its data section; longer gets an `error` and the connection "
        "is closed.",
    )
    max_payload_bytes: int = Field(
        1 << 20, ge=4096, le=64 << 20, description="Largest payload of one event (an audio chunk)."
    )
    max_audio_s: float = Field(
        120.0, gt=0, le=3600, description="Longest audio stream per `transcribe`; beyond it the request fails."
    )
    idle_timeout_s: float = Field(
        60.0, gt=0, le=86400, description="A connection that sends nothing for this long is closed."
    )
    write_timeout_s: float = Field(
        10.0, gt=0, le=600, description="A client that does not read an event within this long is dropped."
    )
    max_request_phrases: int = Field(
        256, ge=0, le=5000, description="Most extra phrases one `transcribe` request may carry (`context`)."
    )

    @field_validator("unix_mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        return SocketConfig._octal(v)


class SocketConfig(_Section):
    """The local Unix-socket publisher."""

    path: Path = Field(default_factory=default_socket_path, description="Unix socket path. Env: AMBIENT_SOCKET.")
    mode: int = Field(0o660, ge=0, le=0o777, description='Socket file mode (octal in YAML: 0660 or "0660").')
    group: str | None = Field(None, description="Group owning the socket (e.g. `ambient`); null = the daemon's group.")
    allow_uids: list[int] | None = Field(
        None,
        description="If set, only these peer uids (SO_PEERCRED) may connect (root too, see `allow_root`).",
    )
    allow_gids: list[int] | None = Field(
        None,
        description="If set, peers whose primary gid, or whose user's groups, include one of these gids may connect.",
    )
    allow_root: bool = Field(
        True,
        description="With allow-lists set, uid 0 may always connect; false applies the lists to root too.",
    )
    max_clients: int = Field(128, ge=1, le=10000, description="Connections beyond this are refused with an error.")
    client_queue: int = Field(
        256,
        ge=8,
        le=100000,
        description="Per-client queue of outgoing events; partials are dropped first when it fills.",
    )
    max_message_bytes: int = Field(
        65536,
        ge=256,
        le=16 * 1024 * 1024,
        description="Longest accepted client message (one JSON line).",
    )

    @field_validator("allow_uids", "allow_gids", mode="before")
    @classmethod
    def _ids_not_booleans(cls, v: Any) -> Any:
        # YAML reads `yes`/`true` as a boolean, which pydantic would turn into id 1 (`daemon`).
        if isinstance(v, list) and any(isinstance(x, bool) for x in v):
            raise ValueError("ids are numbers, not true/false")
        return v

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return int(v, 8)
            except ValueError as e:
                raise ValueError(f"not an octal file mode: {v!r}") from e
        return v


class EventLogConfig(_Section):
    """The durable append-only transcript log (JSON Lines)."""

    path: Path | None = Field(
        default_factory=default_event_log_path, description="Event-log file; null disables the log."
    )
    fsync: Literal["always", "interval", "never"] = Field(
        "always",
        description="fsync after every line, at most every `fsync_interval_s`, or never (flush only).",
    )
    fsync_interval_s: float = Field(1.0, gt=0, le=3600, description="Period for `fsync: interval`.")
    rotate_bytes: int = Field(
        10 * 1024 * 1024, ge=4096, description="Rotate the file when it would grow past this size."
    )
    rotate_days: float | None = Field(
        1.0,
        gt=0,
        le=3650,
        description="Also rotate when the current file's oldest event is this old, so that `retention_days` "
        "reaches a quiet log too: no event is kept longer than `retention_days` + `rotate_days`. null = by size only.",
    )
    keep_files: int = Field(5, ge=0, le=1000, description="Rotated files kept (events.jsonl.1 … .N).")
    retention_days: float | None = Field(
        30.0, gt=0, description="Delete rotated files older than this many days; null keeps them."
    )
    metadata_only: bool = Field(
        False, description="Privacy mode: store times, ids and confidences but no text or words."
    )
    file_mode: int = Field(0o600, ge=0, le=0o777, description="Mode of event-log files (0600 or 0640).")
    include_partials: bool = Field(False, description="Also log partial events (large; off by default).")

    @field_validator("file_mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        return SocketConfig._octal(v)

    @field_validator("file_mode", mode="after")
    @classmethod
    def _private(cls, v: int) -> int:
        # The log holds transcripts: never for other users, never executable, group read-only.
        if v & 0o137:
            raise ValueError(f"transcripts must not be readable by others: use 0600 or 0640, not {v:04o}")
        return v


class LoggingConfig(_Section):
    """Diagnostic logs (structlog)."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level. Env: AMBIENT_LOG_LEVEL."
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="`json` lines (journald), readable `console`, or `auto`: console on a terminal, else json.",
    )


class Config(_Section):
    """The whole daemon configuration."""

    audio: AudioConfig = Field(default_factory=lambda: AudioConfig(), description="Audio capture.")
    vad: VadConfig = Field(default_factory=lambda: VadConfig(), description="Voice-activity gate.")
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(), description="Recognizer model.")
    recognizer: RecognizerConfig = Field(default_factory=RecognizerConfig, description="Streaming decoding.")
    socket: SocketConfig = Field(default_factory=lambda: SocketConfig(), description="Unix-socket publisher.")
    event_log: EventLogConfig = Field(default_factory=EventLogConfig, description="Durable event log.")
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig(), description="Diagnostic logging.")
    wyoming: WyomingConfig = Field(default_factory=lambda: WyomingConfig(), description="Wyoming server.")


#: Environment variables that override one key each: (variable, section, key).
ENV_OVERRIDES: tuple[tuple[str, str, str], ...] = (
    ("AMBIENT_SOCKET", "socket", "path"),
    ("AMBIENT_DEVICE", "audio", "device"),
    ("AMBIENT_LOG_LEVEL", "logging", "level"),
    ("AMBIENT_MODEL", "model", "path"),
    ("AMBIENT_EVENT_LOG", "event_log", "path"),
)


#: Shows a rejected value in an error message: short, one line, safe on deeply nested data.
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 80
_short_repr.maxlevel = 3


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_validation_error(err: ValidationError, source: str, *, names: Mapping[str, str] | None = None) -> str:
    """One line for the first error of ``err``: ``{source}: invalid value for '{key}': ...``. ``names`` maps a
    dotted key to the name the user wrote it as (a command-line flag, say)."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    key = _clip((names or {}).get(key, key) or "(top level)")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    msg = _clip(first["msg"], 160)
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {_clip(_short_repr.repr(value))})"
    return f"{source}: invalid value for '{key}': {msg}{shown}"


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    for var, section, key in ENV_OVERRIDES:
        if var in env and env[var] != "":
            sect = data.get(section, {})
            if not isinstance(sect, dict):
                continue
            sect = data[section] = dict(sect)  # never modify the caller's mapping
            value: Any = env[var]
            if key == "device" and value.isascii() and value.isdigit():  # "²".isdigit() is true too
                value = int(value)
            if key == "level":
                value = value.lower()
            sect[key] = value
    return data


def parse_config(data: Any, *, source: str = "config", env: dict[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data (a mapping or None) and apply environment overrides."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    data = _apply_env(dict(data), dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: object, mark: yaml.Mark) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.problem_mark = mark


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently, so a setting could be overridden by a forgotten line further down)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise _DuplicateKeyError(key, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file; every failure is a one-line :class:`ConfigError` naming the file.

    Shared by the daemon's config and the training config (``ambient.train.config``).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config file: {e}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except _DuplicateKeyError as e:
        raise ConfigError(f"{p}: duplicate key {e.key!r} at line {e.problem_mark.line + 1}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML (nested too deeply)") from None
    except (ValueError, OverflowError) as e:  # a scalar the YAML loader cannot convert (a 5000-digit int)
        raise ConfigError(f"{p}: not valid YAML ({str(e)[:120]})") from None


def load_config(path: str | Path | None, *, env: dict[str, str] | None = None) -> Config:
    """Load and validate a YAML config file (``None``: all defaults, env overrides still apply)."""
    if path is None:
        return parse_config({}, source="defaults", env=env)
    return parse_config(read_yaml_file(path), source=str(path), env=env)


def dump_config(cfg: Config) -> str:
    """The effective configuration as YAML (defaults included)."""
    data = cfg.model_dump(mode="json")
    for sect, key in (("socket", "mode"), ("event_log", "file_mode"), ("wyoming", "unix_mode")):
        data[sect][key] = f"{getattr(getattr(cfg, sect), key):04o}"
    return yaml.safe_dump(data, sort_keys=False)


_MARKDOWN_INTRO: tuple[str, ...] = (
    "The daemon reads one YAML file: `ambient run --config FILE` (or `$AMBIENT_CONFIG`; without",
    "either, every default applies). The system service uses `/etc/ambient/config.yaml`. A minimal",
    "file for a Raspberry Pi with a USB microphone:",
    "",
    "```yaml",
    "audio:",
    "  device: USB          # a unique part of the name shown by `ambient devices`, or its index",
    "model:",
    "  threads: 1           # one core is enough in real time",
    "  mlock: true          # keep the model in RAM (needs LimitMEMLOCK=infinity)",
    "socket:",
    "  group: ambient       # members of this group may read transcripts",
    "```",
    "",
    "- `ambient config check [FILE]` validates a file (keys, values, and that the files it names",
    "  exist) and exits 0 or 2; `ambient config show [FILE]` prints the effective settings with",
    "  defaults and environment overrides; `ambient config reference` prints this page.",
    "- An error names the key: `config.yaml: unknown key 'vad.hangover'`,",
    "  `config.yaml: invalid value for 'vad.aggressiveness': ... (got 7)`.",
    "- `SIGHUP` (`systemctl reload ambient`) re-reads the file. `logging`, `vad`, `audio` (the input",
    "  is reopened when it changed), `event_log` and `recognizer.partials` change at once and clients",
    "  stay connected; `model`, `socket` and `recognizer.chunk_ms` need a restart (the daemon logs",
    "  which keys wait for one). A file that does not validate is refused and the running",
    "  configuration kept (status event `reload_failed`). `recognizer.phrases` (and the file it names)",
    "  is re-read at every reload, by the daemon and by `ambient wyoming` alike.",
    "",
)


def config_markdown() -> str:
    """Reference documentation of every key, generated from the models (docs/configuration.md)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `ambient/config.py` by `python -m ambient.config --markdown`; a test keeps it current.",
        "Every key is optional. Unknown keys are errors.",
        "",
        *_MARKDOWN_INTRO,
    ]
    for name, field in Config.model_fields.items():
        section = field.annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        lines += [
            f"## `{name}`",
            "",
            (section.__doc__ or "").strip(),
            "",
            "| key | default | description |",
            "|---|---|---|",
        ]
        for key, f in section.model_fields.items():
            if f.default_factory is not None:
                default = "(computed, see below)" if key == "path" else repr(f.default_factory())  # type: ignore[call-arg]
            else:
                default = f.default
            if key in ("mode", "file_mode", "unix_mode") and isinstance(default, int):
                default = f"{default:04o}"
            lines.append(f"| `{name}.{key}` | `{default}` | {f.description or ''} |")
        lines.append("")
    lines += [
        "## Computed defaults",
        "",
        "- `socket.path`: `$RUNTIME_DIRECTORY/ambient.sock` under systemd, `/run/ambient/ambient.sock` as root,",
        "  else `$XDG_RUNTIME_DIR/ambient/ambient.sock`.",
        "- `event_log.path`: `$STATE_DIRECTORY/events.jsonl` under systemd, `/var/lib/ambient/events.jsonl` as root,",
        "  else `$XDG_STATE_HOME/ambient/events.jsonl` (default `~/.local/state/ambient/events.jsonl`).",
        f"- `model.path`: the shipped `models/{DEFAULT_MODEL_NAME}/model.pt`.",
        "",
        "## Environment overrides",
        "",
        "| variable | key |",
        "|---|---|",
    ]
    lines += [f"| `{var}` | `{sect}.{key}` |" for var, sect, key in ENV_OVERRIDES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(config_markdown())
    else:
        sys.stdout.write(dump_config(load_config(sys.argv[1] if len(sys.argv) > 1 else None)))
