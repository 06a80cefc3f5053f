"""Training-state checkpoints: crash-safe files in the run directory, the last K kept.

A training state is a plain dict (model and optimizer state dicts, step, data position, RNG states,
counters). It is written to ``state-<step>.pt`` through a temporary file that is fsynced and then
renamed over the final name, and the directory is fsynced, so a ``kill -9`` or a power cut at any
moment leaves either the previous checkpoint or the new one, never a torn file. On load the newest
readable file wins; an unreadable one (a disk that lied about fsync) is logged and skipped.

These are *not* inference checkpoints: those are written by :func:`ambient.model.checkpoint.save_model`
(``best.pt``, ``last.pt``) with their SHA-256 beside them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import structlog
import torch

from ambient.errors import CheckpointError

__all__ = ["list_training_states", "load_latest_training_state", "save_training_state"]

_log = structlog.get_logger(__name__)
_NAME = re.compile(r"^state-(\d{9})\.pt$")
_TMP_PREFIX = ".tmp-state-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_training_states(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the training states in ``run_dir``, oldest first."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_training_state(run_dir: str | Path, state: dict[str, Any], *, step: int, keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``step`` atomically and delete all but the newest ``keep``.

    Returns the path written. Leftover temporary files of an interrupted save are removed.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.glob(f"{_TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    final = d / f"state-{step:09d}.pt"
    tmp = d / f"{_TMP_PREFIX}{step:09d}-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(d)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for _, old in list_training_states(d)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_latest_training_state(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable training state in ``run_dir`` as ``(path, state)``, or ``None`` if none.

    Raises :class:`CheckpointError` if checkpoints exist but none can be read.
    """
    states = list_training_states(run_dir)
    for _, path in reversed(states):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for torn or foreign files
            _log.warning("unreadable training state skipped", path=str(path), error=str(e).splitlines()[0])
            continue
        if not isinstance(state, dict) or "step" not in state:
            _log.warning("foreign file skipped", path=str(path))
            continue
        return path, state
    if states:
        raise CheckpointError(f"{run_dir}: none of the {len(states)} training states can be read")
    return None
