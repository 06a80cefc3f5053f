"""``ambient transcribe`` and ``ambient model info`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ambient.model.testing import write_tiny_checkpoint


def _ambient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ambient", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", scheme="residual")


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    t = np.arange(int(2.5 * 44100)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2 + 0.01 * rng.standard_normal(len(t))
    files = {
        "stereo44k": d / "stereo44k.wav",
        "mono16k": d / "mono16k.flac",
        "u8": d / "u8.wav",
        "float": d / "float.wav",
        "empty": d / "empty.wav",
        "text": d / "notes.wav",
    }
    sf.write(files["stereo44k"], np.stack([tone, 0.5 * tone], axis=1), 44100)
    mono = tone[::3][: 16000 * 2]
    sf.write(files["mono16k"], mono, 16000)
    sf.write(files["u8"], mono, 16000, subtype="PCM_U8")
    sf.write(files["float"], mono, 16000, subtype="FLOAT")
    sf.write(files["empty"], np.zeros(0), 16000)
    files["text"].write_text("this is not audio\n")
    return files


def test_json_output_fields_and_block_size_independence(model: Path, audio: dict[str, Path]) -> None:
    outs = []
    for block in ("10", "333", "5000"):
        r = _ambient("transcribe", str(audio["stereo44k"]), "--model", str(model), "--json", "--block-ms", block)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    first = outs[0]
    assert set(first) >= {"file", "text", "words", "duration"}
    assert abs(first["duration"] - 2.5) < 0.01
    for w in first["words"]:
        assert set(w) >= {"word", "start", "end", "confidence"}
        assert 0 <= w["start"] <= w["end"] <= first["duration"] + 0.1 and 0 <= w["confidence"] <= 1
    assert outs[1] == first and outs[2] == first
    r = _ambient("transcribe", str(audio["stereo44k"]), "--model", str(model), "--json", "--chunk-ms", "160")
    assert r.returncode == 0 and json.loads(r.stdout)["chunk_ms"] == 160


def test_formats_and_bad_files(model: Path, audio: dict[str, Path]) -> None:
    files = [str(audio[k]) for k in ("mono16k", "u8", "float", "empty", "text")]
    r = _ambient("transcribe", *files, "--model", str(model), "--json")
    assert r.returncode == 1  # one bad file
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [Path(x["file"]).name for x in lines] == ["mono16k.flac", "u8.wav", "float.wav", "empty.wav"]
    assert lines[3]["duration"] == 0 and lines[3]["text"] == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "notes.wav" in err[0] and "not a readable audio file" in err[0]
    assert "Traceback" not in r.stderr


def test_model_info_json(model: Path) -> None:
    r = _ambient("model", "info", str(model), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["sharing"] == "residual"
    assert info["virtual_params"] > info["stored_params"] > 0
    assert info["file_size"] == model.stat().st_size
    assert info["sha256"] == (model.parent / "model.pt.sha256").read_text().split()[0]
    assert info["dims"]["n_layers"] == 4


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lm-weight", "-1"),
        ("--lm-weight", "11"),
        ("--word-score", "-20"),
        ("--blank-penalty", "-0.5"),
        ("--blank-penalty", "nan"),
        ("--beam-size", "0"),
        ("--final-beam-size", "5000"),
        ("--lm", ""),
    ],
)
def test_decoding_options_out_of_range_are_refused(
    model: Path, audio: dict[str, Path], option: str, value: str
) -> None:
    """An option outside its ``recognizer.*`` key's range stops the command with a one-line error naming the
    option (exit 2, like a bad config file) before any file is read, instead of decoding with it."""
    r = _ambient("transcribe", str(audio["mono16k"]), "--model", str(model), "--json", f"{option}={value}")
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"invalid value for '{option}'" in err[0], err
    assert "Traceback" not in r.stderr


def test_decoding_options_at_their_limits_are_accepted(model: Path, audio: dict[str, Path]) -> None:
    r = _ambient(
        "transcribe", str(audio["mono16k"]), "--model", str(model), "--json",
        "--lm-weight", "10", "--word-score", "-10", "--blank-penalty", "0", "--beam-size", "1", "--lm", "off",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["duration"] == pytest.approx(2.0, abs=0.01)
