"""Command-line overrides of ``audio`` settings (``ambient run --source/--file/--fast``).

They are applied to the file's settings at startup and again after every SIGHUP reload, so a
reload never silently undoes what the command line asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ambient.config import AudioConfig, Config
from ambient.errors import ConfigError

__all__ = ["apply_audio_overrides"]


def apply_audio_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """``cfg`` with some ``audio`` keys replaced, validated; raises :class:`ConfigError`."""
    if not overrides:
        return cfg
    try:
        audio = AudioConfig.model_validate({**cfg.audio.model_dump(), **overrides})
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"command line: invalid value for 'audio.{key}': {first['msg']}") from None
    return cfg.model_copy(update={"audio": audio})
