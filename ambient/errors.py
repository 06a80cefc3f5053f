"""User-facing errors: each carries a one-line message that the command line prints without a traceback."""

from __future__ import annotations

__all__ = ["AmbientError", "AudioError", "CheckpointError", "ConfigError"]


class AmbientError(Exception):
    """An error a user can act on; ``str(err)`` is a single line. ``exit_code`` is the process status."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(AmbientError):
    """Invalid configuration (unknown key, bad value, unreadable file)."""

    exit_code = 2


class CheckpointError(AmbientError):
    """A model file that is missing, corrupt, truncated, foreign, or fails its SHA-256 check."""


class AudioError(AmbientError):
    """An audio file or stream that cannot be read as audio."""
