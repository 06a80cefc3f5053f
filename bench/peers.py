"""Accuracy and cost side by side: ambient vs pocketsphinx vs whisper tiny.en on the same files.

Usage:
  python bench/peers.py --model models/ambient-base/model.pt --manifest NAME=PATH [--manifest ...]
                        [--max 200] [--json OUT]
                        [--systems ambient,ambient-streaming,ambient-fp32,ambient-greedy,pocketsphinx,whisper-tiny.en]

``ambient`` decodes as the daemon does by default (onnx backend with ``model-int8.onnx`` when the
folder ships it, word LM beside the model, finals from the full-context second pass; a training
checkpoint with no ONNX files beside it runs on torch in fp32), ``ambient-fp32`` the same with fp32
weights, ``ambient-streaming`` keeps the chunked pass's finals, ``ambient-greedy``
uses greedy CTC (with the default final pass). Each system runs in its own process (1 thread) so
its resident memory is its own. WER uses the same text normalization as training (numbers spelled
out, lower case, no punctuation). The peers are optional extras (`scripts/setup.sh --bench`), not
dependencies of the daemon.

Every system is also compared with ``ambient`` on the same utterances by a paired bootstrap
(``bench/paired.py``): ``vs_ambient`` holds the WER difference (system minus ambient, in points; positive
means ambient is better), its 95 % interval and the share of resampled sets on which ambient made
fewer errors, so "better" can be told from "better on these particular sentences".
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from paired import paired_bootstrap, utterance_errors  # noqa: E402  (a sibling script module)

from ambient.text.normalize import normalize_text  # noqa: E402

#: The system the others are compared with.
REFERENCE_SYSTEM = "ambient"


#: ambient variants: name -> (precision, LM setting, final pass or None for the daemon's default).
#: "ambient" is what the daemon runs by default.
AMBIENT_VARIANTS: dict[str, tuple[str, str, str | None]] = {
    "ambient": ("auto", "auto", None),
    "ambient-streaming": ("auto", "auto", "streaming"),
    "ambient-fp32": ("fp32", "auto", None),
    "ambient-greedy": ("auto", "off", None),
}


def run_system(system: str, manifest: Path, args: argparse.Namespace) -> tuple[dict[str, Any], np.ndarray | None]:
    """One system over one manifest in a fresh process: its result row and its per-utterance
    ``(errors, words)`` table (None if it failed)."""
    variant = AMBIENT_VARIANTS.get(system)
    if variant is not None:
        precision, lm, final_pass = variant
        worker = "ambient"
    else:
        worker = system
    cmd = [sys.executable, str(HERE / "peer_worker.py"), worker, str(manifest), "--chunk-ms", str(args.chunk_ms)]
    if args.max:
        cmd += ["--max", str(args.max)]
    if variant is not None:
        cmd += ["--model", str(args.model), "--lm", lm, "--precision", precision]
        cmd += ["--final-pass", final_pass] if final_pass else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        return {"system": system, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}, None
    out: dict[str, Any] = json.loads(r.stdout)
    refs, hyps, sources = out["refs"], out["hyps"], out.pop("sources")
    errors = utterance_errors(refs, hyps)
    out["wer"] = _wer(errors)
    out["system"] = system
    out["row_sources"] = [s for s, ref in zip(sources, refs, strict=True) if normalize_text(ref)]
    return out, errors


#: Row keys that carry the corpora's text (references, hypotheses): written by --json, never by --summary-json.
PRIVATE_KEYS = ("refs", "hyps", "row_sources")


def reused_row(system: str, name: str, manifest: Path, old_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A peer's row from an earlier ``--json`` of this script, if it ran on the same set and file.

    The peers do not change between ambient models, so their slow runs need not be repeated; the
    references must match the manifest as it is now (checked by the caller through the error table).
    """
    for row in old_rows:
        same = row.get("system") == system and row.get("set") == name and row.get("manifest") == str(manifest)
        if same and "hyps" in row and "error" not in row:
            return dict(row)
    return None


def _wer(errors: np.ndarray) -> float:
    return float(errors[:, 0].sum() / max(1, errors[:, 1].sum()))


def split_by_source(
    set_rows: list[dict[str, Any]], tables: dict[str, np.ndarray], resamples: int
) -> dict[str, list[dict[str, Any]]]:
    """Per corpus of one set: each system's WER and, against ``ambient``, its paired bootstrap.

    Returns ``{source: [{"system", "utterances", "wer", "vs_ambient"?}, ...]}``; a corpus with a
    single utterance gets no bootstrap.
    """
    sources: list[str] = next((r["row_sources"] for r in set_rows if "row_sources" in r), [])
    ref = tables.get(REFERENCE_SYSTEM)
    out: dict[str, list[dict[str, Any]]] = {}
    for source in sorted(set(sources)):
        pick = np.asarray([s == source for s in sources])
        rows = []
        for row in set_rows:
            table = tables.get(row["system"])
            if table is None:
                continue
            sub = table[pick]
            entry: dict[str, Any] = {"system": row["system"], "utterances": int(pick.sum()), "wer": _wer(sub)}
            if ref is not None and row["system"] != REFERENCE_SYSTEM and pick.sum() > 1 and ref[pick][:, 1].sum() > 0:
                entry["vs_ambient"] = paired_bootstrap(ref[pick], sub, resamples=resamples).as_dict()
            rows.append(entry)
        out[source] = rows
    return out


def compare_with_reference(set_rows: list[dict[str, Any]], tables: dict[str, np.ndarray], resamples: int) -> None:
    """Add ``vs_ambient`` (a :class:`paired.PairedResult` as a dict) to every other row of one set."""
    ref = tables.get(REFERENCE_SYSTEM)
    if ref is None:
        return
    for row in set_rows:
        table = tables.get(row["system"])
        if row["system"] == REFERENCE_SYSTEM or table is None:
            continue
        row["vs_ambient"] = paired_bootstrap(ref, table, resamples=resamples).as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--manifest", action="append", required=True, help="NAME=PATH of a JSON-lines manifest")
    ap.add_argument("--max", type=int, default=200)
    ap.add_argument("--chunk-ms", type=int, default=640)
    ap.add_argument(
        "--systems", default="ambient,ambient-streaming,ambient-fp32,ambient-greedy,pocketsphinx,whisper-tiny.en"
    )
    ap.add_argument(
        "--json", type=Path, default=None, help="every row, references and hypotheses included (keep under data/)"
    )
    ap.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        help="the same rows without references and hypotheses (the corpora's text): the form to commit",
    )
    ap.add_argument("--resamples", type=int, default=10_000, help="paired bootstrap draws per comparison")
    ap.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="an earlier --json of this script: peers (not ambient) that ran on the same NAME=PATH are taken from it",
    )
    args = ap.parse_args()
    old_rows: list[dict[str, Any]] = json.loads(args.reuse.read_text()) if args.reuse else []
    rows: list[dict[str, Any]] = []
    for spec in args.manifest:
        name, _, path = spec.partition("=")
        set_rows: list[dict[str, Any]] = []
        tables: dict[str, np.ndarray] = {}
        for system in args.systems.split(","):
            old = None if system in AMBIENT_VARIANTS else reused_row(system, name, Path(path), old_rows)
            if old is not None:
                res, errors = old, utterance_errors(old["refs"], old["hyps"])
                res["reused_from"] = str(args.reuse)
            else:
                res, errors = run_system(system, Path(path), args)
            res["set"] = name
            res["manifest"] = str(path)
            set_rows.append(res)
            if errors is not None:
                tables[system] = errors
            if "error" in res:
                print(f"{name:14} {res['system']:16} ERROR {res['error']}", flush=True)
            else:
                print(
                    f"{name:14} {res['system']:16} WER {100 * res['wer']:6.2f}%  RTF {res['rtf']:.4f}  "
                    f"RSS {res['peak_rss_mb']:6.0f} MB  stream {'yes' if res['streaming'] else 'no'}  "
                    f"({res['utterances']} utt, {res['audio_s'] / 60:.1f} min)",
                    flush=True,
                )
        compare_with_reference(set_rows, tables, args.resamples)
        by_source = split_by_source(set_rows, tables, args.resamples)
        if len(by_source) > 1:
            for source, entries in by_source.items():
                for e in entries:
                    v = e.get("vs_ambient")
                    vs = (
                        f"  minus {REFERENCE_SYSTEM} {v['delta_pts']:+.1f} [{v['ci95'][0]:+.1f}, {v['ci95'][1]:+.1f}]"
                        if v
                        else ""
                    )
                    print(f"{name:14} {source:20} {e['system']:16} WER {100 * e['wer']:6.2f}%{vs}", flush=True)
        row_of = {res["system"]: res for res in set_rows}
        for res in set_rows:
            res["by_source"] = {}
        for src, entries in by_source.items():
            for e in entries:
                row_of[e["system"]]["by_source"][src] = e
        for res in set_rows:
            if "vs_ambient" in res:
                v = res["vs_ambient"]
                print(
                    f"{name:14} {res['system']:16} minus {REFERENCE_SYSTEM}: {v['delta_pts']:+.1f} points, "
                    f"95 % interval [{v['ci95'][0]:+.1f}, {v['ci95'][1]:+.1f}], "
                    f"{REFERENCE_SYSTEM} better in {100 * v['p_better']:.1f} % of {v['resamples']} resampled sets",
                    flush=True,
                )
        rows += set_rows
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; 1 thread per system")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.summary_json:
        summary = [{k: v for k, v in row.items() if k not in PRIVATE_KEYS} for row in rows]
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
