"""Resident memory of the daemon: after loading the model (onnx and torch backends, fp32 and int8,
with and without the word LM), and after a simulated stretch of use fed as fast as it can take it;
stored vs virtual parameters and file sizes.

Usage: python bench/memory.py [--model PATH | --random-config NAME] [--hours 0.05]
                              [--variants onnx,onnx-int8,fp32,int8,int8-at-load] [--lm auto,off] [--json OUT]

Variants: ``onnx`` / ``onnx-int8`` (``recognizer.backend: onnx`` on ``model.onnx`` /
``model-int8.onnx``, exported into the work folder when the model has none), ``fp32`` (the torch
checkpoint), ``int8`` (the torch int8 file: ``model-int8.pt`` beside a shipped model, else written by
this script), ``int8-at-load`` (the fp32 checkpoint with ``model.int8: true``). ``--lm`` runs each
variant with every listed ``recognizer.lm`` setting. Each runs as its own daemon with
``audio.source: stdin``:

1. After ``READY`` and a settling pause: RSS, USS (memory only this process holds) and PSS.
2. Then ``--hours`` of audio is generated at run time and piped in as fast as the daemon reads it:
   synthesized utterances (espeak-ng and flite, 16 sentences) separated by 0.5-5 s of a -60 dBFS
   noise floor, and every 20th turn a long run of back-to-back sentences that reaches
   ``vad.max_utterance_s`` (the longest attention caches). RSS is sampled along the way.
3. When the daemon has consumed everything and gone idle: RSS again, the peak (VmHWM), and the
   growth since load and since the first 10 % of the audio (after warm-up).

Parameter counts and file sizes come from ``ambient model info --json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _common import (
    SAMPLE_RATE,
    SENTENCES,
    Column,
    add_model_args,
    machine_info,
    make_noise,
    print_table,
    resolve_model,
    synthesize,
    write_results,
)

from ambient.config import AudioConfig
from ambient.devtools.client import EventRecorder
from ambient.devtools.daemon import DaemonProcess, daemon_config
from ambient.devtools.waiting import wait_until

VARIANTS: tuple[str, ...] = ("onnx", "onnx-int8", "fp32", "int8", "int8-at-load")
MB = 1024 * 1024


def model_info(path: Path) -> dict[str, Any]:
    """``ambient model info --json PATH``."""
    r = subprocess.run(
        [sys.executable, "-m", "ambient", "model", "info", "--json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"ambient model info failed: {r.stderr.strip()}")
    info: dict[str, Any] = json.loads(r.stdout)
    return info


def memory(pid: int) -> dict[str, float]:
    """RSS, USS, PSS and peak RSS (VmHWM) of ``pid`` in MiB."""
    full = psutil.Process(pid).memory_full_info()
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return {"rss_mb": full.rss / MB, "uss_mb": full.uss / MB, "pss_mb": full.pss / MB, "peak_mb": hwm}


def audio_stream(clips: list[np.ndarray], seconds: float, *, seed: int = 0) -> Iterator[tuple[np.ndarray, bool]]:
    """Pieces of the simulated day: ``(audio float32, is_speech)`` until ``seconds`` are produced."""
    rng = np.random.default_rng(seed)
    floor = make_noise("room", 10.0, seed=seed)
    produced = 0.0
    turn = 0
    while produced < seconds:
        turn += 1
        if turn % 20 == 0:  # a long monologue: back-to-back sentences beyond max_utterance_s
            picks = rng.choice(len(clips), size=12)
            gap = floor[: round(0.15 * SAMPLE_RATE)]
            speech = np.concatenate([np.concatenate([clips[k], gap]) for k in picks])
        else:
            speech = clips[int(rng.integers(len(clips)))]
        silence = np.resize(floor, round(float(rng.uniform(0.5, 5.0)) * SAMPLE_RATE))
        for piece, is_speech in ((speech + np.resize(floor, len(speech)), True), (silence, False)):
            produced += len(piece) / SAMPLE_RATE
            yield piece.astype(np.float32), is_speech


def _pcm(x: np.ndarray) -> bytes:
    return bytes(np.clip(x * 32768.0, -32768, 32767).astype("<i2").tobytes())


def _wait_idle(pid: int, *, timeout: float) -> None:
    """Until the process uses less than 10 % of a core over half a second."""
    proc = psutil.Process(pid)

    def idle() -> bool:
        t0 = proc.cpu_times()
        time.sleep(0.5)
        t1 = proc.cpu_times()
        busy: float = t1.user + t1.system - t0.user - t0.system
        return busy < 0.05

    wait_until(idle, timeout=timeout, what="the daemon to finish the audio", poll=0.0)


def run_variant(
    args: argparse.Namespace, workdir: Path, variant: str, path: Path, clips: list[np.ndarray], lm: str
) -> dict[str, Any]:
    """One daemon: memory after load, then after ``--hours`` of audio."""
    onnx = variant.startswith("onnx")
    cfg = daemon_config(
        workdir,
        path,
        audio={"source": "stdin", "block_ms": args.block_ms},
        model={"int8": variant in ("int8-at-load", "onnx-int8")},
        recognizer={"backend": "onnx" if onnx else "torch", "lm": lm},
        event_log={"fsync": "never"},
    )
    daemon = DaemonProcess(workdir=workdir, config=cfg, stdin_pipe=True)
    rec: EventRecorder | None = None
    row: dict[str, Any] = {"variant": variant, "lm": lm, "model_file": str(path)}
    try:
        daemon.wait_ready()
        rec = EventRecorder(daemon.socket_path)
        time.sleep(args.settle_s)
        loaded = memory(daemon.pid)
        row |= {f"load_{k}": v for k, v in loaded.items()}
        total_s = args.hours * 3600
        timeline: list[tuple[float, float]] = [(0.0, loaded["rss_mb"])]
        every = max(total_s / args.samples, 1.0)
        next_sample = every
        fed = speech_s = 0.0
        assert daemon.proc.stdin is not None
        t0 = time.perf_counter()
        for piece, is_speech in audio_stream(clips, total_s):
            try:
                daemon.proc.stdin.write(_pcm(piece))
            except BrokenPipeError:
                raise RuntimeError(f"the daemon stopped reading its input:\n{daemon.stderr_tail()}") from None
            fed += len(piece) / SAMPLE_RATE
            speech_s += len(piece) / SAMPLE_RATE if is_speech else 0.0
            if fed >= next_sample:
                timeline.append((round(fed, 1), memory(daemon.pid)["rss_mb"]))
                next_sample += every
        daemon.proc.stdin.write(_pcm(np.zeros(2 * SAMPLE_RATE, np.float32)))
        daemon.proc.stdin.flush()
        _wait_idle(daemon.pid, timeout=max(120.0, total_s))
        wall = time.perf_counter() - t0
        used = memory(daemon.pid)
        timeline.append((round(fed, 1), used["rss_mb"]))
        warm = next((rss for s, rss in timeline if s >= 0.1 * fed), timeline[0][1])
        daemon.proc.stdin.close()  # end of input: the daemon finishes and exits
        daemon.proc.wait(timeout=60)
        rec.wait_eof()
        finals = rec.events("final")
        row |= {f"use_{k}": v for k, v in used.items()}
        row |= {
            "audio_h": fed / 3600,
            "speech_fraction": speech_s / fed if fed else 0.0,
            "x_realtime": fed / wall,
            "finals": len(finals),
            "max_length_finals": sum(1 for r in finals if r.message.get("reason") == "max_length"),
            "growth_mb": used["rss_mb"] - loaded["rss_mb"],
            "growth_after_warmup_mb": used["rss_mb"] - warm,
            "rss_timeline": timeline,
            "exit_status": daemon.proc.returncode,
        }
    finally:
        if rec is not None:
            rec.close()
        daemon.close()
    print(
        f"  {variant:13} lm={lm:4} RSS {row['load_rss_mb']:6.1f} MB after load, "
        f"{row.get('use_rss_mb', float('nan')):6.1f} MB "
        f"after {row.get('audio_h', 0):.2f} h of audio ({row.get('finals', 0)} finals)",
        flush=True,
    )
    return row


COLUMNS = (
    Column("variant", "variant"),
    Column("LM", "lm"),
    Column("file MB", lambda r: r["info"]["file_size"] / MB, ".2f"),
    Column("stored", lambda r: r["info"]["stored_params"], ","),
    Column("virtual", lambda r: r["info"]["virtual_params"], ","),
    Column("RSS load", "load_rss_mb", ".1f"),
    Column("USS load", "load_uss_mb", ".1f"),
    Column("RSS used", "use_rss_mb", ".1f"),
    Column("growth", "growth_mb", "+.1f"),
    Column("after warm-up", "growth_after_warmup_mb", "+.1f"),
    Column("peak", "use_peak_mb", ".1f"),
    Column("audio h", "audio_h", ".2f"),
    Column("x RT", "x_realtime", ".0f"),
    Column("finals", "finals"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Memory in MiB.")
    add_model_args(ap)
    ap.add_argument(
        "--variants", default="onnx,onnx-int8,fp32,int8", help=f"comma-separated from {', '.join(VARIANTS)}"
    )
    ap.add_argument("--lm", default="auto", help="recognizer.lm settings to run each variant with (e.g. auto,off)")
    ap.add_argument("--hours", type=float, default=0.05, help="simulated audio per variant (full run: 1)")
    ap.add_argument("--samples", type=int, default=20, help="RSS samples along the simulated audio")
    block_ms = AudioConfig().block_ms
    ap.add_argument("--block-ms", type=int, default=block_ms, help=f"audio.block_ms (default {block_ms}, the daemon's)")
    ap.add_argument("--settle-s", type=float, default=2.0, help="wait after the daemon is ready")
    ap.add_argument("--engines", default="espeak-ng,flite", help="speech synthesizers for the utterances")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if bad := set(variants) - set(VARIANTS):
        ap.error(f"unknown variant(s): {', '.join(sorted(bad))}")
    if args.hours <= 0 or args.samples < 1:
        ap.error("--hours must be > 0 and --samples >= 1")
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="amb-mem-", dir="/tmp"))
    try:
        model = resolve_model(args.model, args.random_config, workdir, need_int8="int8" in variants)
        onnx_file = model.path.with_name(model.path.stem + ".onnx")
        if any(v.startswith("onnx") for v in variants) and not onnx_file.exists():
            if not model.random:
                ap.error(
                    f"no {onnx_file.name} beside {model.path}: ambient model export {model.path} --onnx {onnx_file}"
                )
            from ambient.model.export.onnx_graph import export_onnx

            export_onnx(model.path, onnx_file)  # the random checkpoint's folder is the work folder
        clips = [synthesize(s, engine=e, workdir=workdir) for s in SENTENCES for e in args.engines.split(",")]
        rows = []
        infos: dict[str, dict[str, Any]] = {}
        for variant, lm in [(v, lm) for v in variants for lm in args.lm.split(",") if lm]:
            path = model.int8_path if variant == "int8" else model.path
            assert path is not None
            if str(path) not in infos:
                infos[str(path)] = model_info(path)
            row = run_variant(args, workdir, variant, path, clips, lm)
            if variant.startswith("onnx"):  # the file the onnx backend loaded, beside the checkpoint
                loaded = onnx_file if variant == "onnx" else onnx_file.with_name(onnx_file.stem + "-int8.onnx")
                infos[str(loaded)] = {"file_size": loaded.stat().st_size}
                path = loaded
            # Parameter counts from the fp32 file: in an int8 file the quantized linear weights are
            # packed buffers, not parameters, so its own counts leave them out.
            if str(model.path) not in infos:
                infos[str(model.path)] = model_info(model.path)
            fp32 = infos[str(model.path)]
            row["info"] = {
                "name": fp32.get("name"),
                "stored_params": fp32.get("stored_params"),
                "virtual_params": fp32.get("virtual_params"),
                "sharing_detail": fp32.get("sharing_detail"),
                "file_size": infos[str(path)].get("file_size"),
            }
            rows.append(row)
        print_table(
            f"daemon memory (MiB): after load, after {args.hours:g} h of simulated audio fed as fast as possible "
            f"({model.label})",
            COLUMNS,
            rows,
        )
        settings = {k: v for k, v in vars(args).items() if k not in ("model", "json")}
        write_results(args.json, benchmark="memory", machine=machine, settings=settings, results=rows, model=model)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
