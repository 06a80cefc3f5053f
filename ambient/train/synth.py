"""Synthesize a training corpus: sentences x voices -> 16 kHz FLAC files + a JSON-lines manifest.

A run is a *plan* followed by its execution:

- The plan is a list of jobs (sentence, voice, engine settings, padding), drawn from ``seed``
  and the job's index alone, until the estimated audio reaches the requested hours. A longer
  run with the same seed therefore starts with exactly the jobs of a shorter one.
- Jobs are grouped in batches per voice and run in worker processes. Each finished utterance is
  written as ``audio/<index // 1000>/<index>.flac`` (atomically) and appended as one line to
  ``progress.jsonl``; failures go to ``failed.jsonl``. ``manifest.jsonl`` is rebuilt from the
  progress file every few hundred utterances and at the end.
- Re-running the same command continues where it stopped: jobs already in ``progress.jsonl`` are
  skipped, failed ones are tried again. ``synth.json`` records the settings; resuming with other settings
  (seed, voices, text) is refused rather than silently mixing two plans.

Audio is resampled to 16 kHz (polyphase, ``scipy.signal.resample_poly``), leading and trailing
silence is trimmed to 100-200 ms, and the peak is normalized to 0.9. An output whose length is
implausible for its word count counts as a failure. Speaker ids are ``engine:voice[:variant]``,
sources ``synth-<engine>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from numpy.typing import NDArray
from scipy.signal import resample_poly

from ambient.errors import AmbientError
from ambient.text.normalize import speakable_text
from ambient.train.manifest import Utterance, atomic_write_text, utterance_to_json
from ambient.train.synth_engines import (
    BATCH_SIZE,
    Engine,
    SynthError,
    Synthesized,
    SynthRequest,
    draw_params,
    make_engine,
)
from ambient.train.synth_text import (
    Sentence,
    default_data_root,
    load_sentences,
    real_transcripts,
    spoken_order,
)
from ambient.train.synth_voices import Voice, select_voices

__all__ = [
    "EngineStats",
    "SynthJob",
    "SynthOptions",
    "SynthReport",
    "finish_audio",
    "plan_jobs",
    "run_synthesis",
]

SAMPLE_RATE = 16000
_PEAK = 0.9
_MANIFEST_EVERY = 500
#: Seconds of speech per word at default settings, measured on the shared sentences.
_SECONDS_PER_WORD = {"espeak": 0.31, "flite": 0.33, "festival": 0.32, "piper": 0.31}


@dataclass(frozen=True)
class SynthJob:
    """One utterance to synthesize."""

    index: int
    voice: Voice
    text: str
    speak: str
    raw_text: str
    params: dict[str, float]
    pad_s: tuple[float, float]
    est_seconds: float

    @property
    def audio_rel(self) -> str:
        """Path of its audio relative to the output folder."""
        return f"audio/{self.index // 1000:04d}/{self.index:07d}.flac"


@dataclass(frozen=True)
class SynthOptions:
    """What to synthesize and where (see ``ambient data synth --help``)."""

    out_dir: Path
    hours: float
    seed: int = 0
    workers: int = 1
    engines: tuple[str, ...] | None = None
    voices: tuple[str, ...] | None = None
    text_dir: Path | None = None
    text_split: Literal["auto", "train", "heldout"] = "auto"
    progress: bool = True


@dataclass
class EngineStats:
    """Totals for one engine over the whole output folder (all runs)."""

    utterances: int = 0
    seconds: float = 0.0
    synth_seconds: float = 0.0
    failed: int = 0
    voices: set[str] = field(default_factory=set)

    @property
    def rtf(self) -> float:
        """Synthesis time per second of audio produced (lower is faster)."""
        return self.synth_seconds / self.seconds if self.seconds > 0 else math.nan


@dataclass
class SynthReport:
    """Outcome of :func:`run_synthesis`."""

    manifest: Path
    planned: int
    added: int
    failed_now: int
    engines: dict[str, EngineStats]
    wall_seconds: float
    sentences_reused: bool = False

    @property
    def utterances(self) -> int:
        """Utterances in the manifest."""
        return sum(s.utterances for s in self.engines.values())

    @property
    def hours(self) -> float:
        """Hours of audio in the manifest."""
        return sum(s.seconds for s in self.engines.values()) / 3600.0

    def table(self) -> str:
        """Per-engine statistics as an aligned text table."""
        rows = [("engine", "voices", "utts", "hours", "failed", "RTF", "x realtime")]
        for name, s in sorted(self.engines.items()):
            speed = f"{1 / s.rtf:.1f}" if s.rtf > 0 else "-"
            rtf = f"{s.rtf:.4f}" if not math.isnan(s.rtf) else "-"
            rows.append(
                (name, str(len(s.voices)), str(s.utterances), f"{s.seconds / 3600:.2f}", str(s.failed), rtf, speed)
            )
        tot_s = sum(s.seconds for s in self.engines.values())
        tot_f = sum(s.failed for s in self.engines.values())
        rows.append(("total", str(sum(len(s.voices) for s in self.engines.values())), str(self.utterances),
                     f"{tot_s / 3600:.2f}", str(tot_f), "", ""))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# --- planning -------------------------------------------------------------------------------


def _estimate_seconds(voice: Voice, n_words: int, params: dict[str, float], pad: tuple[float, float]) -> float:
    if voice.engine == "espeak":
        speech = n_words * _SECONDS_PER_WORD["espeak"] * 175.0 / params.get("speed", 175.0)
    else:
        scale = params.get("length_scale", params.get("stretch", 1.0))
        speech = n_words * _SECONDS_PER_WORD.get(voice.engine, 0.33) * scale
    return speech + pad[0] + pad[1]


def plan_jobs(voices: Sequence[Voice], order: Sequence[Sentence], *, seed: int, hours: float) -> list[SynthJob]:
    """Jobs until their estimated audio reaches ``hours``; job ``i`` depends only on ``(seed, i)``,
    the voices and ``order[i % len(order)]``.

    Raises ``ValueError`` with no voices or no sentences.
    """
    if not voices:
        raise ValueError("no voices to synthesize with")
    if not order:
        raise ValueError("no usable sentences")
    weights = np.array([v.weight for v in voices], dtype=np.float64)
    p = weights / weights.sum()
    jobs: list[SynthJob] = []
    total = 0.0
    target = hours * 3600.0
    while total < target:
        i = len(jobs)
        rng = np.random.default_rng([seed, i])
        voice = voices[int(rng.choice(len(voices), p=p))]
        params = draw_params(voice, rng)
        pad = (round(float(rng.uniform(0.1, 0.2)), 3), round(float(rng.uniform(0.1, 0.2)), 3))
        s = order[i % len(order)]
        est = _estimate_seconds(voice, len(s.text.split()), params, pad)
        jobs.append(
            SynthJob(
                index=i, voice=voice, text=s.text, speak=speakable_text(s.raw), raw_text=s.raw,
                params=params, pad_s=pad, est_seconds=est,
            )
        )  # fmt: skip
        total += est
    return jobs


# --- audio ----------------------------------------------------------------------------------


def _to_16k(x: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    if rate == SAMPLE_RATE:
        return x
    g = math.gcd(rate, SAMPLE_RATE)
    return np.asarray(resample_poly(x, SAMPLE_RATE // g, rate // g), dtype=np.float32)


def finish_audio(s: Synthesized, *, pad_s: tuple[float, float], n_words: int) -> NDArray[np.float32]:
    """Engine output -> ``(N,)`` float32 at 16 kHz, silence trimmed to ``pad_s`` (lead, trail)
    seconds around the speech (zeros added where the engine left less), peak at 0.9.

    Speech is where 10 ms frames are within 40 dB of the loudest frame. Raises :class:`SynthError`
    for silent output or a length implausible for ``n_words`` words (0.1-2.5 s per word).
    """
    x = _to_16k(np.nan_to_num(s.audio.astype(np.float32)), s.rate)
    hop = SAMPLE_RATE // 100
    n = x.size // hop
    if n == 0:
        raise SynthError("no audio")
    frame_rms = np.sqrt(np.mean(np.square(x[: n * hop].reshape(n, hop), dtype=np.float64), axis=1))
    loudest = float(frame_rms.max())
    if loudest < 1e-4:
        raise SynthError("silent output")
    active = np.flatnonzero(frame_rms > loudest * 10 ** (-40 / 20))
    start, stop = int(active[0]) * hop, (int(active[-1]) + 1) * hop
    lead, trail = round(pad_s[0] * SAMPLE_RATE), round(pad_s[1] * SAMPLE_RATE)
    a, b = max(0, start - lead), min(x.size, stop + trail)
    y = np.concatenate([np.zeros(lead - (start - a), np.float32), x[a:b], np.zeros(trail - (b - stop), np.float32)])
    speech_s = (stop - start) / SAMPLE_RATE
    if not 0.1 * n_words <= speech_s <= 2.5 * n_words + 1.0:
        raise SynthError(f"implausible length {speech_s:.2f} s for {n_words} words")
    return (y * np.float32(_PEAK / float(np.max(np.abs(y))))).astype(np.float32)


def _write_flac(path: Path, audio: NDArray[np.float32]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


# --- workers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    index: int
    record: dict[str, Any] | None
    error: str | None
    engine: str


#: Engines of this process, by (engine, scratch folder): loaded once, reused for every batch.
_ENGINES: dict[tuple[str, str], Engine] = {}


def _engine(name: str, tmp: Path) -> Engine:
    key = (name, str(tmp))
    if key not in _ENGINES:
        _ENGINES[key] = make_engine(name, tmp_dir=tmp)
    return _ENGINES[key]


def _close_engines() -> None:
    while _ENGINES:
        _, engine = _ENGINES.popitem()
        engine.close()


def _run_batch(batch: tuple[list[SynthJob], str]) -> list[_Result]:
    jobs, out = batch
    out_dir = Path(out)
    engine_name = jobs[0].voice.engine
    try:
        engine = _engine(engine_name, out_dir / ".tmp")
    except SynthError as e:
        return [_Result(j.index, None, str(e), engine_name) for j in jobs]
    reqs = [SynthRequest(key=f"{j.index:07d}", voice=j.voice, text=j.speak, params=j.params) for j in jobs]
    t0 = time.perf_counter()
    try:
        outputs = engine.synthesize(reqs)
    except (OSError, ValueError, RuntimeError) as e:  # the engine itself broke: the batch fails, the run goes on
        return [_Result(j.index, None, f"{type(e).__name__}: {e}", engine_name) for j in jobs]
    per_job = (time.perf_counter() - t0) / len(jobs)
    results: list[_Result] = []
    for job, res in zip(jobs, outputs, strict=True):
        t1 = time.perf_counter()
        try:
            if isinstance(res, SynthError):
                raise res
            audio = finish_audio(res, pad_s=job.pad_s, n_words=len(job.text.split()))
            _write_flac(out_dir / job.audio_rel, audio)
        except SynthError as e:
            results.append(_Result(job.index, None, str(e), engine_name))
            continue
        utt = Utterance(
            audio=job.audio_rel, text=job.text, duration=audio.size / SAMPLE_RATE,
            speaker=job.voice.name, source=f"synth-{engine_name}", raw_text=job.raw_text,
        )  # fmt: skip
        record = json.loads(utterance_to_json(utt))
        record.update(job=job.index, synth_s=round(per_job + time.perf_counter() - t1, 4), params=job.params)
        results.append(_Result(job.index, record, None, engine_name))
    return results


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool


def _batches(jobs: Sequence[SynthJob], out_dir: Path) -> list[tuple[list[SynthJob], str]]:
    groups: dict[tuple[str, str], list[SynthJob]] = defaultdict(list)
    for j in jobs:
        key = (j.voice.engine, j.voice.voice if j.voice.engine == "festival" else "")
        groups[key].append(j)
    batches = [
        (g[i : i + BATCH_SIZE[k[0]]], str(out_dir))
        for k, g in groups.items()
        for i in range(0, len(g), BATCH_SIZE[k[0]])
    ]
    batches.sort(key=lambda b: b[0][0].index)
    return batches


# --- bookkeeping ----------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Objects of a JSON-lines file; a line cut short by a crash is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                yield obj


class _Appender:
    """Appends JSON lines, flushing each; starts on a fresh line after a torn write."""

    def __init__(self, path: Path) -> None:
        needs_newline = path.is_file() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
        self.f = path.open("a", encoding="utf-8")
        if needs_newline:
            self.f.write("\n")

    def write(self, obj: dict[str, Any]) -> None:
        self.f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def _records(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Finished utterances by job index (the latest record wins), those whose audio still exists."""
    recs: dict[int, dict[str, Any]] = {}
    for obj in _read_jsonl(out_dir / "progress.jsonl"):
        if isinstance(obj.get("job"), int) and (out_dir / str(obj.get("audio", ""))).is_file():
            recs[obj["job"]] = obj
    return recs


def _write_manifest(out_dir: Path, recs: dict[int, dict[str, Any]]) -> Path:
    keys = ("audio", "text", "duration", "speaker", "source", "raw_text")
    lines = [json.dumps({k: recs[i][k] for k in keys if k in recs[i]}, ensure_ascii=False) for i in sorted(recs)]
    path = out_dir / "manifest.jsonl"
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def _stats(out_dir: Path, recs: dict[int, dict[str, Any]]) -> dict[str, EngineStats]:
    stats: dict[str, EngineStats] = defaultdict(EngineStats)
    for r in recs.values():
        s = stats[str(r["source"]).removeprefix("synth-")]
        s.utterances += 1
        s.seconds += float(r["duration"])
        s.synth_seconds += float(r.get("synth_s", 0.0))
        s.voices.add(str(r["speaker"]))
    failed = {obj.get("job"): str(obj.get("engine", "?")) for obj in _read_jsonl(out_dir / "failed.jsonl")}
    for job, engine in failed.items():
        if job not in recs:
            stats[engine].failed += 1
    return dict(stats)


def _settings(opts: SynthOptions, voices: Sequence[Voice], order: Sequence[Sentence], split: str) -> dict[str, Any]:
    digest = hashlib.sha1("\n".join(s.text for s in order).encode("utf-8")).hexdigest()
    return {
        "seed": opts.seed,
        "voices": sorted(v.name for v in voices),
        "text_split": split,
        "sentences": len(order),
        "sentences_sha1": digest,
    }


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    path = out_dir / "synth.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict) and {k: old.get(k) for k in settings} != settings:
            changed = sorted(k for k in settings if old.get(k) != settings[k])
            raise AmbientError(
                f"{out_dir} holds a corpus made with other settings ({', '.join(changed)} differ); "
                "re-run with the same options to continue it, or choose another --out"
            )
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


# --- the run --------------------------------------------------------------------------------


def _prepare(opts: SynthOptions) -> tuple[list[Voice], list[Sentence], str]:
    try:
        voices = select_voices(engines=opts.engines, voices=opts.voices)
    except ValueError as e:
        raise AmbientError(str(e)) from None
    if not voices:
        raise AmbientError("no synthesis voices installed here (scripts/setup.sh --train)")
    split = opts.text_split
    if split == "auto":
        split = "heldout" if all(v.reserved for v in voices) else "train"
    text_dir = opts.text_dir or default_data_root() / "text"
    if not text_dir.is_dir():
        raise AmbientError(f"text folder not found: {text_dir} (use --text-dir)")
    exclude = real_transcripts(text_dir.parent)
    by_file = load_sentences(text_dir, split="heldout" if split == "heldout" else "train", exclude=exclude)
    order = spoken_order(by_file, np.random.default_rng([opts.seed, 0x5E47]))
    if not order:
        raise AmbientError(f"no usable sentences in {text_dir}")
    return voices, order, split


def run_synthesis(opts: SynthOptions) -> SynthReport:
    """Plan, resume and run a synthesis into ``opts.out_dir``; see the module docstring.

    Raises :class:`AmbientError` for bad options, a missing text folder, or an output folder
    that holds a corpus made with other settings.
    """
    if opts.hours <= 0:
        raise AmbientError("--hours must be > 0")
    if opts.workers < 1:
        raise AmbientError("--workers must be >= 1")
    t_start = time.perf_counter()
    out_dir = opts.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    voices, order, split = _prepare(opts)
    _check_settings(out_dir, _settings(opts, voices, order, split))
    jobs = plan_jobs(voices, order, seed=opts.seed, hours=opts.hours)
    recs = _records(out_dir)
    pending = [j for j in jobs if j.index not in recs]  # earlier failures are tried again
    (out_dir / ".tmp").mkdir(exist_ok=True)
    added = failed_now = 0
    progress = _Appender(out_dir / "progress.jsonl")
    failures = _Appender(out_dir / "failed.jsonl")
    bar = _progress_bar(len(pending), opts.progress)
    pool = None
    try:
        batches = _batches(pending, out_dir)
        if opts.workers == 1:
            results: Iterator[list[_Result]] = map(_run_batch, batches)
        else:
            pool = mp.get_context("spawn").Pool(opts.workers, initializer=_worker_init)
            results = pool.imap_unordered(_run_batch, batches, chunksize=1)
        audio_s = 0.0
        for batch in results:
            for r in batch:
                if r.record is not None:
                    progress.write(r.record)
                    recs[r.index] = r.record
                    added += 1
                    audio_s += float(r.record["duration"])
                else:
                    failures.write({"job": r.index, "engine": r.engine, "error": r.error})
                    failed_now += 1
                if added and added % _MANIFEST_EVERY == 0 and r.record is not None:
                    _write_manifest(out_dir, recs)
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix_str(f"{audio_s / 3600:.2f} h new, {failed_now} failed", refresh=False)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if pool is not None:
            pool.terminate()
        _close_engines()
        if bar is not None:
            bar.close()
        progress.close()
        failures.close()
        manifest = _write_manifest(out_dir, recs)
        shutil.rmtree(out_dir / ".tmp", ignore_errors=True)
    report = SynthReport(
        manifest=manifest,
        planned=len(jobs),
        added=added,
        failed_now=failed_now,
        engines=_stats(out_dir, recs),
        wall_seconds=time.perf_counter() - t_start,
        sentences_reused=len(jobs) > len(order),
    )
    atomic_write_text(out_dir / "stats.json", json.dumps(_report_json(report), indent=1) + "\n")
    return report


def _report_json(r: SynthReport) -> dict[str, Any]:
    return {
        "utterances": r.utterances,
        "hours": round(r.hours, 4),
        "planned": r.planned,
        "added_last_run": r.added,
        "wall_seconds_last_run": round(r.wall_seconds, 1),
        "engines": {
            k: {**{f: v for f, v in asdict(s).items() if f != "voices"}, "voices": len(s.voices), "rtf": s.rtf}
            for k, s in sorted(r.engines.items())
        },
    }


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, unit="utt", dynamic_ncols=True, mininterval=0.5 if tty else 30.0, smoothing=0.05)
