"""Is a new model really better (or no worse) than the old one? Paired bootstrap of two ``ambient eval`` runs.

Usage: python bench/compare_models.py OLD.json NEW.json [--json OUT]

Each input is the output of ``ambient eval --json --utterances ...`` (one JSON object per line, one
per named manifest). Sets present in both are compared utterance by utterance, whole and per corpus:
``delta`` is NEW's WER minus OLD's in points (negative: NEW is better) with the 95 % interval of the
paired bootstrap (bench/paired.py); an interval that excludes 0 is a difference the choice of
utterances does not explain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired import paired_bootstrap, utterance_errors


def _load(path: Path) -> dict[str, dict[str, Any]]:
    """``{set name: eval record}`` of one ``ambient eval --json --utterances`` file."""
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if "utterances_detail" not in rec:
            raise SystemExit(f"{path}:{n}: no per-utterance results; run ambient eval with --json --utterances")
        out[rec["set"]] = rec
    return out


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per corpus and one for the whole set: WERs, delta and its interval."""
    a = {u["audio"]: u for u in old["utterances_detail"]}
    b = {u["audio"]: u for u in new["utterances_detail"]}
    if set(a) != set(b):
        raise SystemExit(f"set {old['set']!r}: the two runs decoded different files")
    groups: dict[str, list[str]] = {"all": sorted(a)}
    for audio in sorted(a):
        groups.setdefault(a[audio]["source"], []).append(audio)
    rows = []
    for name, files in groups.items():
        refs = [a[f]["reference"] for f in files]
        ea = utterance_errors(refs, [a[f]["hypothesis"] for f in files])
        eb = utterance_errors(refs, [b[f]["hypothesis"] for f in files])
        res = paired_bootstrap(ea, eb)  # delta: WER of new minus WER of old
        words = int(ea[:, 1].sum())
        rows.append(
            {
                "set": old["set"],
                "corpus": name,
                "utterances": len(files),
                "words": words,
                "old_wer": round(100 * ea[:, 0].sum() / words, 2),
                "new_wer": round(100 * eb[:, 0].sum() / words, 2),
                "delta": round(res.delta_pts, 2) + 0.0,
                "ci95": [round(res.ci95[0], 2) + 0.0, round(res.ci95[1], 2) + 0.0],
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", type=Path, help="ambient eval --json --utterances output of the old model")
    ap.add_argument("new", type=Path, help="the same for the new model")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    old, new = _load(args.old), _load(args.new)
    rows = [row for name in old if name in new for row in compare(old[name], new[name])]
    if not rows:
        raise SystemExit("the two files share no set name")
    print(f"{'set':8} {'corpus':22} {'utts':>5} {'words':>6} {'old':>6} {'new':>6} {'delta':>6}  95 % interval")
    for r in rows:
        lo, hi = r["ci95"]
        print(
            f"{r['set']:8} {r['corpus']:22} {r['utterances']:5d} {r['words']:6d} {r['old_wer']:6.2f} "
            f"{r['new_wer']:6.2f} {r['delta']:+6.2f}  [{lo:+.2f}, {hi:+.2f}]"
        )
    if args.json:
        args.json.write_text(json.dumps({"old": str(args.old), "new": str(args.new), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
