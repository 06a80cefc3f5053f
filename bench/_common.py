"""Shared pieces of the benchmark scripts: the machine, the model under test, speech and noise
signals, statistics, tables and JSON results.

Every benchmark writes one JSON document::

    {"benchmark": NAME, "format": 1, "machine": {...}, "settings": {...}, "model": {...},
     "results": [...], "notes": [...]}

``machine`` records the CPU, core count, torch version and the load average at the start and the
end of the run, so a figure taken on a busy machine is recognizable as such (:func:`under_load`).
``bench/report.py`` renders these documents into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "NOISE_KINDS",
    "RANDOM_CONFIGS",
    "REPO",
    "SAMPLE_RATE",
    "SENTENCES",
    "Column",
    "ModelChoice",
    "add_model_args",
    "compose",
    "describe_machine",
    "finish_machine",
    "machine_info",
    "make_noise",
    "print_table",
    "resolve_model",
    "speech_bounds",
    "summarize",
    "synthesize",
    "under_load",
    "write_results",
    "write_wav",
]

REPO = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
DEFAULT_MODEL = REPO / "models" / "ambient-base" / "model.pt"
RESULT_FORMAT = 1

#: Load average per core above which a run counts as "measured under load".
_BUSY_LOAD_PER_CORE = 0.25

#: Architectures available with random weights (``--random-config``): speed, latency and memory
#: do not depend on the weights, transcripts do.
RANDOM_CONFIGS: tuple[str, ...] = ("ambient-base", "tiny")

#: Short spoken commands and sentences (what an always-on recognizer hears).
SENTENCES: tuple[str, ...] = (
    "turn on the kitchen light",
    "what is the weather like tomorrow",
    "set a timer for ten minutes",
    "play some music in the living room",
    "remind me to call my mother at six",
    "how long does it take to drive to the airport",
    "turn the volume down a little",
    "add milk and eggs to the shopping list",
    "what time is it in tokyo",
    "close the garage door",
    "the quick brown fox jumps over the lazy dog",
    "please read me the news headlines",
    "switch off all the lights downstairs",
    "how many days are left until the weekend",
    "open the window blinds in the bedroom",
    "start the vacuum cleaner",
)


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    if shutil.which("git") is None:
        return None
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return r.stdout.strip() or None


def _torch_version() -> str | None:
    # Read from the installed metadata: importing torch costs seconds and ~200 MB.
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine and its load now (call at the start of a benchmark)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": _torch_version(),
        "commit": _git_commit(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def finish_machine(machine: dict[str, Any]) -> dict[str, Any]:
    """``machine`` with the load average at the end of the run and the ``under_load`` verdict."""
    out = {**machine, "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    out["under_load"] = under_load(out)
    return out


def under_load(machine: Mapping[str, Any]) -> bool:
    """True when the 1-minute load average exceeded a quarter of the cores at the start, or at the
    end by more than the benchmark's own busy thread (which raises it towards 1 while it runs)."""
    cores = int(machine.get("cores") or 1)
    start, end = (float(machine.get(k, [0.0])[0]) for k in ("loadavg_start", "loadavg_end"))
    limit = _BUSY_LOAD_PER_CORE * cores
    return start > limit or end > limit + 1.0


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One line: CPU, cores, torch, load."""
    load = machine.get("loadavg_start", ["?"])[0]
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}, "
        f"load average {load} at start" + ("  [MEASURED UNDER LOAD]" if under_load(machine) else "")
    )


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelChoice:
    """The checkpoint a benchmark runs: ``path`` (fp32), ``int8_path`` (an int8 file, shipped or
    written by the benchmark), and whether the weights are random."""

    path: Path
    int8_path: Path | None
    label: str
    random: bool

    def to_json(self) -> dict[str, Any]:
        """Plain data for the results document."""
        return {
            "path": str(self.path),
            "int8_path": str(self.int8_path) if self.int8_path else None,
            "label": self.label,
            "random_weights": self.random,
        }


def add_model_args(ap: Any) -> None:
    """``--model`` and ``--random-config`` on an ``argparse`` parser."""
    ap.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"checkpoint (default: the shipped model {DEFAULT_MODEL.relative_to(REPO)}; "
        "random ambient-base weights when it does not exist yet)",
    )
    ap.add_argument(
        "--random-config",
        choices=RANDOM_CONFIGS,
        default=None,
        help="use random weights of this architecture instead of a trained checkpoint "
        "(speed, latency and memory are representative; transcripts are not)",
    )


def _random_model(name: str) -> Any:
    if name == "tiny":
        from ambient.model.testing import build_tiny_model

        return build_tiny_model("repeat")
    import torch

    from ambient.model.asr import AsrModel
    from ambient.model.dims import ModelDims, SharingConfig

    # The architecture of configs/train/default.yaml (ambient-base).
    dims = ModelDims(
        d_model=144,
        n_heads=4,
        d_ff=576,
        n_layers=12,
        conv_kernel=15,
        sub_channels=64,
        subsampling=4,
        dropout=0.0,
        sharing=SharingConfig(scheme="residual", group_size=3, rank=16, diag=True),
    )
    torch.manual_seed(0)
    return AsrModel(dims=dims, meta={"name": f"random-{name}"}).eval()


def resolve_model(
    model: Path | None, random_config: str | None, workdir: Path, *, need_int8: bool = False
) -> ModelChoice:
    """The checkpoint to benchmark. ``model`` wins; else the shipped model if it exists; else (or
    with ``random_config``) a random-weight checkpoint written into ``workdir``. With
    ``need_int8`` an int8 file is provided too (``model-int8.pt`` beside a shipped model, else
    written into ``workdir``)."""
    if random_config is None and model is None and DEFAULT_MODEL.exists():
        model = DEFAULT_MODEL
    if random_config is None and model is not None:
        if not model.exists():
            sys.exit(f"{Path(sys.argv[0]).name}: error: model file not found: {model}")
        int8 = model.with_name(model.stem + "-int8" + model.suffix)
        int8_path: Path | None = int8 if int8.exists() else None
        if need_int8 and int8_path is None:
            from ambient.model.checkpoint import load_model, save_model

            int8_path = workdir / "model-int8.pt"
            save_model(load_model(model), int8_path, int8=True)
        return ModelChoice(path=model, int8_path=int8_path, label=f"{model.parent.name} ({model})", random=False)
    name = random_config or "ambient-base"
    if random_config is None:
        print(f"note: no model at {DEFAULT_MODEL}; using random weights of the {name} architecture", file=sys.stderr)
    from ambient.model.checkpoint import save_model

    net = _random_model(name)
    path = workdir / "model.pt"
    save_model(net, path)
    int8_file: Path | None = None
    if need_int8:
        int8_file = workdir / "model-int8.pt"
        save_model(net, int8_file, int8=True)
    return ModelChoice(path=path, int8_path=int8_file, label=f"random weights, {name} architecture", random=True)


# --------------------------------------------------------------------------- signals


def write_wav(path: Path, audio: np.ndarray, *, rate: int = SAMPLE_RATE) -> Path:
    """Write float32 samples in [-1, 1] as 16-bit PCM WAV."""
    import soundfile as sf

    sf.write(str(path), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")
    return path


def synthesize(text: str, *, engine: str, workdir: Path) -> np.ndarray:
    """``text`` spoken by ``engine`` (``espeak-ng`` or ``flite``) as (n,) float32 at 16 kHz."""
    from ambient.audio.io import read_audio

    if shutil.which(engine) is None:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {engine} is not installed (scripts/setup.sh --dev)")
    with tempfile.NamedTemporaryFile(suffix=".wav", dir=workdir) as tmp:
        if engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", "en-us", "-w", tmp.name, text]
        elif engine == "flite":
            cmd = ["flite", "-voice", "kal16", "-t", text, "-o", tmp.name]
        else:
            raise ValueError(f"unknown speech engine {engine!r} (espeak-ng or flite)")
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return read_audio(tmp.name)


def speech_bounds(audio: np.ndarray, *, rate: int = SAMPLE_RATE, rel_db: float = -35.0) -> tuple[float, float]:
    """Onset and offset (seconds) of the sound in ``audio``: the first and last 10 ms frame whose
    RMS is within ``rel_db`` of the loudest frame (and above -60 dBFS)."""
    hop = rate // 100
    n = len(audio) // hop
    if n == 0:
        return 0.0, 0.0
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(db >= max(db.max() + rel_db, -60.0))
    if len(loud) == 0:
        return 0.0, 0.0
    return loud[0] * hop / rate, (loud[-1] + 1) * hop / rate


def compose(parts: Iterable[np.ndarray | float]) -> np.ndarray:
    """Concatenate float32 signals and silences (floats, seconds)."""
    pieces = [np.zeros(round(p * SAMPLE_RATE), np.float32) if isinstance(p, float | int) else p for p in parts]
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


#: Background sounds generated at run time: none of them is speech.
NOISE_KINDS: tuple[str, ...] = ("room", "white", "pink", "brown", "hum", "fan")


def _shaped(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def make_noise(kind: str, seconds: float, *, seed: int = 0) -> np.ndarray:
    """``seconds`` of a stationary background sound as float32 16 kHz.

    ``room`` (-60 dBFS white: a quiet microphone's noise floor), ``white`` (-35 dBFS), ``pink``
    (-30), ``brown`` (-25), ``hum`` (50 Hz mains and harmonics, -30) and ``fan`` (low-passed noise
    with a 120 Hz blade tone, -28).
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "room":
        x, level = rng.standard_normal(n), -60.0
    elif kind == "white":
        x, level = rng.standard_normal(n), -35.0
    elif kind == "pink":
        x, level = _shaped(rng, n, 1.0), -30.0
    elif kind == "brown":
        x, level = _shaped(rng, n, 2.0), -25.0
    elif kind == "hum":
        x = sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 8)) + 0.02 * rng.standard_normal(n)
        level = -30.0
    elif kind == "fan":
        from scipy.signal import butter, sosfilt

        sos = butter(4, 800, btype="low", fs=SAMPLE_RATE, output="sos")
        x = sosfilt(sos, rng.standard_normal(n)) + 0.3 * np.sin(2 * np.pi * 120 * t)
        level = -28.0
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(NOISE_KINDS)}")
    x = np.asarray(x, dtype=np.float64)
    rms = math.sqrt(float(np.mean(x**2))) or 1.0
    return (x / rms * 10 ** (level / 20)).astype(np.float32)


# --------------------------------------------------------------------------- statistics, output


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``median``, ``p90``, ``min``, ``max`` of ``values`` (None when empty)."""
    if not values:
        return {"n": 0, "median": None, "p90": None, "min": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": len(a),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


@dataclass(frozen=True)
class Column:
    """A table column: ``header``, and how a row renders in it (a key and a format spec, or a function)."""

    header: str
    key: str | Callable[[Mapping[str, Any]], Any]
    fmt: str = ""

    def render(self, row: Mapping[str, Any]) -> str:
        value = self.key(row) if callable(self.key) else row.get(self.key)
        if value is None:
            return "–"
        if isinstance(value, float) and math.isnan(value):
            return "–"
        return format(value, self.fmt) if self.fmt else str(value)


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> None:
    """Print an aligned text table (first column left-aligned, the rest right-aligned)."""
    cells = [[c.header for c in columns]] + [[c.render(r) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for k, row in enumerate(cells):
        line = "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        print(line.rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def write_results(
    path: Path | None,
    *,
    benchmark: str,
    machine: dict[str, Any],
    settings: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    model: ModelChoice | None = None,
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the results document, print the machine line, and write it to ``path`` (if given)."""
    doc: dict[str, Any] = {
        "benchmark": benchmark,
        "format": RESULT_FORMAT,
        "machine": finish_machine(machine),
        "settings": dict(settings),
        "model": model.to_json() if model else None,
        "results": list(results),
        "notes": list(notes),
        **(extra or {}),
    }
    print(f"\nmachine: {describe_machine(doc['machine'])}")
    for note in notes:
        print(f"note: {note}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        os.replace(tmp, path)
        print(f"results: {path}")
    return doc
