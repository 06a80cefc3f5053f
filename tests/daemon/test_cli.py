"""``ambient run`` configuration errors, ``ambient config``, ``ambient devices``, and the generated
configuration reference. Every command runs as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ambient.config import config_markdown

REPO = Path(__file__).resolve().parents[2]


def ambient(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ambient", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ambient: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("audio:\n  source: mic\n  devcie: 2\n", "unknown key 'audio.devcie'"),
        ("vad:\n  aggressiveness: 7\n", "invalid value for 'vad.aggressiveness'"),
        ("vad:\n  frame_ms: 25\n", "invalid value for 'vad.frame_ms'"),
        ("recognizer: [1, 2]\n", "'recognizer'"),
        ("audio:\n  source: mic\n   bad indent: 1\n", "not valid YAML at line"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("vad:\n  hangover_ms: 300\n  aggressiveness: 2\n  hangover_ms: 900\n", "duplicate key 'hangover_ms' at line"),
        ("audio:\n  source: mic\naudio:\n  source: file\n", "duplicate key 'audio' at line 3"),
    ],
)
def test_config_errors_are_one_line_naming_the_key_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    proc = ambient("run", "--config", str(cfg))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert expected in line and str(cfg) in line


def test_missing_config_model_or_audio_file_exit_2(tmp_path: Path, tiny_checkpoint: Path) -> None:
    proc = ambient("run", "--config", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2 and "config file not found" in one_error_line(proc)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"path": str(tmp_path / "no-model.pt")}}))
    proc = ambient("run", "--config", str(cfg))
    assert proc.returncode == 2 and "'model.path'" in one_error_line(proc)
    cfg.write_text(yaml.safe_dump({"model": {"path": str(tiny_checkpoint)}}))
    proc = ambient("run", "--config", str(cfg), "--file", str(tmp_path / "missing.wav"))
    assert proc.returncode == 2 and "'audio.file'" in one_error_line(proc)


def test_a_corrupt_model_is_a_one_line_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:1000])  # truncated
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"path": str(bad)},
                "audio": {"source": "stdin"},
                "socket": {"path": str(tmp_path / "s.sock")},
                "event_log": {"path": None},
            }
        )
    )
    proc = ambient("run", "--config", str(cfg))
    assert proc.returncode == 1
    assert str(bad) in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_config_check_and_show(tmp_path: Path, tiny_checkpoint: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"path": str(tiny_checkpoint)}, "vad": {"hangover_ms": 900}}))
    proc = ambient("config", "check", str(cfg))
    assert proc.returncode == 0 and proc.stdout.strip() == f"{cfg}: ok"

    cfg_missing = tmp_path / "other.yaml"
    cfg_missing.write_text(yaml.safe_dump({"model": {"path": str(tmp_path / "none.pt")}}))
    proc = ambient("config", "check", str(cfg_missing))
    assert proc.returncode == 2 and "'model.path'" in one_error_line(proc)
    assert ambient("config", "check", "--schema-only", str(cfg_missing)).returncode == 0

    env = {**os.environ, "AMBIENT_LOG_LEVEL": "DEBUG"}
    proc = ambient("config", "show", str(cfg), env=env)
    assert proc.returncode == 0
    shown: dict[str, Any] = yaml.safe_load(proc.stdout)
    assert shown["vad"]["hangover_ms"] == 900  # from the file
    assert shown["vad"]["aggressiveness"] == 2  # a default
    assert shown["logging"]["level"] == "debug"  # from the environment
    assert shown["socket"]["mode"] == "0660"
    assert set(shown) == {"audio", "vad", "model", "recognizer", "socket", "event_log", "logging", "wyoming"}


def test_config_reference_and_docs_are_current() -> None:
    proc = ambient("config", "reference")
    assert proc.returncode == 0 and proc.stdout == config_markdown()
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert doc == config_markdown(), (
        "docs/configuration.md is stale: python -m ambient.config --markdown > docs/configuration.md"
    )


def test_devices_lists_the_virtual_microphone(pulse: Any) -> None:
    proc = ambient("devices", "--json", env=pulse.client_env())
    assert proc.returncode == 0, proc.stderr
    devices = json.loads(proc.stdout)
    names = {d["name"] for d in devices}
    assert {"pulse", "default"} <= names
    assert all(d["channels"] >= 1 and d["default_rate"] > 0 for d in devices)
    assert sum(d["default"] for d in devices) == 1
    table = ambient("devices", env=pulse.client_env())
    assert table.returncode == 0 and "default" in table.stdout and "index" in table.stdout


def test_devices_without_any_sound_server(tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/nobody"}
    proc = ambient("devices", "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
