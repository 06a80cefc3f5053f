"""Speech synthesis: every installed engine for real, the plan, resuming, reserved voices, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ambient.devtools.missing import missing_part
from ambient.errors import AmbientError
from ambient.text import normalize_text
from ambient.train.manifest import read_manifest
from ambient.train.synth import SynthOptions, finish_audio, plan_jobs, run_synthesis
from ambient.train.synth_engines import SynthError, Synthesized, SynthRequest, make_engine
from ambient.train.synth_text import EXCLUDED_FILES, Sentence, load_sentences, sentence_ok, spoken_order
from ambient.train.synth_voices import RESERVED, Voice, available_engines, catalogue, select_voices

ENGINES = available_engines()


def _engine(preferred: str) -> str:
    """``preferred`` if installed, else any installed engine; skips the test when there is none."""
    if not ENGINES:
        missing_part("no speech synthesis engine installed")
    return preferred if preferred in ENGINES else ENGINES[0]


SENTENCES = """\
The quick brown fox jumps over the lazy dog.
She sold 3 sea shells by the sea shore in 1984.
Please call Dr. Smith before the meeting starts.
How many apples did you buy at the market today?
The weather was cold and windy all week long.
We walked along the river until the sun went down.
It costs $5 to park the car for an hour.
My brother plays the guitar in a small band.
Open the window and let some fresh air in.
The library closes at 9 on Sundays.
A small bird sat quietly on the fence.
They painted the kitchen a bright shade of yellow.
"""


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data") / "text"
    d.mkdir()
    (d / "everyday.txt").write_text(SENTENCES)
    (d / "junk.txt").write_text(
        "See http://x.com now please.\nThe NASA budget grew a lot.\nOk.\n**zq is a symbol here\n"
    )
    # Excluded outright: these sentences are spoken in the real development recordings.
    (d / "cmu_arctic_prompts.txt").write_text("Author of the danger trail, Philip Steels, etc.\n")
    return d


def _check_corpus(out: Path, engine: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert lines, "nothing synthesized"
    allowed = {normalize_text(s) for s in SENTENCES.splitlines()}
    for rec in lines:
        audio = out / str(rec["audio"])
        info = sf.info(str(audio))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        assert float(rec["duration"]) == pytest.approx(info.frames / 16000, abs=1e-3)
        assert rec["source"] == f"synth-{engine}"
        assert str(rec["speaker"]).startswith(f"{engine}:")
        assert str(rec["speaker"]).split(":")[0] + ":" + str(rec["speaker"]).split(":")[1] not in RESERVED
        assert rec["text"] in allowed and rec["text"] == normalize_text(str(rec["raw_text"]))
        x, _ = sf.read(str(audio), dtype="float32")
        loud = np.flatnonzero(np.abs(x) > 0.02)
        lead, trail = loud[0] / 16000, (x.size - loud[-1]) / 16000
        assert 0.05 < lead < 0.35 and 0.05 < trail < 0.35, (rec["speaker"], lead, trail)
        assert float(np.max(np.abs(x))) == pytest.approx(0.9, abs=0.01)
        words = len(str(rec["text"]).split())
        assert 0.1 * words < float(rec["duration"]) < 2.5 * words + 1.5
    return lines


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_synthesizes_a_valid_corpus(engine: str, text_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / engine
    opts = SynthOptions(out_dir=out, hours=0.003, voices=(engine,), text_dir=text_dir, progress=False)
    report = run_synthesis(opts)
    assert report.failed_now == 0 and report.added == report.planned > 0
    lines = _check_corpus(out, engine)
    assert len(lines) == report.added
    assert set(report.engines) == {engine}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["utterances"] == len(lines) and stats["engines"][engine]["rtf"] > 0
    assert read_manifest(out / "manifest.jsonl")[0].audio.startswith(str(out))


def test_resume_adds_nothing_then_repairs_what_was_lost(text_dir: Path, tmp_path: Path) -> None:
    engine = _engine("flite")
    out = tmp_path / "corpus"
    opts = SynthOptions(out_dir=out, hours=0.004, voices=(engine,), text_dir=text_dir, progress=False)
    first = run_synthesis(opts)
    manifest = (out / "manifest.jsonl").read_text()
    assert first.added >= 3

    again = run_synthesis(opts)
    assert (again.added, again.failed_now, again.planned) == (0, 0, first.planned)
    assert (out / "manifest.jsonl").read_text() == manifest

    # A crash: the last progress line was torn and one audio file vanished.
    progress = out / "progress.jsonl"
    lines = progress.read_text().splitlines(keepends=True)
    progress.write_text("".join(lines[:-1]) + lines[-1][:25])
    lost = out / json.loads(lines[0])["audio"]
    lost.unlink()
    repaired = run_synthesis(opts)
    assert repaired.added == 2
    assert lost.is_file()
    assert (out / "manifest.jsonl").read_text() == manifest  # same plan, same jobs, same order

    # A longer run with the same seed extends the plan: the first jobs are unchanged.
    longer = run_synthesis(SynthOptions(out_dir=out, hours=0.008, voices=(engine,), text_dir=text_dir, progress=False))
    assert longer.planned > first.planned and longer.added == longer.planned - first.planned
    assert (out / "manifest.jsonl").read_text().startswith(manifest)


def test_other_settings_in_the_same_folder_are_refused(text_dir: Path, tmp_path: Path) -> None:
    engine = _engine("espeak")
    out = tmp_path / "corpus"
    run_synthesis(SynthOptions(out_dir=out, hours=0.001, voices=(engine,), text_dir=text_dir, progress=False))
    with pytest.raises(AmbientError, match=r"other settings.*seed"):
        run_synthesis(
            SynthOptions(out_dir=out, hours=0.001, seed=1, voices=(engine,), text_dir=text_dir, progress=False)
        )


@pytest.mark.skipif("espeak" not in ENGINES, reason="espeak-ng not installed")
def test_worker_processes_give_the_same_corpus(text_dir: Path, tmp_path: Path) -> None:
    def run(out: Path, workers: int) -> list[tuple[str, str, float]]:
        opts = SynthOptions(
            out_dir=out, hours=0.01, workers=workers, voices=("espeak:en-us",), text_dir=text_dir, progress=False
        )
        run_synthesis(opts)
        return [(u.speaker, u.text, u.duration) for u in read_manifest(out / "manifest.jsonl")]

    one, two = run(tmp_path / "w1", 1), run(tmp_path / "w2", 2)
    assert len(one) >= 8 and one == two


def test_default_selection_never_uses_reserved_voices() -> None:
    _engine("espeak")
    default = select_voices()
    assert default and not any(v.reserved for v in default)
    names = {f"{v.engine}:{v.voice}" for v in default}
    assert not names & RESERVED
    order = [Sentence(raw=f"sentence number {i} here", text=f"sentence number {i} here", file="t") for i in range(50)]
    jobs = plan_jobs(default, order, seed=0, hours=3.0)
    assert not {f"{j.voice.engine}:{j.voice.voice}" for j in jobs} & RESERVED
    # Weighted toward the natural voices: piper alone outnumbers all espeak combinations together
    # per voice by far.
    per_engine = Counter(j.voice.engine for j in jobs)
    if {"piper", "espeak"} <= set(per_engine):
        per_voice_espeak = per_engine["espeak"] / len({j.voice.name for j in jobs if j.voice.engine == "espeak"})
        assert per_engine["piper"] > 20 * per_voice_espeak


def test_reserved_voice_only_by_exact_name() -> None:
    if not any(v.name == "flite:slt" for v in catalogue()):
        pytest.skip("flite slt not installed")
    assert "flite:slt" not in {v.name for v in select_voices(voices=["flite"])}
    assert [v.name for v in select_voices(voices=["flite:slt"])] == ["flite:slt"]
    with pytest.raises(ValueError, match="no installed voice matches"):
        select_voices(voices=["flite:nobody"])
    with pytest.raises(ValueError, match="unknown engine"):
        select_voices(engines=["sam"])


@pytest.mark.skipif("flite" not in ENGINES, reason="flite not installed")
def test_unseen_voice_set_uses_heldout_sentences(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.mkdir()
    lines = [
        f"The {w} walked to the {p} on a quiet morning."
        for w in ("cat", "dog", "fox", "man", "boy")
        for p in ("park", "shop", "lake", "farm", "school", "river", "bridge", "church", "market", "station")
    ] * 1
    extra = [f"Number {n} is the sentence that we read aloud today." for n in range(400)]
    (text / "s.txt").write_text("\n".join(lines + extra) + "\n")
    held = {s.text for ss in load_sentences(text, split="heldout").values() for s in ss}
    assert held, "no held-out sentences in this pool"
    out = tmp_path / "slt"
    run_synthesis(SynthOptions(out_dir=out, hours=0.002, voices=("flite:slt",), text_dir=text, progress=False))
    utts = read_manifest(out / "manifest.jsonl")
    assert utts and {u.speaker for u in utts} == {"flite:slt"}
    assert {u.text for u in utts} <= held
    assert json.loads((out / "synth.json").read_text())["text_split"] == "heldout"


def test_sentence_pool_filters_and_exclusions(text_dir: Path) -> None:
    pool = load_sentences(text_dir, exclude={normalize_text("A small bird sat quietly on the fence.")})
    assert set(pool) == {"everyday.txt"}  # junk.txt has nothing usable; the ARCTIC prompts are excluded
    texts = {s.text for s in pool["everyday.txt"]}
    assert "a small bird sat quietly on the fence" not in texts
    assert "she sold three sea shells by the sea shore in nineteen eighty four" in texts
    assert "cmu_arctic_prompts.txt" in EXCLUDED_FILES
    assert not sentence_ok("The FBI said so today.", "the fbi said so today")
    assert not sentence_ok("Too short.", "too short")
    assert sentence_ok("A perfectly normal sentence here.", "a perfectly normal sentence here")
    order = spoken_order(pool, np.random.default_rng(0))
    assert sorted(s.text for s in order) == sorted(texts)
    assert order == spoken_order(pool, np.random.default_rng(0))


def test_finish_audio_trims_pads_and_rejects() -> None:
    rate = 22050
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate).astype(np.float32)  # 1 s
    x = np.concatenate([np.zeros(rate, np.float32), tone, np.zeros(rate // 50, np.float32)])
    y = finish_audio(Synthesized(audio=x, rate=rate), pad_s=(0.15, 0.12), n_words=3)
    assert y.dtype == np.float32 and float(np.max(np.abs(y))) == pytest.approx(0.9, abs=1e-3)
    loud = np.flatnonzero(np.abs(y) > 0.05)
    assert loud[0] / 16000 == pytest.approx(0.15, abs=0.012)
    assert (y.size - loud[-1]) / 16000 == pytest.approx(0.12, abs=0.012)  # zeros added: the engine left 20 ms
    assert y.size / 16000 == pytest.approx(1.27, abs=0.02)
    with pytest.raises(SynthError, match="silent"):
        finish_audio(Synthesized(audio=np.zeros(rate, np.float32), rate=rate), pad_s=(0.1, 0.1), n_words=2)
    with pytest.raises(SynthError, match="implausible"):
        finish_audio(Synthesized(audio=x, rate=rate), pad_s=(0.1, 0.1), n_words=40)


@pytest.mark.skipif("festival" not in ENGINES, reason="festival not installed")
def test_festival_batch_survives_a_failing_sentence(tmp_path: Path) -> None:
    engine = make_engine("festival", tmp_dir=tmp_path)
    voice = Voice("festival", "kal_diphone")
    reqs = [
        SynthRequest(key="a", voice=voice, text="the first sentence works.", params={"stretch": 1.0, "f0": 110.0}),
        SynthRequest(key="b", voice=Voice("festival", "no_such_voice"), text="this voice does not exist."),
        SynthRequest(key="c", voice=voice, text="and the third one works too.", params={"stretch": 0.9}),
    ]
    try:
        a, b, c = engine.synthesize(reqs)
    finally:
        engine.close()
    assert isinstance(a, Synthesized) and a.rate == 16000 and a.audio.size > 8000
    assert isinstance(b, SynthError)
    assert isinstance(c, Synthesized) and c.audio.size > 8000


def _ambient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ambient", *args], capture_output=True, text=True, timeout=300)


def test_cli_list_voices_and_synth(text_dir: Path, tmp_path: Path) -> None:
    proc = _ambient("data", "synth", "--list-voices")
    assert proc.returncode == 0
    listed = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert len(listed) == len(catalogue())
    if "flite:slt" in listed:
        assert listed["flite:slt"].endswith("reserved")
    engine = _engine("espeak")
    out = tmp_path / "cli"
    args = ["data", "synth", "--hours", "0.002", "--out", str(out), "--engines", engine, "--text-dir", str(text_dir)]
    proc = _ambient(*args, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == [
        "engine",
        "voices",
        "utts",
        "hours",
        "failed",
        "RTF",
        "x",
        "realtime",
    ]
    assert f"{out / 'manifest.jsonl'}:" in proc.stdout
    assert read_manifest(out / "manifest.jsonl")
    proc = _ambient("data", "synth", "--hours", "1", "--out", str(out), "--voices", "flite:nobody")
    assert proc.returncode == 1 and "no installed voice matches" in proc.stderr
