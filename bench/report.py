"""Render benchmark results (JSON) into the tables of ``docs/benchmarks.md``.

Usage: python bench/report.py [--results bench/results] [--doc docs/benchmarks.md] [--check]
       python bench/report.py --snapshot PATH      (machine and load before/after a run of a
                                                    script that does not record them itself)

The document is hand-written prose with generated blocks between markers::

    <!-- bench:NAME -->  ...generated...  <!-- /bench:NAME -->

NAME is ``machine`` or a benchmark: ``stream_speed``, ``daemon_latency``, ``idle``, ``memory``,
``scaling``, ``peers``, ``gate``; its results are read from ``RESULTS/NAME.json``. A block whose results are
missing says so. Results taken on a busy machine (load average above a quarter of the cores at the
start, or that plus the benchmark's own thread at the end) are marked **preliminary**. ``--check``
exits 1 if the document is not up to date.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _common import REPO, describe_machine, finish_machine, machine_info, under_load

BENCHMARKS: tuple[str, ...] = ("stream_speed", "daemon_latency", "idle", "gate", "memory", "scaling", "peers")
#: Benchmarks whose figures do not depend on the machine's load (never marked preliminary).
LOAD_INDEPENDENT: frozenset[str] = frozenset({"gate"})
_BLOCK = re.compile(r"(<!-- bench:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.DOTALL)

Doc = dict[str, Any]


# --------------------------------------------------------------------------- markdown helpers


def _fmt(value: Any, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec) if spec else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter per column (``l`` or ``r``, default: first left)."""
    align = align or "l" + "r" * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _stat(s: Mapping[str, Any] | None, key: str = "median", spec: str = ".0f") -> str:
    return _fmt(None if s is None else s.get(key), spec)


def provenance(doc: Doc) -> str:
    """Where and when a result was measured, with the preliminary marker when the machine was busy."""
    m = doc.get("machine") or {}
    load = f"{_fmt((m.get('loadavg_start') or [None])[0])} / {_fmt((m.get('loadavg_end') or [None])[0])}"
    line = (
        f"_Measured {m.get('started', '?')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), torch "
        f"{m.get('torch', '?')}, commit {m.get('commit', '?')}; 1-minute load average {load} at start / end._"
    )
    if m and under_load(m) and doc.get("benchmark") not in LOAD_INDEPENDENT:
        line = (
            "> **Preliminary: measured under load** (another job was using the cores); rerun on a quiet "
            "machine before relying on these figures.\n\n" + line
        )
    model = doc.get("model")
    if model:
        line += f"\n_Model: {model['label']}._"
    return line


# --------------------------------------------------------------------------- one renderer per benchmark


def render_stream_speed(doc: Doc) -> str:
    rows = [
        [
            r["model"],
            _fmt(r["stored_params"], ","),
            _fmt(r["virtual_params"], ","),
            _fmt(r["layers"]),
            _fmt(r["chunk_ms"]),
            r["precision"],
            _fmt(r["rtf"], ".4f"),
            _fmt(r["lat_p50_ms"], ".1f"),
            _fmt(r["lat_p95_ms"], ".1f"),
            _fmt(r["lat_max_ms"], ".1f"),
        ]
        for r in doc["results"]
    ]
    headers = ["model", "stored", "virtual", "layers", "chunk ms", "precision", "RTF", "p50 ms", "p95 ms", "max ms"]
    return table(headers, rows, align="lrrrrlrrrr")


def render_daemon_latency(doc: Doc) -> str:
    s = doc["settings"]
    rows = [
        [
            r["source"],
            r.get("final_pass", "streaming"),  # results from before two-pass finals: streaming
            f"{r['recognized']}/{r['utterances']}",
            _fmt(r["split"]),
            _fmt(r["false_starts"]),
            _stat(r["speech_start_ms"]),
            f"{_stat(r['first_partial_ms'])} / {_stat(r['first_partial_ms'], 'p90')}",
            f"{_stat(r['final_ms'])} / {_stat(r['final_ms'], 'p90')} / {_stat(r['final_ms'], 'max')}",
            _fmt(r["final_target_ms"], ".0f"),
            "–" if r["final_within_target"] is None else f"{100 * r['final_within_target']:.0f}%",
            _stat(r.get("vad_tail_ms")),
            f"{_stat(r.get('gate_to_final_ms'))} / {_stat(r.get('gate_to_final_ms'), 'max')}",
            f"{_stat(r['partial_lag_ms'])} / {_stat(r['partial_lag_ms'], 'max')}",
            _stat(r.get("worker_rtf"), spec=".3f"),
        ]
        for r in doc["results"]
    ]
    headers = [
        "source",
        "final pass",
        "recognized",
        "split",
        "false starts",
        "onset → speech_start",
        "onset → 1st partial (med / p90)",
        "end → final (med / p90 / max)",
        "target",
        "met",
        "VAD tail",
        "gate closed → final (med / max)",
        "partial lag (med / max)",
        "worker RTF",
    ]
    settings = (
        f"{s['utterances']} utterances per source ({s['engines']}), chunk {s['chunk_ms']} ms, "
        f"hangover {s['hangover_ms']} ms, block {s['block_ms']} ms, {'int8' if s.get('int8') else 'fp32'}. "
        "Latencies in ms; target = hangover + 150 ms; end → final = VAD tail + hangover + gate closed → final."
    )
    return settings + "\n\n" + table(headers, rows)


def render_idle(doc: Doc) -> str:
    s = doc["settings"]
    rows = [
        [
            _fmt(r["block_ms"]),
            _fmt(r.get("aggressiveness", 2)),
            r["condition"],
            _fmt(r["cpu_pct"], ".2f"),
            _stat(r["cpu_pct_parts"], spec=".2f"),
            _fmt(r["wakeups_per_s"], ".0f"),
            _fmt(r["false_starts"]),
            _fmt(r.get("awake_pct"), ".0f"),
            _fmt(r["finals"]),
        ]
        for r in doc["results"]
    ]
    headers = [
        "block ms",
        "VAD",
        "condition",
        "CPU % of a core",
        "median of parts",
        "wake-ups/s",
        "false starts",
        "encoder awake %",
        "finals",
    ]
    settings = (
        f"{s['seconds']:g} s per condition in {s['windows']} parts; {'int8' if s.get('int8') else 'fp32'}; "
        "CPU = user + system time of all daemon threads."
    )
    return settings + "\n\n" + table(headers, rows, align="rrlrrrrrr")


def render_gate(doc: Doc) -> str:
    s = doc["settings"]
    rows = [
        [
            r["background"],
            _fmt(r["aggressiveness"]),
            "off" if r["noise_margin_db"] is None else _fmt(r["noise_margin_db"], "g"),
            _fmt(r["open_pct"], ".1f"),
            _fmt(r["utterances_opened"]),
            f"{r['caught']}/{r['sentences']}",
            _fmt(r.get("clipped")),
            _fmt(r["extra_open_s"], ".1f"),
        ]
        for r in doc["results"]
    ]
    headers = [
        "background",
        "VAD",
        "floor margin dB",
        "open % (noise alone)",
        "utterances opened",
        "sentences caught",
        "onset clipped",
        "extra open s",
    ]
    settings = (
        f"{s['seconds']:g} s of each background alone; {s['utterances']} sentences ({s['engines']}) at "
        f"{s['speech_dbfs']:g} dBFS RMS over it; {s['frame_ms']} ms frames, hangover {s['hangover_ms']} ms, "
        f"noise window {s['noise_window_s']:g} s."
    )
    return settings + "\n\n" + table(headers, rows, align="lrrrrrrr")


def render_memory(doc: Doc) -> str:
    mb = 1024 * 1024
    s = doc["settings"]
    rows = [
        [
            r["variant"],
            _fmt(r["info"]["file_size"] / mb, ".2f"),
            _fmt(r["info"]["stored_params"], ","),
            _fmt(r["info"]["virtual_params"], ","),
            _fmt(r["load_rss_mb"], ".1f"),
            _fmt(r["load_uss_mb"], ".1f"),
            _fmt(r.get("use_rss_mb"), ".1f"),
            _fmt(r.get("growth_mb"), "+.1f"),
            _fmt(r.get("growth_after_warmup_mb"), "+.1f"),
            _fmt(r.get("use_peak_mb"), ".1f"),
            _fmt(r.get("finals")),
            _fmt(r.get("x_realtime"), ".0f"),
        ]
        for r in doc["results"]
    ]
    headers = [
        "variant",
        "file MiB",
        "stored params",
        "virtual params",
        "RSS after load",
        "USS after load",
        "RSS after use",
        "growth",
        "growth after warm-up",
        "peak RSS",
        "finals",
        "× real time",
    ]
    return f"Memory in MiB; use = {s['hours']:g} h of simulated audio per variant.\n\n" + table(headers, rows)


def _scaling_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            r["name"],
            r["precision"],
            _fmt(r["layers"]),
            _fmt(r["chunk_ms"]),
            _fmt(r["threads"]),
            _fmt(r["stored_params"], ","),
            _fmt(r["virtual_params"], ","),
            _fmt(r["rtf"], ".4f"),
            _fmt(r["lat_p50_ms"], ".1f"),
            _fmt(r["lat_p95_ms"], ".1f"),
            _fmt(r["model_mb"], ".1f"),
            _fmt(r["stream_mb"], ".1f"),
        ]
        for r in rows
    ]


def render_scaling(doc: Doc, *, doc_path: Path, results: Path) -> str:
    headers = [
        "config",
        "precision",
        "layers",
        "chunk ms",
        "threads",
        "stored",
        "virtual",
        "RTF",
        "chunk p50 ms",
        "chunk p95 ms",
        "model MiB",
        "peak − baseline MiB",
    ]
    s = doc["settings"]
    parts = [f"{s['seconds']:g} s of audio per run, median of {s['repeats']} runs, random weights."]
    for sweep, title in (("layers", "Virtual layers"), ("chunk", "Chunk size"), ("threads", "Threads")):
        sel = [r for r in doc["results"] if r["sweep"] == sweep]
        if sel:
            parts.append(f"**{title}**\n\n" + table(headers, _scaling_rows(sel), align="llrrrrrrrrrr"))
    chart = results / "scaling.png"
    if chart.exists():
        rel = os.path.relpath(chart, doc_path.parent)
        parts.append(f"![scaling charts]({rel})")
    return "\n\n".join(parts)


def render_peers(doc: Doc) -> str:
    rows = []
    for r in doc["results"]:
        if "error" in r:
            rows.append([r.get("set", "?"), r["system"], "error: " + r["error"], "", "", "", "", ""])
            continue
        rows.append(
            [
                r.get("set", "?"),
                r["system"],
                _fmt(100 * r["wer"], ".1f"),
                _versus(r.get("vs_ambient")),
                _fmt(r["rtf"], ".4f"),
                _fmt(r["peak_rss_mb"], ".0f"),
                "yes" if r.get("streaming") else "no",
                f"{r['utterances']} / {r['audio_s'] / 60:.1f} min",
            ]
        )
    headers = [
        "set",
        "system",
        "WER %",
        "minus ambient, points [95 % interval]; ambient better in",
        "RTF",
        "peak RSS MB",
        "streaming",
        "utterances / audio",
    ]
    return table(headers, rows, align="llrrrrlr")


def _versus(v: Mapping[str, Any] | None) -> str:
    """A paired-bootstrap comparison with ambient (``bench/paired.py``) in one cell."""
    if not v:
        return ""
    lo, hi = v["ci95"]
    return f"{v['delta_pts']:+.1f} [{lo:+.1f}, {hi:+.1f}]; {100 * v['p_better']:.1f} %"


def render_machine(docs: Mapping[str, Doc]) -> str:
    rows = []
    for name, doc in docs.items():
        m = doc.get("machine")
        if not m:
            continue
        rows.append(
            [
                name,
                str(m.get("started", "?")),
                f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {_fmt(m.get('memory_gib'))} GiB",
                str(m.get("torch", "?")),
                str(m.get("commit", "?")),
                f"{_fmt((m.get('loadavg_start') or [None])[0])} / {_fmt((m.get('loadavg_end') or [None])[0])}",
                "offline: load-independent"
                if name in LOAD_INDEPENDENT
                else ("**preliminary (under load)**" if under_load(m) else "quiet"),
            ]
        )
    if not rows:
        return "_No results yet: run `bench/run_all.sh`._"
    headers = ["benchmark", "measured (UTC)", "machine", "torch", "commit", "load start / end", "status"]
    return table(headers, rows, align="lllllll")


# --------------------------------------------------------------------------- assembling the document


def load_results(results: Path) -> dict[str, Doc]:
    """Every benchmark's document; list-shaped results (stream_speed, peers) are wrapped, with the
    machine snapshot taken around them (``NAME.machine.json``) if there is one."""
    docs: dict[str, Doc] = {}
    for name in BENCHMARKS:
        path = results / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        if isinstance(data, list):
            snap = results / f"{name}.machine.json"
            machine = json.loads(snap.read_text()) if snap.exists() else None
            data = {"benchmark": name, "machine": machine, "settings": {}, "results": data, "notes": []}
        docs[name] = data
    return docs


def render_block(name: str, docs: Mapping[str, Doc], *, doc_path: Path, results: Path) -> str:
    """The generated body of one marker block."""
    if name == "machine":
        return render_machine(docs)
    if name not in docs:
        out = results / f"{name}.json"
        shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
        return f"_Not measured yet: run `bench/run_all.sh` (or `python bench/{name}.py --json {shown}`)._"
    doc = docs[name]
    renderers: dict[str, Callable[[Doc], str]] = {
        "stream_speed": render_stream_speed,
        "daemon_latency": render_daemon_latency,
        "idle": render_idle,
        "gate": render_gate,
        "memory": render_memory,
        "scaling": lambda d: render_scaling(d, doc_path=doc_path, results=results),
        "peers": render_peers,
    }
    if name not in renderers:
        raise SystemExit(f"report.py: error: {doc_path}: unknown block <!-- bench:{name} -->")
    parts = [provenance(doc) if doc.get("machine") else "_Machine not recorded for this result._", renderers[name](doc)]
    notes = doc.get("notes") or []
    if notes:
        parts.append("\n".join(f"- note: {n}" for n in notes))
    return "\n\n".join(parts)


def render_document(text: str, docs: Mapping[str, Doc], *, doc_path: Path, results: Path) -> str:
    """``text`` with every marker block regenerated."""

    def repl(m: re.Match[str]) -> str:
        body = render_block(m.group("name"), docs, doc_path=doc_path, results=results)
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return _BLOCK.sub(repl, text)


def snapshot(path: Path) -> None:
    """Write the machine and its load to ``path``; if it exists, add the load at the end instead."""
    data = finish_machine(json.loads(path.read_text())) if path.exists() else machine_info()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    if "loadavg_end" in data:
        print(f"machine: {describe_machine(data)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="folder of NAME.json files")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md", help="document to update")
    ap.add_argument("--check", action="store_true", help="only check that the document is up to date")
    ap.add_argument("--snapshot", type=Path, default=None, help="record the machine and load (start, then end) in PATH")
    args = ap.parse_args()
    if args.snapshot is not None:
        snapshot(args.snapshot)
        return 0
    if not args.doc.exists():
        ap.error(f"{args.doc}: no such document")
    text = args.doc.read_text()
    if not _BLOCK.search(text):
        ap.error(f"{args.doc}: no <!-- bench:NAME --> ... <!-- /bench:NAME --> blocks")
    docs = load_results(args.results)
    new = render_document(text, docs, doc_path=args.doc.resolve(), results=args.results.resolve())
    if args.check:
        if new != text:
            print(f"{args.doc} is out of date: run python bench/report.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.doc.write_text(new)
    print(f"{args.doc}: {len(docs)} result file(s) rendered from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
