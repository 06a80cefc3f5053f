"""Training metrics: one JSON object per line in ``metrics.jsonl``, and PNG plots drawn from it.

Records carry a ``kind``: ``train`` (``step``, ``loss``, ``lr``, ``grad_norm``, ``audio_hours``,
``audio_s_per_s``, ...) every few steps, and ``dev`` (``step``, ``wer_full``, ``wer_stream``, ...)
after each evaluation. On resume the records written after the checkpoint's step are dropped, so the
file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "plot_metrics", "read_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file, in order; a torn last line (after a crash) is ignored."""
    p = Path(path)
    if not p.exists():
        return []
    records: list[dict[str, Any]] = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


class MetricsLog:
    """Append-only JSON-lines writer (rank 0 only)."""

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        """Open ``path`` for appending; with ``resume_step`` drop records of later steps first."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        else:
            kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (non-finite floats become ``null``) and flush it."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._f.write(json.dumps(clean) + "\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file."""
        self._f.close()


def _series(records: list[dict[str, Any]], kind: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in records if r.get("kind") == kind and r.get(key) is not None]
    return [float(s) for s, _ in pts], [float(v) for _, v in pts]


def plot_metrics(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``loss.png``, ``dev_wer.png`` and ``lr.png`` into ``out_dir``; returns the files written.

    A plot with no data yet is skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    out = Path(out_dir)
    written: list[Path] = []
    # (file, y label, [(record kind, key, legend)], y scale factor, log y axis)
    plots: list[tuple[str, str, list[tuple[str, str, str]], float, bool]] = [
        ("loss.png", "CTC loss per token", [("train", "loss", "train loss")], 1.0, True),
        (
            "dev_wer.png",
            "dev WER (%)",
            [("dev", "wer_full", "full context"), ("dev", "wer_stream", "streaming chunk")],
            100.0,
            False,
        ),
        ("lr.png", "learning rate", [("train", "lr", "lr")], 1.0, False),
    ]
    for name, ylabel, lines, scale, logy in plots:
        series = [(label, *_series(records, kind, key)) for kind, key, label in lines]
        if not any(xs for _, xs, _ in series):
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        for label, xs, ys in series:
            few = len(xs) < 50
            ax.plot(xs, [scale * y for y in ys], label=label, marker="o" if few else None, markersize=3)
        if logy and all(y > 0 for _, _, ys in series for y in ys):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend()
        fig.tight_layout()
        path = out / name
        tmp = out / f".{name}.tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)
    return written
