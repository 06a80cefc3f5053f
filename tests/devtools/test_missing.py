"""A missing synthesis engine or PulseAudio skips a test on a developer's machine and fails it in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ambient.devtools.missing import in_ci, missing_part

ROOT = Path(__file__).resolve().parents[2]


def test_missing_part_skips_outside_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="espeak-ng is not installed"):
        missing_part("espeak-ng is not installed")
    for value in ("true", "TRUE", "1"):
        monkeypatch.setenv("CI", value)
        assert in_ci()
        with pytest.raises(pytest.fail.Exception, match=r"espeak-ng is not installed.*CI=true"):
            missing_part("espeak-ng is not installed")
    monkeypatch.setenv("CI", "false")
    assert not in_ci()


@pytest.mark.parametrize("ci", ["", "true"])
def test_the_synth_and_pulseaudio_fixtures_fail_in_ci_when_their_programs_are_missing(ci: str) -> None:
    """A real run of the suite's own fixtures with no synthesis engine or PulseAudio on ``PATH``."""
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PATH": "/nonexistent", "CI": ci}
    for test in (
        "tests/cli/test_shipped_model.py::test_the_language_model_turns_spellings_into_words",  # synth
        "tests/daemon/test_cli.py::test_devices_lists_the_virtual_microphone",  # pulse
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", test],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ci:  # failed in the test body (synth) or in its fixture's setup (pulse): never skipped
            assert proc.returncode == 1 and "CI=true" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
        else:
            assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout
