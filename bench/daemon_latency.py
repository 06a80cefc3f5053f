"""End-to-end latency through the running daemon: speech onset -> speech_start / first partial,
end of speech -> final, measured by a socket client.

Usage: python bench/daemon_latency.py [--model PATH | --random-config NAME] [--utterances 8]
                                      [--sources mic,file] [--final-passes full,streaming] [--json OUT]

Speech is synthesized at run time (espeak-ng and flite, alternating) and composed into one
recording: a lead-in silence, then each utterance followed by ``--gap-s`` of silence. The onset and
offset of every utterance are computed from the signal itself (first and last 10 ms frame within
35 dB of the loudest).

- ``mic``: a private PulseAudio server with a virtual microphone; the recording is played into it in
  real time and the daemon captures it through PortAudio like a real microphone. An independent
  ``parec`` recorder on the same microphone stamps what it hears with the wall clock; each
  utterance is located in that recording by cross-correlation, which gives the wall-clock time its
  onset and offset reached the microphone's clients (within one 20 ms fragment). PulseAudio's and
  PortAudio's buffering are thus part of the measured latency.
- ``file``: ``audio.source: file`` with ``realtime: true``: the daemon paces the file itself; sample
  ``j`` exists at ``t0 + j / 16000`` where ``t0`` is when playback began (the daemon's timeline).

Every latency is the arrival time of the event at a client on the daemon's Unix socket minus the
reference time of the onset (``speech_start``, first ``partial``) or the offset (``final``). The final
cannot come before ``vad.hangover_ms`` of silence has passed; the target is hangover + 150 ms.
Figures are medians (and 90th percentiles, maxima) over the utterances. ``partial lag`` is how
stale each partial is on arrival: arrival minus the wall-clock end of the audio it covers.

Where the time goes: the daemon's voice gate is also run offline over the same recording, which
gives the moment it can open each utterance (``min_speech_ms`` of voiced frames) and close it
(``hangover_ms`` after its last voiced frame). ``tail`` is how far the gate's last voiced frame lies
beyond the acoustic end (webrtcvad hears the decay of the last word), and ``gate>final`` the time
from the gate's decision to the final's arrival: block delivery, the last encoder chunk, the event
log's fsync and publishing. So end -> final = tail + hangover + gate>final.

Each source runs once per ``--final-passes`` entry (``recognizer.final_pass``): ``full`` finals come
from the second, full-context pass the worker starts ``recognizer.final_pass_silence_ms`` into the
trailing silence; ``streaming`` finals from the chunked pass's last chunk at the gate's close.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    SAMPLE_RATE,
    SENTENCES,
    Column,
    add_model_args,
    compose,
    machine_info,
    print_table,
    resolve_model,
    speech_bounds,
    summarize,
    synthesize,
    write_results,
    write_wav,
)

from ambient.audio.io import read_audio
from ambient.config import AudioConfig
from ambient.devtools.client import EventRecorder, Received
from ambient.devtools.daemon import DaemonProcess, daemon_config
from ambient.devtools.pulse import VirtualMic, pulse_missing

_AUDIO = AudioConfig()  # the daemon's defaults

#: A final this long after the hangover still meets the target.
TARGET_MARGIN_MS = 150.0


@dataclass(frozen=True)
class Utterance:
    """One spoken utterance in the composed recording (times in seconds from the file's start)."""

    text: str
    engine: str
    audio: np.ndarray
    clip_start: float  # where its clip (with the engine's own leading silence) begins
    onset: float
    offset: float
    gate_open: float | None = None  # when the voice gate (run offline on the same signal) announces it
    gate_voiced_end: float | None = None  # the end of its last voiced frame, for the gate
    gate_close: float | None = None  # when the gate closes it (after the hangover)


@dataclass
class SourceRun:
    """What one source produced: reference times per utterance and the events received."""

    source: str
    onset_wall: list[float | None]
    offset_wall: list[float | None]
    open_wall: list[float | None]  # wall time of Utterance.gate_open
    close_wall: list[float | None]  # wall time of Utterance.gate_close
    events: list[Received]
    logs: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def build_script(args: argparse.Namespace, workdir: Path) -> tuple[list[Utterance], np.ndarray]:
    """Synthesize the utterances and compose the recording."""
    engines = args.engines.split(",")
    parts: list[np.ndarray | float] = [args.lead_s]
    utts: list[Utterance] = []
    t = args.lead_s
    for i in range(args.utterances):
        text = SENTENCES[i % len(SENTENCES)]
        engine = engines[i % len(engines)]
        audio = synthesize(text, engine=engine, workdir=workdir)
        on, off = speech_bounds(audio)
        utts.append(Utterance(text=text, engine=engine, audio=audio, clip_start=t, onset=t + on, offset=t + off))
        parts += [audio, args.gap_s]
        t += len(audio) / SAMPLE_RATE + args.gap_s
    return utts, compose(parts)


def gate_schedule(utts: list[Utterance], signal: np.ndarray, hangover_ms: int) -> list[Utterance]:
    """Run the daemon's voice gate offline over the recording: when it opens and closes each
    utterance (file time). The daemon's gate sees the same samples (``file``) or the same signal
    with another 30 ms frame phase (``mic``), so the difference between these moments and the
    events' arrival is the daemon's own delay: block delivery, compute, event log, publishing."""
    from ambient.audio.resample import to_int16
    from ambient.audio.vad import SpeechEnded, SpeechStarted, VoiceGate
    from ambient.config import VadConfig

    gate = VoiceGate(VadConfig(hangover_ms=hangover_ms))
    pcm = to_int16(signal)
    n = gate.frame_samples
    opened: list[float] = []
    closed: list[tuple[float, float]] = []
    for i in range(0, len(pcm) - n + 1, n):
        for ev in gate.process(pcm[i : i + n]):
            if isinstance(ev, SpeechStarted):
                opened.append(gate.position / SAMPLE_RATE)
            elif isinstance(ev, SpeechEnded):
                closed.append((ev.speech_end_sample / SAMPLE_RATE, ev.end_sample / SAMPLE_RATE))
    out = []
    for k, u in enumerate(utts):
        nxt = utts[k + 1].clip_start if k + 1 < len(utts) else float("inf")
        mine_open = [t for t in opened if u.clip_start <= t < nxt]
        mine_close = [c for c in closed if u.clip_start <= c[0] < nxt]
        out.append(
            replace(
                u,
                gate_open=mine_open[0] if mine_open else None,
                gate_voiced_end=mine_close[-1][0] if mine_close else None,
                gate_close=mine_close[-1][1] if mine_close else None,
            )
        )
    return out


def _config(args: argparse.Namespace, workdir: Path, model: Path, **audio: Any) -> dict[str, Any]:
    return daemon_config(
        workdir,
        model,
        audio={"block_ms": args.block_ms, "idle_poll_ms": args.idle_poll_ms, **audio},
        vad={"hangover_ms": args.hangover_ms},
        recognizer={"chunk_ms": args.chunk_ms, "final_pass": args.final_pass},
        model={"int8": args.int8},
    )


def _wait_finals(rec: EventRecorder, n: int, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):  # missing finals are reported per utterance
        rec.wait(lambda ms: sum(r.type == "final" for r in ms) >= n, timeout=timeout, what=f"{n} finals")


def run_mic(args: argparse.Namespace, workdir: Path, model: Path, utts: list[Utterance], wav: Path) -> SourceRun:
    """Play the recording into a virtual microphone; reference times from the independent recorder."""
    duration = utts[-1].clip_start + len(utts[-1].audio) / SAMPLE_RATE + args.gap_s
    with VirtualMic() as mic:
        daemon = DaemonProcess(
            workdir=workdir, config=_config(args, workdir, model, source="mic"), env=mic.client_env()
        )
        rec: EventRecorder | None = None
        try:
            daemon.wait_ready()
            rec = EventRecorder(daemon.socket_path)
            time.sleep(1.0)  # let capture settle after startup
            start = mic.recorded_samples
            player = mic.play(wav)
            if player.wait(timeout=duration + 60) != 0:
                raise RuntimeError(f"paplay failed: {player.stderr.read().decode() if player.stderr else ''}")
            _wait_finals(rec, len(utts), timeout=5.0 + args.hangover_ms / 1000)
            daemon.stop()
            rec.wait_eof()
        finally:
            if rec is not None:
                rec.close()
            daemon.close()
        onsets: list[float | None] = []
        offsets: list[float | None] = []
        opens: list[float | None] = []
        closes: list[float | None] = []
        notes: list[str] = []
        pos_prev: int | None = None
        for i, u in enumerate(utts):
            clip = u.audio
            if pos_prev is None:
                pos, score = mic.locate(clip, start=start)
            else:
                expect = pos_prev + round((u.clip_start - utts[i - 1].clip_start) * SAMPLE_RATE)
                pos, score = mic.locate(
                    clip, start=expect - SAMPLE_RATE // 2, stop=expect + len(clip) + SAMPLE_RATE // 2
                )
            if pos < 0 or score < 0.9:
                notes.append(f"mic: utterance {i} not found in the recording (correlation {score:.2f})")
                for lst in (onsets, offsets, opens, closes):
                    lst.append(None)
                continue
            pos_prev = pos

            def wall(file_time: float | None, u: Utterance = u, pos: int = pos) -> float | None:
                if file_time is None:
                    return None
                return mic.wall_time(pos + round((file_time - u.clip_start) * SAMPLE_RATE))

            onsets.append(wall(u.onset))
            offsets.append(wall(u.offset))
            opens.append(wall(u.gate_open))
            closes.append(wall(u.gate_close))
        return SourceRun("mic", onsets, offsets, opens, closes, rec.events() if rec else [], daemon.logs(), notes)


def run_file(args: argparse.Namespace, workdir: Path, model: Path, utts: list[Utterance], wav: Path) -> SourceRun:
    """``source: file`` paced in real time; reference times from the daemon's playback clock."""
    cfg = _config(args, workdir, model, source="file", file=str(wav), realtime=True)
    daemon = DaemonProcess(workdir=workdir, config=cfg)
    rec: EventRecorder | None = None
    notes: list[str] = []
    try:
        daemon.wait_ready()
        rec = EventRecorder(daemon.socket_path)
        rec.wait(lambda ms: bool(ms), timeout=30, what="hello")
        hello = rec.events("hello")[0].message
        if hello.get("last_seq", 0) > 1:
            notes.append("file: the client connected after the first speech; increase --lead-s")
        # The daemon exits by itself at the end of the file.
        rec.wait_eof(timeout=len(utts) * 30 + 60)
        daemon.stop()
    finally:
        if rec is not None:
            rec.close()
        daemon.close()
    events = rec.events() if rec else []
    starts = [r.message for r in events if r.type == "speech_start"]
    if not starts:
        nothing: list[float | None] = [None] * len(utts)
        return SourceRun("file", nothing, nothing, nothing, nothing, events, daemon.logs(), notes)
    t0 = starts[0]["time"] - starts[0]["offset"]  # wall time of file sample 0

    def walls(times: list[float | None]) -> list[float | None]:
        return [None if t is None else t0 + t for t in times]

    return SourceRun(
        "file",
        walls([u.onset for u in utts]),
        walls([u.offset for u in utts]),
        walls([u.gate_open for u in utts]),
        walls([u.gate_close for u in utts]),
        events,
        daemon.logs(),
        notes,
    )


def analyse(run: SourceRun, utts: list[Utterance], hangover_ms: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per-utterance latencies and their summary for one source."""
    groups: dict[str, list[Received]] = defaultdict(list)
    order: list[str] = []
    for r in run.events:
        uid = r.message.get("utterance_id")
        if uid is None or r.type not in ("speech_start", "partial", "final"):
            continue
        if uid not in groups:
            order.append(uid)
        groups[uid].append(r)
    assigned: dict[int, list[list[Received]]] = defaultdict(list)
    false_starts = 0
    valid = [i for i, t in enumerate(run.onset_wall) if t is not None]
    for uid in order:
        evs = groups[uid]
        start = next((r for r in evs if r.type == "speech_start"), None)
        if start is None:
            continue
        # The utterance whose onset precedes this speech_start's arrival most closely, if the
        # speech_start came before that utterance's end (plus hangover and a margin).
        owner = None
        for i in valid:
            on, off = run.onset_wall[i], run.offset_wall[i]
            assert on is not None and off is not None
            if on - 0.1 <= start.arrival <= off + hangover_ms / 1000 + 1.0:
                owner = i
        if owner is None:
            false_starts += 1
        else:
            assigned[owner].append(evs)
    per_utt: list[dict[str, Any]] = []
    lags: list[float] = []
    intervals: list[float] = []
    for i, u in enumerate(utts):
        on, off = run.onset_wall[i], run.offset_wall[i]
        row: dict[str, Any] = {
            "index": i,
            "text": u.text,
            "engine": u.engine,
            "speech_s": round(u.offset - u.onset, 3),
            "located": on is not None,
            "segments": len(assigned.get(i, [])),
        }
        segs = assigned.get(i, [])
        if on is not None and off is not None and segs:
            first, last = segs[0], segs[-1]
            start = next(r for r in first if r.type == "speech_start")
            partials = [r for seg in segs for r in seg if r.type == "partial"]
            final = next((r for r in last if r.type == "final"), None)
            row["speech_start_ms"] = 1000 * (start.arrival - on)
            row["first_partial_ms"] = 1000 * (partials[0].arrival - on) if partials else None
            row["final_ms"] = 1000 * (final.arrival - off) if final else None
            row["final_reason"] = final.message.get("reason") if final else None
            row["partials"] = len(partials)
            opened, closed = run.open_wall[i], run.close_wall[i]
            row["gate_to_speech_start_ms"] = None if opened is None else 1000 * (start.arrival - opened)
            row["gate_to_final_ms"] = None if closed is None or final is None else 1000 * (final.arrival - closed)
            row["vad_tail_ms"] = None if u.gate_voiced_end is None else 1000 * (u.gate_voiced_end - u.offset)
            lags += [1000 * (p.arrival - p.message["end"]) for p in partials]
            intervals += [1000 * (b.arrival - a.arrival) for a, b in itertools.pairwise(partials)]
        per_utt.append(row)
    finals = [r["final_ms"] for r in per_utt if r.get("final_ms") is not None]
    target = hangover_ms + TARGET_MARGIN_MS
    rtfs = [float(rec["rtf"]) for rec in run.logs if rec.get("event") == "utterance" and rec.get("rtf") is not None]
    summary = {
        "source": run.source,
        "utterances": len(utts),
        "recognized": sum(1 for r in per_utt if r.get("final_ms") is not None),
        "split": sum(1 for r in per_utt if r["segments"] > 1),
        "false_starts": false_starts,
        "speech_start_ms": summarize([r["speech_start_ms"] for r in per_utt if "speech_start_ms" in r]),
        "first_partial_ms": summarize(
            [r["first_partial_ms"] for r in per_utt if r.get("first_partial_ms") is not None]
        ),
        "final_ms": summarize(finals),
        "final_target_ms": target,
        "final_within_target": (sum(1 for f in finals if f <= target) / len(finals)) if finals else None,
        "final_minus_hangover_ms": summarize([f - hangover_ms for f in finals]),
        "vad_tail_ms": _collect(per_utt, "vad_tail_ms"),
        "gate_to_speech_start_ms": _collect(per_utt, "gate_to_speech_start_ms"),
        "gate_to_final_ms": _collect(per_utt, "gate_to_final_ms"),
        "partial_lag_ms": summarize(lags),
        "partial_interval_ms": summarize(intervals),
        "worker_rtf": summarize(rtfs),
        "notes": run.notes,
    }
    return summary, per_utt


def _collect(rows: list[dict[str, Any]], key: str) -> dict[str, float | int | None]:
    return summarize([r[key] for r in rows if r.get(key) is not None])


def _med(key: str) -> Any:
    return lambda r: r[key]["median"]


def _hi(key: str, q: str = "p90") -> Any:
    return lambda r: r[key][q]


COLUMNS = (
    Column("source", "source"),
    Column("final pass", lambda r: r.get("final_pass", "streaming")),
    Column("utts", lambda r: f"{r['recognized']}/{r['utterances']}"),
    Column("split", "split"),
    Column("false", "false_starts"),
    Column("start med", _med("speech_start_ms"), ".0f"),
    Column("partial med", _med("first_partial_ms"), ".0f"),
    Column("partial p90", _hi("first_partial_ms"), ".0f"),
    Column("final med", _med("final_ms"), ".0f"),
    Column("final p90", _hi("final_ms"), ".0f"),
    Column("final max", _hi("final_ms", "max"), ".0f"),
    Column("target", "final_target_ms", ".0f"),
    Column("met", lambda r: None if r["final_within_target"] is None else f"{100 * r['final_within_target']:.0f}%"),
    Column("tail med", _med("vad_tail_ms"), ".0f"),
    Column("gate>final med", _med("gate_to_final_ms"), ".0f"),
    Column("gate>final max", _hi("gate_to_final_ms", "max"), ".0f"),
    Column("lag med", _med("partial_lag_ms"), ".0f"),
    Column("lag max", _hi("partial_lag_ms", "max"), ".0f"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Latencies in ms.")
    add_model_args(ap)
    ap.add_argument("--int8", action="store_true", help="run the daemon with model.int8: true")
    ap.add_argument("--utterances", type=int, default=8, help="utterances per source (full run: 30)")
    ap.add_argument("--sources", default="mic,file", help="comma-separated: mic (virtual microphone), file")
    ap.add_argument("--engines", default="espeak-ng,flite", help="speech synthesizers, used in turn")
    ap.add_argument("--lead-s", type=float, default=2.0, help="silence before the first utterance")
    ap.add_argument("--gap-s", type=float, default=2.0, help="silence after each utterance (> hangover)")
    ap.add_argument("--block-ms", type=int, default=_AUDIO.block_ms, help=f"audio.block_ms (default {_AUDIO.block_ms})")
    ap.add_argument(
        "--idle-poll-ms",
        type=int,
        default=_AUDIO.idle_poll_ms,
        help=f"audio.idle_poll_ms (default {_AUDIO.idle_poll_ms})",
    )
    ap.add_argument("--chunk-ms", type=int, default=640, help="recognizer.chunk_ms")
    ap.add_argument("--hangover-ms", type=int, default=600, help="vad.hangover_ms")
    ap.add_argument("--final-passes", default="full,streaming", help="recognizer.final_pass values, each a run")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    if bad := set(sources) - {"mic", "file"}:
        ap.error(f"unknown source(s): {', '.join(sorted(bad))}")
    passes = [p for p in args.final_passes.split(",") if p]
    if not passes or (bad := set(passes) - {"full", "streaming"}):
        ap.error(f"--final-passes: full and/or streaming, not {args.final_passes!r}")
    if args.gap_s * 1000 <= args.hangover_ms + 300:
        ap.error("--gap-s must exceed the hangover by at least 0.3 s, or utterances merge")
    if "mic" in sources and (why := pulse_missing()):
        ap.error(why)
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="amb-lat-", dir="/tmp"))
    try:
        model = resolve_model(args.model, args.random_config, workdir)
        utts, signal = build_script(args, workdir)
        wav = write_wav(workdir / "speech.wav", signal)
        utts = gate_schedule(utts, read_audio(wav), args.hangover_ms)  # the samples the daemon reads
        summaries: list[dict[str, Any]] = []
        details: dict[str, list[dict[str, Any]]] = {}
        notes: list[str] = []
        for source, final_pass in itertools.product(sources, passes):
            run_args = argparse.Namespace(**{**vars(args), "final_pass": final_pass})
            run = (run_mic if source == "mic" else run_file)(run_args, workdir, model.path, utts, wav)
            summary, per_utt = analyse(run, utts, args.hangover_ms)
            summary["final_pass"] = final_pass
            summaries.append(summary)
            details[f"{source}/{final_pass}"] = per_utt
            notes += run.notes
            if summary["recognized"] < len(utts):
                notes.append(f"{source}/{final_pass}: {len(utts) - summary['recognized']} utterance(s) got no final")
        print_table(
            f"daemon latency (ms), {len(utts)} utterances of {signal.size / SAMPLE_RATE:.0f} s of audio, "
            f"chunk {args.chunk_ms} ms, hangover {args.hangover_ms} ms, block {args.block_ms} ms, "
            f"{'int8' if args.int8 else 'fp32'}, {model.label}",
            COLUMNS,
            summaries,
        )
        settings = {k: v for k, v in vars(args).items() if k not in ("model", "json")}
        write_results(
            args.json,
            benchmark="daemon_latency",
            machine=machine,
            settings=settings,
            results=summaries,
            model=model,
            notes=notes,
            extra={"utterances": details},
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
