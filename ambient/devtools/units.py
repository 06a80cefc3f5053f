"""Reading systemd unit files in tests: every setting, repeated keys kept in order."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_unit"]


def read_unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key -> [values]`` of a systemd unit file (keys may repeat; comments skipped)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out
