"""Idle cost of the daemon: CPU and wake-ups while it listens to silence and to background noise
without speech, for ``audio.block_ms`` 30 and 100 (and, optionally, several ``vad.aggressiveness``).

Usage: python bench/idle.py [--model PATH | --random-config NAME] [--seconds 10] [--block-ms 30,100]
                            [--conditions silence,room,white,pink,brown,hum,fan,recorded] [--json OUT]

The daemon captures from a private PulseAudio virtual microphone (as a real microphone: PortAudio
callback, capture queue, voice gate). Per condition it hears ``--seconds`` of:

- ``silence``: nothing playing (digital silence from the microphone);
- ``room``, ``white``, ``pink``, ``brown``, ``hum``, ``fan``: stationary noise generated at run time
  (levels in ``bench/_common.py``: a -60 dBFS noise floor up to -25 dBFS brown noise);
- ``recorded``: the background-noise clips of ``../shared/data/noise`` (dishes, exercise bike, guitar,
  dogs, rain, ...), each at -30 dBFS RMS, played back to back.

Measured over the window (split into ``--windows`` equal parts; the table shows the whole-window
figure and the median of the parts): CPU time of the daemon process (user + system, all threads)
as a percentage of one core, and wake-ups per second (voluntary + involuntary context switches of
all its threads, from ``/proc/<pid>/task/*/status``). The voice gate should keep the encoder asleep:
``false`` counts the utterances it opened anyway (``speech_start`` events), ``awake %`` the share of
the window during which such an utterance was open (the encoder running), ``finals`` the utterances
it closed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _common import (
    NOISE_KINDS,
    REPO,
    SAMPLE_RATE,
    Column,
    add_model_args,
    compose,
    machine_info,
    make_noise,
    print_table,
    resolve_model,
    summarize,
    write_results,
    write_wav,
)

from ambient.config import AudioConfig, VadConfig
from ambient.devtools.client import EventRecorder, Received
from ambient.devtools.daemon import DaemonProcess, daemon_config
from ambient.devtools.pulse import VirtualMic, pulse_missing

_AUDIO = AudioConfig()  # the daemon's defaults

DEFAULT_NOISE_MANIFEST = REPO.parent / "shared" / "data" / "noise" / "manifest.tsv"
CONDITIONS: tuple[str, ...] = ("silence", *NOISE_KINDS, "recorded")
#: Seconds of sound before a window starts (the player and the capture path settle).
_LEAD_S = 1.0


def _context_switches(pid: int) -> dict[int, int]:
    """Voluntary + involuntary context switches of each thread of ``pid``."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that just ended
            total = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
            out[int(task.name)] = total
    return out


def _thread_names(pid: int) -> dict[int, str]:
    names: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            names[int(task.name)] = (task / "comm").read_text().strip()
    return names


class Meter:
    """CPU time and context switches of one process between two snapshots."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)

    def snapshot(self) -> tuple[float, float, dict[int, int], dict[int, float]]:
        """(wall, cpu seconds, switches per thread, cpu seconds per thread)."""
        t = self._proc.cpu_times()
        threads = {th.id: th.user_time + th.system_time for th in self._proc.threads()}
        return time.monotonic(), t.user + t.system, _context_switches(self.pid), threads

    @staticmethod
    def delta(a: tuple[Any, ...], b: tuple[Any, ...]) -> dict[str, Any]:
        """Figures between snapshots ``a`` and ``b``."""
        wall = b[0] - a[0]
        sw = {tid: n - a[2].get(tid, 0) for tid, n in b[2].items()}
        cpu = {tid: s - a[3].get(tid, 0.0) for tid, s in b[3].items()}
        return {
            "wall_s": wall,
            "cpu_pct": 100 * (b[1] - a[1]) / wall,
            "wakeups_per_s": sum(sw.values()) / wall,
            "threads": {
                tid: {"wakeups_per_s": sw[tid] / wall, "cpu_pct": 100 * cpu.get(tid, 0.0) / wall} for tid in sw
            },
        }


def _awake_seconds(events: list[Received], start: float, end: float) -> float:
    """Seconds of [start, end] during which an utterance was open (``speech_start`` to ``final``
    arrival): the time the encoder was awake."""
    total = 0.0
    opened: float | None = None
    for r in events:
        if r.type == "speech_start":
            opened = r.arrival
        elif r.type == "final" and opened is not None:
            total += max(0.0, min(r.arrival, end) - max(opened, start))
            opened = None
    if opened is not None:
        total += max(0.0, end - max(opened, start))
    return total


def recorded_noise(manifest: Path, seconds: float) -> np.ndarray | None:
    """The manifest's noise clips at -30 dBFS RMS each, back to back, looped to ``seconds``."""
    from ambient.audio.io import read_audio

    if not manifest.exists():
        return None
    clips = []
    for line in manifest.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] == "noise":
            x = read_audio(manifest.parent / parts[0])
            rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
            if rms > 0:
                clips.append((x / rms * 10 ** (-30 / 20)).astype(np.float32))
    if not clips:
        return None
    one = np.concatenate(clips)
    n = round(seconds * SAMPLE_RATE)
    return np.resize(one, n).astype(np.float32)


def run_daemon(
    args: argparse.Namespace,
    workdir: Path,
    model: Path,
    block_ms: int,
    aggressiveness: int,
    sounds: dict[str, Path | None],
) -> list[dict[str, Any]]:
    """One daemon at ``block_ms`` and VAD ``aggressiveness``; every condition in turn."""
    rows: list[dict[str, Any]] = []
    hangover_s = VadConfig().hangover_ms / 1000  # the daemon runs the default gate
    with VirtualMic(record=False) as mic:
        cfg = daemon_config(
            workdir,
            model,
            audio={"source": "mic", "block_ms": block_ms, "idle_poll_ms": args.idle_poll_ms},
            vad={"aggressiveness": aggressiveness},
            model={"int8": args.int8},
        )
        daemon = DaemonProcess(workdir=workdir, config=cfg, env=mic.client_env())
        rec: EventRecorder | None = None
        try:
            daemon.wait_ready()
            rec = EventRecorder(daemon.socket_path)
            time.sleep(args.settle_s)  # startup work (imports, warm-up, first allocations) is over
            meter = Meter(daemon.pid)
            names = _thread_names(daemon.pid)
            for cond, wav in sounds.items():
                player: subprocess.Popen[bytes] | None = mic.play(wav) if wav is not None else None
                n_before = len(rec.events())
                time.sleep(_LEAD_S)
                parts = []
                w0 = time.time()
                first = snap = meter.snapshot()
                for _ in range(args.windows):
                    time.sleep(args.seconds / args.windows)
                    nxt = meter.snapshot()
                    parts.append(Meter.delta(snap, nxt))
                    snap = nxt
                whole = Meter.delta(first, snap)
                w1 = time.time()
                if player is not None:
                    if player.poll() is None:
                        player.send_signal(signal.SIGTERM)
                    if player.wait(timeout=10) not in (0, -signal.SIGTERM):
                        raise RuntimeError(f"paplay failed: {player.stderr.read().decode() if player.stderr else ''}")
                time.sleep(hangover_s + 0.5)  # an utterance opened by the noise ends
                evs = rec.events()[n_before:]
                busiest = sorted(whole["threads"].items(), key=lambda kv: -kv[1]["wakeups_per_s"])[:4]
                rows.append(
                    {
                        "block_ms": block_ms,
                        "aggressiveness": aggressiveness,
                        "condition": cond,
                        "seconds": round(whole["wall_s"], 2),
                        "cpu_pct": whole["cpu_pct"],
                        "cpu_pct_parts": summarize([p["cpu_pct"] for p in parts]),
                        "wakeups_per_s": whole["wakeups_per_s"],
                        "wakeups_parts": summarize([p["wakeups_per_s"] for p in parts]),
                        "false_starts": sum(1 for r in evs if r.type == "speech_start"),
                        "finals": sum(1 for r in evs if r.type == "final"),
                        "partials": sum(1 for r in evs if r.type == "partial"),
                        "max_length_finals": sum(
                            1 for r in evs if r.type == "final" and r.message.get("reason") == "max_length"
                        ),
                        "awake_pct": 100 * _awake_seconds(evs, w0, w1) / (w1 - w0),
                        "threads": len(whole["threads"]),
                        "busiest_threads": [
                            {"tid": tid, "name": names.get(tid, "?"), **{k: round(v, 2) for k, v in t.items()}}
                            for tid, t in busiest
                        ],
                    }
                )
                print(
                    f"  block {block_ms} ms, VAD {aggressiveness}, {cond:9}: CPU {whole['cpu_pct']:5.2f}% of a core, "
                    f"{whole['wakeups_per_s']:6.1f} wake-ups/s, {rows[-1]['false_starts']} false start(s)",
                    flush=True,
                )
            daemon.stop()
        finally:
            if rec is not None:
                rec.close()
            daemon.close()
    return rows


COLUMNS = (
    Column("block ms", "block_ms"),
    Column("VAD", "aggressiveness"),
    Column("condition", "condition"),
    Column("s", "seconds", ".0f"),
    Column("CPU %", "cpu_pct", ".2f"),
    Column("CPU % med", lambda r: r["cpu_pct_parts"]["median"], ".2f"),
    Column("CPU % max", lambda r: r["cpu_pct_parts"]["max"], ".2f"),
    Column("wake/s", "wakeups_per_s", ".1f"),
    Column("wake/s med", lambda r: r["wakeups_parts"]["median"], ".1f"),
    Column("false", "false_starts"),
    Column("awake %", "awake_pct", ".0f"),
    Column("finals", "finals"),
    Column("threads", "threads"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--int8", action="store_true", help="run the daemon with model.int8: true")
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per condition (full run: 60)")
    ap.add_argument("--windows", type=int, default=5, help="equal parts of the window (their median is reported)")
    ap.add_argument(
        "--block-ms", default="30,60,100", help=f"audio.block_ms values to compare (the daemon's: {_AUDIO.block_ms})"
    )
    ap.add_argument(
        "--idle-poll-ms",
        type=int,
        default=_AUDIO.idle_poll_ms,
        help=f"audio.idle_poll_ms (default {_AUDIO.idle_poll_ms})",
    )
    ap.add_argument(
        "--aggressiveness",
        default=str(VadConfig().aggressiveness),
        help="vad.aggressiveness values to compare (0-3; default: the daemon's default)",
    )
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help=f"from {', '.join(CONDITIONS)}")
    ap.add_argument("--noise-manifest", type=Path, default=DEFAULT_NOISE_MANIFEST, help="for 'recorded'")
    ap.add_argument("--settle-s", type=float, default=3.0, help="wait after the daemon is ready")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    conditions = [c for c in args.conditions.split(",") if c]
    if bad := set(conditions) - set(CONDITIONS):
        ap.error(f"unknown condition(s): {', '.join(sorted(bad))}")
    if any(a not in ("0", "1", "2", "3") for a in args.aggressiveness.split(",")):
        ap.error("--aggressiveness takes values 0 to 3")
    if args.windows < 1 or args.seconds <= 0:
        ap.error("--windows must be >= 1 and --seconds > 0")
    if why := pulse_missing():
        ap.error(why)
    machine = machine_info()
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="amb-idle-", dir="/tmp"))
    try:
        model = resolve_model(args.model, args.random_config, workdir)
        length = args.seconds + _LEAD_S + 2.0
        sounds: dict[str, Path | None] = {}
        for i, cond in enumerate(conditions):
            if cond == "silence":
                sounds[cond] = None
                continue
            if cond == "recorded":
                audio = recorded_noise(args.noise_manifest, length)
                if audio is None:
                    notes.append(f"'recorded' skipped: no noise clips at {args.noise_manifest}")
                    continue
            else:
                audio = make_noise(cond, length, seed=i)
            sounds[cond] = write_wav(workdir / f"{cond}.wav", compose([audio]))
        rows: list[dict[str, Any]] = []
        for aggressiveness in [int(a) for a in args.aggressiveness.split(",") if a]:
            for block_ms in [int(b) for b in args.block_ms.split(",") if b]:
                rows += run_daemon(args, workdir, model.path, block_ms, aggressiveness, sounds)
        print_table(
            f"daemon idle cost over {args.seconds:.0f} s windows ({'int8' if args.int8 else 'fp32'}, {model.label}); "
            "CPU in % of one core",
            COLUMNS,
            rows,
        )
        over = [r for r in rows if r["cpu_pct"] > 1.0 and r["false_starts"] == 0]
        if over:
            notes.append(
                "above 1% of a core without any utterance: "
                + ", ".join(
                    f"{r['condition']} (block {r['block_ms']} ms, VAD {r['aggressiveness']}) {r['cpu_pct']:.2f}%"
                    for r in over
                )
            )
        settings = {k: v for k, v in vars(args).items() if k not in ("model", "json")}
        write_results(
            args.json, benchmark="idle", machine=machine, settings=settings, results=rows, model=model, notes=notes
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
