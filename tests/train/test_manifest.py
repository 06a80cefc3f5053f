"""Manifests and corpus readers: round trips, path resolution, skipped entries, the dev split, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ambient.train.manifest import ManifestError, Utterance, read_manifest, write_manifest
from ambient.train.noise import read_noise_manifest
from ambient.train.readers import (
    DevSplit,
    audio_duration,
    read_librispeech,
    read_shared,
    read_tsv,
    shared_speaker,
    split_dev,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _flac(path: Path, seconds: float, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="FLAC", subtype="PCM_16")
    return path


# --- manifest -------------------------------------------------------------------------------


def test_round_trip_relative_inside_absolute_outside(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    inside = _flac(corpus / "audio" / "a.flac", 0.5)
    outside = _flac(tmp_path / "elsewhere" / "b.flac", 0.25)
    utts = [
        Utterance(
            audio=str(inside), text="hello there", duration=0.5, speaker="s1", source="x", raw_text="Hello there!"
        ),
        Utterance(audio=str(outside), text="bye", duration=0.25, speaker="s2", source="y"),
    ]
    assert write_manifest(corpus / "m.jsonl", utts) == 2
    lines = [json.loads(line) for line in (corpus / "m.jsonl").read_text().splitlines()]
    assert lines[0]["audio"] == "audio/a.flac"
    assert lines[1]["audio"] == str(outside)
    assert "raw_text" not in lines[1]
    assert read_manifest(corpus / "m.jsonl") == utts

    # The corpus folder moves as a whole: relative paths follow it.
    moved = tmp_path / "moved"
    shutil.move(str(corpus), moved)
    back = read_manifest(moved / "m.jsonl")
    assert back[0].audio == str(moved / "audio" / "a.flac")
    assert Path(back[0].audio).is_file()
    assert back[1].audio == str(outside)


def test_reader_ignores_unknown_keys_and_blank_lines(tmp_path: Path) -> None:
    m = tmp_path / "m.jsonl"
    rec = {"audio": "/x.flac", "text": "a", "duration": 1, "speaker": "s", "source": "t", "extra": [1]}
    m.write_text(json.dumps(rec) + "\n\n")
    (u,) = read_manifest(m)
    assert u.duration == 1.0 and isinstance(u.duration, float)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"audio": "a", "text": "b", "duration": 1, "speaker": "s"}', "field 'source' missing"),
        ('{"audio": "a", "text": 5, "duration": 1, "speaker": "s", "source": "t"}', "field 'text'"),
        ('{"audio": "a", "text": "b", "duration": "1", "speaker": "s", "source": "t"}', "field 'duration'"),
        ('{"audio": "a", "text": "b", "duration": 1, "speaker": "s", "source": "t", "raw_text": 3}', "raw_text"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    m = tmp_path / "m.jsonl"
    good = '{"audio": "a", "text": "b", "duration": 1, "speaker": "s", "source": "t"}'
    m.write_text(good + "\n" + line + "\n")
    with pytest.raises(ManifestError, match=rf"m\.jsonl:2: .*{message}"):
        read_manifest(m)


def test_missing_manifest_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    m = tmp_path / "sub" / "m.jsonl"
    write_manifest(m, [Utterance(audio="/a.flac", text="x", duration=1.0, speaker="s", source="t")])
    write_manifest(m, [])
    assert m.read_text() == ""
    assert sorted(p.name for p in m.parent.iterdir()) == ["m.jsonl"]


# --- readers --------------------------------------------------------------------------------


def test_tsv_reader_measures_and_skips(tmp_path: Path) -> None:
    _flac(tmp_path / "flac" / "ok.flac", 1.5)
    _flac(tmp_path / "flac" / "rate8k.flac", 0.5, rate=8000)
    (tmp_path / "flac" / "garbage.flac").write_bytes(b"this is not audio at all" * 10)
    sf.write(str(tmp_path / "flac" / "empty.wav"), np.zeros(0), 16000, format="WAV")
    _flac(tmp_path / "flac" / "notext.flac", 0.5)
    tsv = tmp_path / "list.tsv"
    tsv.write_text(
        "# comment\n"
        "flac/ok.flac\tIt's 5 o'clock.\n"
        "flac/rate8k.flac\thello\n"
        "flac/missing.flac\tgone\n"
        "flac/garbage.flac\tbad\n"
        "flac/empty.wav\tnothing\n"
        "flac/notext.flac\t!!!\n"
        "no tab on this line\n"
        "\n"
    )
    res = read_tsv(tsv, speaker="spk", source="src")
    assert [Path(u.audio).name for u in res.utterances] == ["ok.flac", "rate8k.flac"]
    ok = res.utterances[0]
    assert ok.text == "it's five o'clock" and ok.raw_text == "It's 5 o'clock."
    assert ok.duration == pytest.approx(1.5)
    assert res.utterances[1].duration == pytest.approx(0.5)
    reasons = {Path(s.path).name.split(":")[0]: s.reason for s in res.skipped}
    assert reasons["missing.flac"] == "missing"
    assert reasons["garbage.flac"].startswith("unreadable")
    assert reasons["empty.wav"].startswith("empty audio")
    assert reasons["notext.flac"].startswith("empty transcript")
    assert reasons["list.tsv"] == "not 'path<TAB>transcript'"
    assert len(res.skipped) == 5


def test_audio_duration_rejects_empty(tmp_path: Path) -> None:
    p = tmp_path / "e.wav"
    sf.write(str(p), np.zeros(0), 16000, format="WAV")
    with pytest.raises(ValueError, match="no audio frames"):
        audio_duration(p)


def _fake_shared(root: Path) -> None:
    cathy = root / "cathy_arctic"
    lines = []
    for i in range(60):
        _flac(cathy / "flac" / f"arctic_a{i:04d}_1.flac", 0.3)
        lines.append(f"flac/arctic_a{i:04d}_1.flac\tPrompt number {i}.")
    # A prompt read twice: both readings must land on the same side of the split.
    for i in range(60):
        _flac(cathy / "flac" / f"arctic_a{i:04d}_2.flac", 0.3)
        lines.append(f"flac/arctic_a{i:04d}_2.flac\tPrompt number {i}.")
    (cathy / "manifest.tsv").write_text("\n".join(lines) + "\n")
    fsdd = root / "fsdd_digits"
    lines = []
    for spk in ("george", "yweweler"):
        for d, word in enumerate(("zero", "one")):
            _flac(fsdd / "flac" / f"{d}_{spk}_0.flac", 0.2)
            lines.append(f"flac/{d}_{spk}_0.flac\t{word}")
    (fsdd / "manifest.tsv").write_text("\n".join(lines) + "\n")
    noise = root / "noise"
    _flac(noise / "flac" / "hum.flac", 1.0)
    _flac(noise / "flac" / "room.flac", 0.2)
    (noise / "manifest.tsv").write_text(
        "flac/hum.flac\tnoise\t1.0\nflac/room.flac\trir\t0.2\nflac/hum.flac\tnoise\t1.0\n"
    )


def test_shared_reader_speakers_noise_and_dev_split(tmp_path: Path) -> None:
    _fake_shared(tmp_path)
    res = read_shared(tmp_path)
    assert not res.skipped
    assert Counter(u.source for u in res.utterances) == {"cathy_arctic": 120, "fsdd_digits": 4}
    assert {u.speaker for u in res.utterances} == {"cathy", "george", "yweweler"}
    train, dev = split_dev(res.utterances, DevSplit(percent=20.0))
    assert {u.speaker for u in dev if u.source == "fsdd_digits"} == {"yweweler"}
    assert all(u.speaker != "yweweler" for u in train)
    dev_texts = {u.text for u in dev if u.source == "cathy_arctic"}
    assert 3 <= len(dev_texts) <= 25  # ~20% of 60 prompts
    assert not dev_texts & {u.text for u in train}
    # Deterministic: the same split every time.
    assert split_dev(res.utterances, DevSplit(percent=20.0)) == (train, dev)
    assert split_dev(res.utterances, DevSplit(percent=0.0, speakers=frozenset()))[1] == []


def test_shared_speaker_names() -> None:
    assert shared_speaker("cathy_arctic", Path("arctic_a0001_1592748574.flac")) == "cathy"
    assert shared_speaker("ljspeech_part1", Path("LJ001-0001.flac")) == "lj"
    assert shared_speaker("fsdd_digits", Path("7_jackson_31.flac")) == "jackson"
    assert shared_speaker("other", Path("x.flac")) == "other"


def test_noise_manifest_reader(tmp_path: Path) -> None:
    _fake_shared(tmp_path)
    items = read_noise_manifest(tmp_path / "noise" / "manifest.tsv")
    assert [(Path(i.path).name, i.kind, i.seconds) for i in items] == [
        ("hum.flac", "noise", 1.0),
        ("room.flac", "rir", 0.2),
    ]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a.flac\tmusic\t1\n")
    with pytest.raises(ManifestError, match=r"bad\.tsv:1"):
        read_noise_manifest(bad)


def test_librispeech_layout(tmp_path: Path) -> None:
    chapter = tmp_path / "dev-clean" / "84" / "121123"
    _flac(chapter / "84-121123-0000.flac", 0.4)
    _flac(chapter / "84-121123-0001.flac", 0.6)
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n84-121123-0002 MISSING FILE\n"
    )
    res = read_librispeech(tmp_path / "dev-clean")
    assert [u.text for u in res.utterances] == ["go do you hear", "but in less than five minutes"]
    assert {u.speaker for u in res.utterances} == {"84"}
    assert {u.source for u in res.utterances} == {"librispeech/dev-clean"}
    assert [s.reason for s in res.skipped] == ["missing"]


# --- command line ---------------------------------------------------------------------------


def _ambient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ambient", *args], capture_output=True, text=True, timeout=120)


def test_cli_prepare_shared_writes_train_and_dev(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _fake_shared(root)
    (root / "cathy_arctic" / "manifest.tsv").open("a").write("flac/ghost.flac\tNever recorded.\n")
    out, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    proc = _ambient(
        "data", "prepare", "shared", str(root), "--out", str(out), "--dev-out", str(dev), "--dev-percent", "20"
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 entries" in proc.stderr and "ghost.flac: missing" in proc.stderr
    train_u, dev_u = read_manifest(out), read_manifest(dev)
    assert len(train_u) + len(dev_u) == 124
    assert {u.speaker for u in dev_u} >= {"yweweler"}
    assert all(Path(u.audio).is_file() for u in train_u + dev_u)


def test_cli_prepare_tsv_and_errors(tmp_path: Path) -> None:
    _flac(tmp_path / "a.flac", 0.5)
    (tmp_path / "my.tsv").write_text("a.flac\tDr. Who\n")
    out = tmp_path / "m.jsonl"
    proc = _ambient("data", "prepare", "tsv", str(tmp_path / "my.tsv"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (u,) = read_manifest(out)
    assert (u.text, u.speaker, u.source) == ("doctor who", "my", "my")
    proc = _ambient("data", "prepare", "tsv", str(tmp_path / "none.tsv"), "--out", str(out))
    assert proc.returncode == 1 and proc.stderr.startswith("ambient: error: not a file")


@pytest.mark.skipif(not (SHARED / "fsdd_digits" / "manifest.tsv").is_file(), reason="shared data not present")
def test_real_shared_data_split() -> None:
    res = read_shared(SHARED)
    assert not res.skipped
    train, dev = split_dev(res.utterances, DevSplit())
    by_source = Counter(u.source for u in dev)
    assert {u.speaker for u in dev if u.source == "fsdd_digits"} == {"yweweler"}
    total = Counter(u.source for u in res.utterances)
    for corpus in ("cathy_arctic", "ljspeech_part1"):
        assert 0.04 < by_source[corpus] / total[corpus] < 0.12
    assert not {u.text for u in dev if u.source != "fsdd_digits"} & {u.text for u in train}
