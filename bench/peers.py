"""Accuracy and cost side by side: ambient vs pocketsphinx vs whisper tiny.en on the same files.

Usage:
  python bench/peers.py --model models/ambient-base/model.pt --manifest NAME=PATH [--manifest ...]
                        [--max 200] [--json OUT]
                        [--systems ambient,ambient-streaming,ambient-int8,ambient-greedy,pocketsphinx,whisper-tiny.en]

``ambient`` decodes as the daemon does by default (word LM beside the model, finals from the
full-context second pass), ``ambient-streaming`` keeps the chunked pass's finals, ``ambient-greedy``
uses greedy CTC (with the default final pass). Each system runs in its own process (1 thread) so
its resident memory is its own. WER uses the same text normalization as training (numbers spelled
out, lower case, no punctuation). The peers are optional extras (`scripts/setup.sh --bench`), not
dependencies of the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import jiwer

from ambient.text.normalize import normalize_text

HERE = Path(__file__).resolve().parent


def _wer(refs: list[str], hyps: list[str]) -> float:
    r = [normalize_text(x) for x in refs]
    h = [normalize_text(x) for x in hyps]
    pairs = [(a, b) for a, b in zip(r, h, strict=True) if a]
    return float(jiwer.wer([a for a, _ in pairs], [b for _, b in pairs]))


#: ambient variants: name -> (int8, LM setting, final pass or None for the daemon's default).
#: "ambient" is what the daemon runs by default.
AMBIENT_VARIANTS: dict[str, tuple[bool, str, str | None]] = {
    "ambient": (False, "auto", None),
    "ambient-streaming": (False, "auto", "streaming"),
    "ambient-int8": (True, "auto", None),
    "ambient-greedy": (False, "off", None),
}


def run_system(system: str, manifest: Path, args: argparse.Namespace) -> dict[str, Any]:
    variant = AMBIENT_VARIANTS.get(system)
    if variant is not None:
        int8, lm, final_pass = variant
        worker = "ambient"
    else:
        worker = system
    cmd = [sys.executable, str(HERE / "peer_worker.py"), worker, str(manifest), "--chunk-ms", str(args.chunk_ms)]
    if args.max:
        cmd += ["--max", str(args.max)]
    if variant is not None:
        cmd += ["--model", str(args.model), "--lm", lm] + (["--int8"] if int8 else [])
        cmd += ["--final-pass", final_pass] if final_pass else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        return {"system": system, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    out: dict[str, Any] = json.loads(r.stdout)
    out["wer"] = _wer(out.pop("refs"), out.pop("hyps"))
    out["system"] = system
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--manifest", action="append", required=True, help="NAME=PATH of a JSON-lines manifest")
    ap.add_argument("--max", type=int, default=200)
    ap.add_argument("--chunk-ms", type=int, default=640)
    ap.add_argument(
        "--systems", default="ambient,ambient-streaming,ambient-int8,ambient-greedy,pocketsphinx,whisper-tiny.en"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for spec in args.manifest:
        name, _, path = spec.partition("=")
        for system in args.systems.split(","):
            res = run_system(system, Path(path), args)
            res["set"] = name
            rows.append(res)
            if "error" in res:
                print(f"{name:14} {res['system']:16} ERROR {res['error']}", flush=True)
            else:
                print(
                    f"{name:14} {res['system']:16} WER {100 * res['wer']:6.2f}%  RTF {res['rtf']:.4f}  "
                    f"RSS {res['peak_rss_mb']:6.0f} MB  stream {'yes' if res['streaming'] else 'no'}  "
                    f"({res['utterances']} utt, {res['audio_s'] / 60:.1f} min)",
                    flush=True,
                )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; 1 thread per system")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
