"""Voice gate in noise, offline: how long steady background sound holds the gate open, and how
many spoken sentences it still catches, with webrtcvad alone and with the tracked noise floor.

Usage: python bench/gate.py [--seconds 60] [--utterances 12] [--aggressiveness 2,3] [--json OUT]

For each background (``silence``, the stationary kinds of ``_common.make_noise``, and the recorded
clips of ``../shared/data/noise`` when present) the gate runs over ``--seconds`` of that sound
alone (``open %``: share of time inside an announced utterance — the encoder's wake time) and over
the same sound with ``--utterances`` synthesized sentences at -20 dBFS RMS laid on top, 2.5 s apart
(``caught``: sentences the gate opened for; ``clipped``: caught sentences whose utterance, pre-roll
included, starts after the sentence's acoustic onset; ``extra open``: seconds the gate stayed open
outside the sentences plus the hangover). No daemon, no model: this is the gate alone,
so it runs in seconds and its figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    NOISE_KINDS,
    SAMPLE_RATE,
    SENTENCES,
    Column,
    compose,
    machine_info,
    make_noise,
    print_table,
    speech_bounds,
    synthesize,
    write_results,
)
from idle import DEFAULT_NOISE_MANIFEST, recorded_noise

from ambient.audio.resample import to_int16
from ambient.audio.vad import SpeechEnded, SpeechStarted, VoiceGate
from ambient.config import VadConfig

SPEECH_DBFS = -20.0
GAP_S = 2.5


def gate_spans(signal: np.ndarray, cfg: VadConfig) -> list[tuple[float, float]]:
    """(start, end) seconds of every announced utterance when the gate hears ``signal``."""
    gate = VoiceGate(cfg)
    pcm = to_int16(signal)
    n = gate.frame_samples
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for i in range(0, len(pcm) - n + 1, n):
        for ev in gate.process(pcm[i : i + n]):
            if isinstance(ev, SpeechStarted):
                start = ev.start_sample / SAMPLE_RATE
            elif isinstance(ev, SpeechEnded) and start is not None:
                spans.append((start, ev.end_sample / SAMPLE_RATE))
                start = None
    if start is not None:
        spans.append((start, len(pcm) / SAMPLE_RATE))
    return spans


def _first_span(spans: list[tuple[float, float]], on: float, off: float) -> tuple[float, float] | None:
    """The first utterance overlapping the sound ``[on, off)``."""
    return next(((a, b) for a, b in spans if a < off and b > on), None)


def _overlap(spans: list[tuple[float, float]], zones: list[tuple[float, float]]) -> float:
    total = 0.0
    for a, b in spans:
        total += (b - a) - sum(max(0.0, min(b, z1) - max(a, z0)) for z0, z1 in zones)
    return total


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1.0
    return (x / rms * 10 ** (dbfs / 20)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each background recording")
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--aggressiveness", default="2,3")
    ap.add_argument("--engines", default="espeak-ng,flite")
    ap.add_argument("--noise-manifest", type=Path, default=DEFAULT_NOISE_MANIFEST)
    ap.add_argument(
        "--backgrounds",
        default=None,
        help=f"comma-separated subset of silence,{','.join(NOISE_KINDS)},recorded (default: all)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    machine = machine_info()
    notes: list[str] = []

    with tempfile.TemporaryDirectory() as tmp:
        engines = args.engines.split(",")
        sentences = [
            _level(
                synthesize(SENTENCES[i % len(SENTENCES)], engine=engines[i % len(engines)], workdir=Path(tmp)),
                SPEECH_DBFS,
            )
            for i in range(args.utterances)
        ]
    parts: list[np.ndarray | float] = [1.0]
    bounds: list[tuple[float, float]] = []
    zones: list[tuple[float, float]] = []
    t = 1.0
    for s in sentences:
        on, off = speech_bounds(s)
        bounds.append((t + on, t + off))
        zones.append((t, t + len(s) / SAMPLE_RATE + 0.9))  # the sentence plus hangover and VAD tail
        parts += [s, GAP_S]
        t += len(s) / SAMPLE_RATE + GAP_S
    speech = compose(parts)

    wanted = args.backgrounds.split(",") if args.backgrounds else ["silence", *NOISE_KINDS, "recorded"]
    length = max(args.seconds, len(speech) / SAMPLE_RATE)
    backgrounds: dict[str, np.ndarray] = {}
    for kind in wanted:
        if kind == "silence":
            backgrounds[kind] = np.zeros(round(length * SAMPLE_RATE), np.float32)
        elif kind == "recorded":
            rec = recorded_noise(args.noise_manifest, length)
            if rec is None:
                notes.append(f"'recorded' skipped: no noise clips at {args.noise_manifest}")
            else:
                backgrounds[kind] = rec
        elif kind in NOISE_KINDS:
            backgrounds[kind] = make_noise(kind, length, seed=NOISE_KINDS.index(kind))
        else:
            ap.error(f"unknown background {kind!r}")

    rows: list[dict[str, Any]] = []
    for aggr in [int(a) for a in args.aggressiveness.split(",")]:
        for floor in (None, VadConfig().noise_margin_db):
            cfg = VadConfig(aggressiveness=aggr, noise_margin_db=floor)
            for name, noise in backgrounds.items():
                alone = noise[: round(args.seconds * SAMPLE_RATE)]
                spans = gate_spans(alone, cfg)
                open_s = sum(b - a for a, b in spans)
                mixed = noise[: len(speech)] + speech if len(noise) >= len(speech) else speech
                mspans = gate_spans(mixed, cfg)
                found = [_first_span(mspans, on, off) for on, off in bounds]
                rows.append(
                    {
                        "background": name,
                        "aggressiveness": aggr,
                        "noise_margin_db": floor,
                        "open_pct": 100 * open_s / (len(alone) / SAMPLE_RATE),
                        "utterances_opened": len(spans),
                        "caught": sum(f is not None for f in found),
                        "clipped": sum(f is not None and f[0] > on for f, (on, _) in zip(found, bounds, strict=True)),
                        "sentences": len(bounds),
                        "extra_open_s": _overlap(mspans, zones),
                    }
                )
    print_table(
        f"voice gate over {args.seconds:.0f} s of each background; {len(bounds)} sentences at {SPEECH_DBFS:.0f} dBFS",
        [
            Column("background", "background"),
            Column("aggr", "aggressiveness"),
            Column("floor margin dB", lambda r: "off" if r["noise_margin_db"] is None else r["noise_margin_db"]),
            Column("open % (noise alone)", "open_pct", ".1f"),
            Column("utterances opened", "utterances_opened"),
            Column("sentences caught", lambda r: f"{r['caught']}/{r['sentences']}"),
            Column("onset clipped", "clipped"),
            Column("extra open s", "extra_open_s", ".1f"),
        ],
        rows,
    )
    write_results(
        args.json,
        benchmark="gate",
        machine=machine,
        settings={
            "seconds": args.seconds,
            "utterances": len(bounds),
            "speech_dbfs": SPEECH_DBFS,
            "engines": args.engines,
            "frame_ms": VadConfig().frame_ms,
            "hangover_ms": VadConfig().hangover_ms,
            "noise_window_s": VadConfig().noise_window_s,
            "release_db": VadConfig().release_db,
        },
        results=rows,
        notes=notes,
    )


if __name__ == "__main__":
    main()
