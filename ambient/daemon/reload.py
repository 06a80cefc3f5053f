"""What a SIGHUP reload can change in a running daemon, and what needs a restart.

Applied live: ``logging``, ``vad``, ``recognizer.partials``, ``audio`` (the input is reopened
when its device or format changed), ``event_log`` (the log is reopened with the new policy).
Need a restart: ``model`` (the model is loaded once and kept resident), ``recognizer.chunk_ms``,
the final pass (``final_pass``, ``final_pass_silence_ms``), the language-model settings (``lm``,
``lm_weight``, ``word_score``, ``blank_penalty``, ``beam_size``, ``final_beam_size``, ``phrase_boost``;
the phrase list itself, ``phrases``, is re-read and applied by the daemon at every reload),
and ``socket`` (clients stay connected across a reload). Settings that need a restart keep their
running values until then.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from ambient.config import Config

__all__ = ["ReloadPlan", "plan_reload"]

_LIVE_SECTIONS = ("logging", "vad", "audio", "event_log")
_RESTART_SECTIONS = ("model", "socket")
#: Recognizer settings fixed when the model is loaded (the LM's trie and options are built then).
_RESTART_RECOGNIZER_KEYS = (
    "chunk_ms",
    "final_pass",
    "final_pass_silence_ms",
    "lm",
    "lm_weight",
    "word_score",
    "blank_penalty",
    "beam_size",
    "final_beam_size",
    "phrase_boost",
)


@dataclass(frozen=True, kw_only=True)
class ReloadPlan:
    """The configuration to run with after a reload and what changed.

    ``effective`` is the new file with the restart-only settings kept at their running values;
    ``applied`` lists the sections that change now; ``restart_needed`` the dotted keys that
    changed in the file but wait for a restart.
    """

    effective: Config
    applied: tuple[str, ...]
    restart_needed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """True if anything differs from the running configuration."""
        return bool(self.applied or self.restart_needed)


def _changed_keys(section: str, old: BaseModel, new: BaseModel) -> list[str]:
    return [f"{section}.{k}" for k in type(old).model_fields if getattr(old, k) != getattr(new, k)]


def plan_reload(running: Config, loaded: Config) -> ReloadPlan:
    """Compare the running configuration with a freshly loaded one."""
    applied = [s for s in _LIVE_SECTIONS if getattr(running, s) != getattr(loaded, s)]
    restart: list[str] = []
    for s in _RESTART_SECTIONS:
        restart += _changed_keys(s, getattr(running, s), getattr(loaded, s))
    for key in _RESTART_RECOGNIZER_KEYS:
        if getattr(running.recognizer, key) != getattr(loaded.recognizer, key):
            restart.append(f"recognizer.{key}")
    if running.recognizer.partials != loaded.recognizer.partials:
        applied.append("recognizer")
    effective = loaded.model_copy(
        update={
            "model": running.model,
            "socket": running.socket,
            "recognizer": loaded.recognizer.model_copy(
                update={k: getattr(running.recognizer, k) for k in _RESTART_RECOGNIZER_KEYS}
            ),
        }
    )
    return ReloadPlan(effective=effective, applied=tuple(applied), restart_needed=tuple(restart))
