"""Checks that a configuration can run here, beyond what the schema validates.

Used by ``ambient config check`` and before a SIGHUP reload is applied, so a typo in a reloaded
file is reported and the running configuration kept, instead of the daemon stopping.
"""

from __future__ import annotations

from ambient.config import Config
from ambient.errors import ConfigError

__all__ = ["preflight"]


def preflight(cfg: Config, *, source: str = "config") -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot work on this machine."""
    if not cfg.model.path.is_file():
        raise ConfigError(f"{source}: invalid value for 'model.path': no model file at {cfg.model.path}")
    if cfg.audio.source == "file":
        if cfg.audio.file is None:
            raise ConfigError(f"{source}: 'audio.file' must be set when audio.source is 'file'")
        if not cfg.audio.file.is_file():
            raise ConfigError(f"{source}: invalid value for 'audio.file': no such file {cfg.audio.file}")
    if cfg.audio.reopen_max_s < cfg.audio.reopen_initial_s:
        raise ConfigError(f"{source}: 'audio.reopen_max_s' must not be smaller than 'audio.reopen_initial_s'")
    if cfg.vad.start_window_ms < cfg.vad.start_ms:
        raise ConfigError(f"{source}: 'vad.start_window_ms' must not be smaller than 'vad.start_ms'")
    if cfg.recognizer.phrases is not None:
        from ambient.stream.phrases import load_phrases

        try:
            load_phrases(cfg.recognizer.phrases)
        except ConfigError as e:
            raise ConfigError(f"{source}: invalid value for 'recognizer.phrases': {e}") from None
