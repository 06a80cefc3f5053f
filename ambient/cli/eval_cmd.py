"""``ambient eval --model PATH MANIFEST``: WER through the daemon's streaming recognizer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ambient.cli.lm_args import add_final_pass_argument, add_lm_arguments, final_pass_from_args, lm_from_args
from ambient.errors import AmbientError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``eval`` subcommand."""
    p = sub.add_parser("eval", help="word error rate of a model on manifests (streaming decoding)")
    p.add_argument(
        "manifests",
        nargs="+",
        metavar="[NAME=]MANIFEST",
        help="JSON-lines manifests (audio, text, source, speaker), each reported apart with its corpora; "
        "e.g. seen=data/dev.jsonl unseen=data/dev_unseen.jsonl",
    )
    p.add_argument("--model", type=Path, default=None, help="model file (default: the shipped model)")
    p.add_argument("--chunk-ms", type=int, default=640, help="encoder chunk length in ms (default 640, as the daemon)")
    p.add_argument(
        "--left-chunks",
        type=int,
        default=None,
        help="attention left context in chunks (default: from the model, -1 = all)",
    )
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantization of the linear weights")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N utterances")
    p.add_argument("--per-speaker", action="store_true", help="also report WER per speaker")
    p.add_argument("--utterances", action="store_true", help="also list every utterance's reference and hypothesis")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_lm_arguments(p)
    add_final_pass_argument(p)
    p.set_defaults(func=run)


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}%"


def _sets(specs: list[str]) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        out.append((name, Path(path)) if sep and name and path else (spec, Path(spec)))
    return out


def run(args: argparse.Namespace) -> int:
    """Decode every utterance of each manifest and print the WER overall and per source."""
    import torch

    from ambient.config import load_config
    from ambient.model.checkpoint import load_model
    from ambient.train.evaluate import evaluate_streaming
    from ambient.train.manifest import read_manifest

    if args.chunk_ms <= 0 or args.threads <= 0 or (args.limit is not None and args.limit <= 0):
        raise AmbientError("--chunk-ms, --threads and --limit must be positive")
    torch.set_num_threads(args.threads)
    sets = []
    for name, path in _sets(args.manifests):
        utts = read_manifest(path)[: args.limit]
        if not utts:
            raise AmbientError(f"{path}: no utterances")
        sets.append((name, path, utts))
    model_path = args.model or load_config(None).model.path
    model = load_model(model_path, int8=args.int8)
    lm = lm_from_args(args, model_path=model_path, tokenizer=model.tokenizer)
    for i, (name, path, utts) in enumerate(sets):
        report = evaluate_streaming(
            model,
            utts,
            chunk_ms=args.chunk_ms,
            left_chunks=args.left_chunks,
            lm=lm,
            final_pass=final_pass_from_args(args),
        )
        for skipped in report.skipped:
            print(f"ambient: warning: skipped {skipped}", file=sys.stderr)
        if report.overall.utterances == 0:
            raise AmbientError(f"{path}: none of the {len(utts)} utterances could be read")
        if args.json:
            out: dict[str, Any] = {
                "model": str(model_path),
                "set": name,
                "manifest": str(path),
                **report.to_dict(per_speaker=args.per_speaker, per_utterance=args.utterances),
            }
            print(json.dumps(out), flush=True)
            continue
        if i:
            print()
        _print_report(name, path, model_path, report, args)
    return 0


def _print_report(name: str, path: Path, model_path: Path, report: Any, args: argparse.Namespace) -> None:
    o = report.overall
    print(f"model     {model_path}")
    title = f"{name}: {path}" if name != str(path) else str(path)
    print(f"manifest  {title} ({o.utterances} utterances, {report.audio_seconds / 60:.1f} min)")
    print(
        f"decoding  streaming, chunk {report.chunk_ms} ms, left chunks {report.left_chunks}, "
        f"final pass {report.final_pass}, RTF {report.rtf:.4f}"
    )
    print(
        f"WER       {_pct(o.wer)}  (sub {o.substitutions}, del {o.deletions}, ins {o.insertions} / {o.ref_words} words)"
    )
    groups = [("source", report.by_source)] + ([("speaker", report.by_speaker)] if args.per_speaker else [])
    for title, table in groups:
        print(f"\n{title:<24} {'utts':>6} {'words':>7} {'WER':>8}")
        for key, c in sorted(table.items()):
            print(f"{key:<24} {c.utterances:>6} {c.ref_words:>7} {_pct(c.wer):>8}")
    if args.utterances:
        print()
        for r in report.results:
            mark = "  " if r.reference == r.hypothesis else "* "
            print(f"{mark}{r.audio}\n    ref: {r.reference}\n    hyp: {r.hypothesis}")
