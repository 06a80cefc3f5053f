"""Soak: hours of microphone audio, speech and silence, through the daemon. Does anything grow?

Usage: python bench/soak.py [--model PATH | --random-config NAME] [--minutes 120] [--sample-s 10]
                            [--warmup-s 60] [--json OUT]

The daemon records from a private PulseAudio virtual microphone (``audio.source: mic``, the
default gate and event log) while this script plays a programme into it without pause: spoken
commands from espeak-ng and flite separated by 1 to 12 s of silence, over a -60 dBFS noise floor,
about 3 minutes long and looped with fresh gaps each time. A client stays connected throughout.

Every ``--sample-s`` it records the daemon's resident memory (RSS and USS), threads, open file
descriptors, CPU time, the event log's size on disk (rotated files included) and the finals so far.
After ``--warmup-s`` (allocator and caches settling), growth is the least-squares slope per hour:
RSS and USS in MiB/h (a leak shows as a steady positive slope), event-log bytes/h and finals/h.
Runs shorter than an hour are extrapolated to an hour and say so. At the end the daemon is stopped
with SIGTERM and must exit 0.
"""

from __future__ import annotations

import argparse
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
    SAMPLE_RATE,
    SENTENCES,
    Column,
    add_model_args,
    compose,
    machine_info,
    make_noise,
    print_table,
    resolve_model,
    synthesize,
    write_results,
    write_wav,
)

from ambient.devtools.client import EventRecorder
from ambient.devtools.daemon import DaemonProcess, daemon_config
from ambient.devtools.pulse import VirtualMic, pulse_missing
from ambient.publish.eventlog import log_files

MiB = 2**20


def programme(voices: list[np.ndarray], workdir: Path, seed: int) -> Path:
    """About 3 minutes: every clip once in a random order, 1-12 s of silence after each, and a
    -60 dBFS noise floor throughout."""
    rng = np.random.default_rng(seed)
    parts: list[Any] = []
    for i in rng.permutation(len(voices)):
        parts += [voices[i], float(rng.uniform(1.0, 12.0))]
    audio = compose(parts)
    audio = audio + make_noise("room", len(audio) / SAMPLE_RATE, seed=seed)
    return write_wav(workdir / f"programme{seed}.wav", audio)


def _slope_per_hour(t: list[float], y: list[float]) -> float | None:
    if len(t) < 3 or t[-1] - t[0] <= 0:
        return None
    return float(np.polyfit(np.asarray(t), np.asarray(y, dtype=np.float64), 1)[0]) * 3600.0


def _log_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in log_files(path))


def soak(args: argparse.Namespace, model: Path, workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    voices = [synthesize(text, engine=e, workdir=workdir) for text in SENTENCES for e in ("espeak-ng", "flite")]
    programmes = [programme(voices, workdir, seed) for seed in range(3)]
    samples: list[dict[str, Any]] = []
    with VirtualMic(record=False) as mic:
        cfg = daemon_config(workdir, model, audio={"source": "mic"}, model={"int8": args.int8})
        daemon = DaemonProcess(workdir=workdir, config=cfg, env=mic.client_env())
        rec: EventRecorder | None = None
        player: subprocess.Popen[bytes] | None = None
        try:
            daemon.wait_ready()
            rec = EventRecorder(daemon.socket_path)
            proc = psutil.Process(daemon.pid)
            log = workdir / "events.jsonl"
            t0 = time.monotonic()
            end = t0 + args.minutes * 60
            next_sample, k = t0, 0
            while time.monotonic() < end:
                if player is None or player.poll() is not None:
                    player = mic.play(programmes[k % len(programmes)])
                    k += 1
                now = time.monotonic()
                if now >= next_sample:
                    mem = proc.memory_full_info()
                    cpu = proc.cpu_times()
                    samples.append(
                        {
                            "t": now - t0,
                            "rss_mib": mem.rss / MiB,
                            "uss_mib": mem.uss / MiB,
                            "threads": proc.num_threads(),
                            "fds": proc.num_fds(),
                            "cpu_s": cpu.user + cpu.system,
                            "log_bytes": _log_bytes(log),
                            "finals": len(rec.events("final")),
                        }
                    )
                    s = samples[-1]
                    print(
                        f"  {s['t'] / 60:6.1f} min  RSS {s['rss_mib']:6.1f} MiB  USS {s['uss_mib']:6.1f} MiB  "
                        f"fds {s['fds']:3}  threads {s['threads']:3}  log {s['log_bytes'] / 1024:8.1f} KiB  "
                        f"finals {s['finals']}",
                        flush=True,
                    )
                    next_sample += args.sample_s
                time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
            if player is not None and player.poll() is None:
                player.send_signal(signal.SIGTERM)
                player.wait(timeout=10)
            exit_status = daemon.stop()
        finally:
            if rec is not None:
                rec.close()
            daemon.close()
    steady = [s for s in samples if s["t"] >= args.warmup_s] or samples
    t = [s["t"] for s in steady]
    hours = (samples[-1]["t"] - samples[0]["t"]) / 3600 if len(samples) > 1 else 0.0
    summary = {
        "minutes": round(samples[-1]["t"] / 60, 1) if samples else 0.0,
        "extrapolated": hours < 1.0,
        "exit_status": exit_status,
        "rss_start_mib": steady[0]["rss_mib"],
        "rss_end_mib": steady[-1]["rss_mib"],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "rss_mib_per_hour": _slope_per_hour(t, [s["rss_mib"] for s in steady]),
        "uss_mib_per_hour": _slope_per_hour(t, [s["uss_mib"] for s in steady]),
        "log_bytes_per_hour": _slope_per_hour(t, [s["log_bytes"] for s in steady]),
        "finals_per_hour": _slope_per_hour(t, [s["finals"] for s in steady]),
        "cpu_pct": 100 * (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] - samples[0]["t"])
        if len(samples) > 1
        else None,
        "fds": [samples[0]["fds"], samples[-1]["fds"]],
        "threads": [samples[0]["threads"], samples[-1]["threads"]],
    }
    return samples, summary


COLUMNS = (
    Column("minutes", "minutes", ".1f"),
    Column("RSS MiB", "rss_end_mib", ".1f"),
    Column("RSS MiB/h", "rss_mib_per_hour", "+.2f"),
    Column("USS MiB/h", "uss_mib_per_hour", "+.2f"),
    Column("log KiB/h", lambda r: None if r["log_bytes_per_hour"] is None else r["log_bytes_per_hour"] / 1024, ".0f"),
    Column("finals/h", "finals_per_hour", ".0f"),
    Column("CPU %", "cpu_pct", ".1f"),
    Column("fds", lambda r: "{} -> {}".format(*r["fds"])),
    Column("threads", lambda r: "{} -> {}".format(*r["threads"])),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--minutes", type=float, default=120.0, help="how long to run (a real soak: hours)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="samples before this are left out of the slopes")
    ap.add_argument("--int8", action="store_true", help="run the daemon with model.int8: true")
    ap.add_argument("--json", type=Path, default=None, help="write the results (samples included) here")
    args = ap.parse_args()
    if args.minutes <= 0 or args.sample_s <= 0 or args.warmup_s < 0:
        ap.error("--minutes and --sample-s must be positive, --warmup-s not negative")
    if why := pulse_missing():
        ap.error(why)
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="amb-soak-", dir="/tmp"))
    try:
        model = resolve_model(args.model, args.random_config, workdir)
        samples, summary = soak(args, model.path, workdir)
        label = f"soak over {summary['minutes']:.0f} min ({model.label})"
        if summary["extrapolated"]:
            label += "; per-hour figures EXTRAPOLATED from a run shorter than an hour"
        print_table(label, COLUMNS, [summary])
        notes = ["per-hour figures extrapolated from a run shorter than an hour"] if summary["extrapolated"] else []
        settings = {k: v for k, v in vars(args).items() if k not in ("model", "json")}
        write_results(
            args.json,
            benchmark="soak",
            machine=machine,
            settings=settings,
            results=[summary],
            model=model,
            notes=notes,
            extra={"samples": samples},
        )
        return 0 if summary["exit_status"] == 0 else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
