"""SHA-256 checks of shipped files (``<name>.sha256`` beside a file, or its folder's ``SHA256SUMS``).

Torch-free: the ONNX runtime and the word LM verify their files with it too. Every failure is a
one-line :class:`~ambient.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ambient.errors import CheckpointError

__all__ = ["check_model_file", "file_sha256", "recorded_sha256", "verify_sha256"]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_checksum_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable checksum file ({type(e).__name__})") from None


def recorded_sha256(path: Path) -> str | None:
    """The SHA-256 recorded for ``path`` (``<name>.sha256`` beside it or its folder's ``SHA256SUMS``), or None."""
    side = path.with_name(path.name + ".sha256")
    if side.exists():
        fields = _read_checksum_file(side).split()
        if not fields or len(fields[0]) != 64:
            raise CheckpointError(f"{side}: not a SHA-256 checksum file")
        return fields[0].lower()
    sums = path.parent / "SHA256SUMS"
    if sums.exists():
        for line in _read_checksum_file(sums).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == path.name:
                return parts[0].lower()
    return None


def verify_sha256(path: Path) -> str:
    """Check ``path`` against its recorded SHA-256; returns the digest."""
    recorded = recorded_sha256(path)
    if recorded is None:
        raise CheckpointError(f"{path}: no SHA-256 recorded beside it ({path.name}.sha256 or SHA256SUMS)")
    actual = file_sha256(path)
    if actual != recorded:
        raise CheckpointError(
            f"{path}: SHA-256 mismatch (file {actual[:12]}…, recorded {recorded[:12]}…): corrupt or replaced"
        )
    return actual


def check_model_file(path: Path, *, expected: str, verify: bool = True) -> None:
    """The checks every model loader makes before reading ``path``: it exists, is a file, and (with
    ``verify``) matches its recorded SHA-256. ``expected`` names the file kind in the directory error
    (``model.pt``, ``model.onnx``)."""
    if not path.exists():
        raise CheckpointError(f"{path}: model file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a model file ({expected})")
    if verify:
        verify_sha256(path)
