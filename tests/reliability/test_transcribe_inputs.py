"""``ambient transcribe`` and the daemon's file source against awkward and hostile audio files:
every rate, channel layout and sample format decodes; damaged files and non-audio give one-line
errors while the other files still run; NaN and out-of-range float samples cannot poison a
transcript; and huge files are streamed (peak resident memory does not grow with the file).

tests/cli/test_transcribe.py covers the basic formats (44.1 kHz stereo, 8-bit, float, empty, text);
this file adds the rest."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml

GUARD_S = 300
MiB = 1024 * 1024

#: Runs a command as its only child and prints the child's peak resident set size in KiB, so the
#: figure belongs to that command alone (RUSAGE_CHILDREN of a fresh process).
_PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _noise(seconds: float, rate: int, *, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    shape = (n, channels) if channels > 1 else (n,)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def _transcribe(model: Path, files: list[Path]) -> tuple[int, list[dict[str, Any]], list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "ambient", "transcribe", *map(str, files), "--model", str(model), "--json"],
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [json.loads(x) for x in proc.stdout.splitlines()], proc.stderr.strip().splitlines()


def _peak_rss_kib(cmd: list[str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *cmd], capture_output=True, text=True, timeout=GUARD_S, check=True
    ).stdout.split()
    assert out[0] == "0", f"{cmd} exited with {out[0]}"
    return int(out[1])


def _write_silence_flac(path: Path, seconds: int, rate: int = 16000) -> Path:
    """A long file written a minute at a time (never held in memory)."""
    minute = np.zeros(rate * 60, dtype=np.int16)
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16", format="FLAC") as f:
        for _ in range(seconds // 60):
            f.write(minute)
        f.write(minute[: (seconds % 60) * rate])
    return path


def test_every_rate_layout_and_sample_format_decodes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    files: dict[str, tuple[Path, float]] = {}
    for rate in (8000, 11025, 22050, 44100, 48000, 96000, 12345, 44101):  # odd rates: large polyphase ratios
        path = tmp_path / f"r{rate}.wav"
        sf.write(str(path), _noise(1.0, rate), rate, subtype="PCM_16")
        files[f"{rate} Hz"] = (path, 1.0)
    layouts = [
        ("stereo 48k", _noise(1.5, 48000, channels=2), 48000, "PCM_16", "WAV"),
        ("6 channels 32-bit", _noise(1.0, 16000, channels=6), 16000, "PCM_32", "WAV"),
        ("24-bit", _noise(1.0, 44100), 44100, "PCM_24", "WAV"),
        ("8-bit unsigned", _noise(1.0, 8000), 8000, "PCM_U8", "WAV"),
        ("64-bit float", _noise(1.0, 22050), 22050, "DOUBLE", "WAV"),
        ("FLAC 8 kHz", _noise(2.0, 8000), 8000, "PCM_16", "FLAC"),
        ("Ogg Vorbis", _noise(1.0, 16000), 16000, "VORBIS", "OGG"),
    ]
    for name, audio, rate, subtype, fmt in layouts:
        path = tmp_path / f"{name.replace(' ', '_')}.{fmt.lower()}"
        sf.write(str(path), audio, rate, subtype=subtype, format=fmt)
        files[name] = (path, len(audio) / rate)
    code, out, err = _transcribe(tiny_checkpoint, [p for p, _ in files.values()])
    assert code == 0 and err == [], err
    assert [Path(r["file"]) for r in out] == [p for p, _ in files.values()]
    for (name, (_, seconds)), r in zip(files.items(), out, strict=True):
        assert abs(r["duration"] - seconds) < 0.01, (name, r["duration"])
        assert isinstance(r["text"], str) and 0.0 <= r["confidence"] <= 1.0, name


def test_damaged_and_foreign_files_fail_alone_with_one_line_each(tiny_checkpoint: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(str(good), _noise(1.0, 16000), 16000, subtype="PCM_16")
    header_only = tmp_path / "header_only.wav"  # claims a minute of audio, holds none
    claimed = 60 * 16000 * 2
    header_only.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + claimed)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", claimed)
    )
    cut_wav = tmp_path / "cut.wav"  # the header claims 3 s; the file ends after about 1.5 s
    sf.write(str(cut_wav), _noise(3.0, 16000), 16000, subtype="PCM_16")
    raw = cut_wav.read_bytes()
    cut_wav.write_bytes(raw[: 44 + 2 * 24000])
    flac = tmp_path / "full.flac"
    sf.write(str(flac), _noise(10.0, 16000), 16000, subtype="PCM_16")
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    riff_garbage = tmp_path / "riff.wav"
    riff_garbage.write_bytes(b"RIFF\xff\xff\xff\xffWAVEfmt " + os.urandom(300))
    random_bytes = tmp_path / "random.flac"
    random_bytes.write_bytes(os.urandom(10000))
    a_dir = tmp_path / "folder.wav"
    a_dir.mkdir()
    missing = tmp_path / "missing.wav"
    files = [good, header_only, cut_wav, cut_flac, riff_garbage, random_bytes, a_dir, missing, Path("/dev/null"), good]
    code, out, err = _transcribe(tiny_checkpoint, files)
    assert code == 1
    by_name = {Path(r["file"]).name: r for r in out}
    assert [Path(r["file"]).name for r in out] == ["good.wav", "header_only.wav", "cut.wav", "good.wav"]
    assert by_name["header_only.wav"]["duration"] == 0 and by_name["header_only.wav"]["text"] == ""
    assert abs(by_name["cut.wav"]["duration"] - 1.5) < 0.01  # what is there is transcribed
    assert out[0] == out[-1]  # the failures in between did not disturb the recognizer
    assert len(err) == 6 and all(line.startswith("ambient: error: ") for line in err), err
    expected = {
        cut_flac: "error while decoding audio",
        riff_garbage: "not a readable audio file",
        random_bytes: "not a readable audio file",
        a_dir: "is a directory",
        missing: "no such file",
        Path("/dev/null"): "not a readable audio file",
    }
    for line, (path, words) in zip(err, expected.items(), strict=True):
        assert str(path) in line and words in line, line


def test_nan_infinite_and_overrange_float_samples_are_contained(tiny_checkpoint: Path, tmp_path: Path) -> None:
    audio = _noise(3.0, 16000, seed=3)
    poisoned = audio.copy()
    poisoned[[100, 5000, 20000]] = [np.nan, np.inf, -np.inf]
    poisoned[30000:30010] = 1e30
    clean = audio.copy()  # what the poisoned file must read as: NaN -> 0, the rest clipped
    clean[[100, 5000, 20000]] = [0.0, 1.0, -1.0]
    clean[30000:30010] = 1.0
    sf.write(str(tmp_path / "poisoned.wav"), poisoned, 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "clean.wav"), clean, 16000, subtype="FLOAT")
    code, out, _ = _transcribe(tiny_checkpoint, [tmp_path / "poisoned.wav", tmp_path / "clean.wav"])
    assert code == 0
    poisoned_result, clean_result = ({k: v for k, v in r.items() if k != "file"} for r in out)
    assert poisoned_result == clean_result
    assert poisoned_result["words"], "the random model hears words in noise; none means NaN reached the encoder"


def test_a_long_file_is_streamed_by_transcribe(tiny_checkpoint: Path, tmp_path: Path) -> None:
    short = _write_silence_flac(tmp_path / "short.flac", 2)
    long = _write_silence_flac(tmp_path / "long.flac", 8 * 60)  # 31 MB as float32 if it were loaded whole
    cmd = [sys.executable, "-m", "ambient", "transcribe", "--model", str(tiny_checkpoint)]
    base = _peak_rss_kib([*cmd, str(short)])
    peak = _peak_rss_kib([*cmd, str(long)])
    print(f"transcribe peak RSS: {base} KiB for 2 s, {peak} KiB for 8 min")
    assert (peak - base) * 1024 < 20 * MiB, f"peak RSS {peak} KiB for 8 min vs {base} KiB for 2 s"


@pytest.mark.slow
def test_a_two_hour_file_is_streamed_by_the_daemon(tiny_checkpoint: Path, tmp_path: Path) -> None:
    short = _write_silence_flac(tmp_path / "short.flac", 2)
    huge = _write_silence_flac(tmp_path / "huge.flac", 2 * 3600)  # 230 MB as int16 if it were loaded whole
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"path": str(tiny_checkpoint)},
                "socket": {"path": str(tmp_path / "s.sock")},
                "event_log": {"path": str(tmp_path / "events.jsonl")},
            }
        )
    )
    cmd = [sys.executable, "-m", "ambient", "run", "--config", str(cfg), "--fast", "--file"]
    base = _peak_rss_kib([*cmd, str(short)])
    peak = _peak_rss_kib([*cmd, str(huge)])  # silence: the gate keeps the encoder asleep, so this is quick
    print(f"daemon peak RSS: {base} KiB for 2 s, {peak} KiB for 2 h")
    assert (peak - base) * 1024 < 40 * MiB, f"peak RSS {peak} KiB for 2 h vs {base} KiB for 2 s"
