"""Latency of the caption page: from the daemon's ``final`` event to its text in the browser's DOM.

Usage: python bench/captions_latency.py [--model PATH | --random-config NAME] [--utterances 12]
                                        [--json OUT] [--screenshot PNG]

The daemon listens on a private PulseAudio virtual microphone; speech synthesized at run time
(espeak-ng and flite, alternating) is played into it in real time. ``ambient captions`` follows the
daemon's socket and serves the page, which headless Debian chromium opens (selenium). Two clocks on
the same machine:

- the reference: a plain socket client of the daemon stamps each ``final`` with ``time.time()``
  right after reading it (what any local client experiences);
- the page: a ``MutationObserver`` stamps the moment the final's text entered the DOM with
  ``performance.timeOrigin + performance.now()`` (the same wall clock).

The difference is what the captions process and the browser add: the captions process's own read of
the socket, the hop to its event loop, the websocket frame, the page's JavaScript and the DOM
update. Empty finals are not shown by the page and are left out. Figures are the median, the 90th
percentile and the maximum over the utterances; ``--screenshot`` saves the page while a partial
shows below the fourth final or later (else at the end).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    SENTENCES,
    Column,
    add_model_args,
    compose,
    machine_info,
    print_table,
    resolve_model,
    summarize,
    synthesize,
    write_results,
    write_wav,
)

from ambient.devtools.browser import CaptionPage, browser_missing
from ambient.devtools.captions import CaptionsProcess
from ambient.devtools.client import EventRecorder
from ambient.devtools.daemon import DaemonProcess, daemon_config
from ambient.devtools.pulse import VirtualMic, pulse_missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(ap)
    ap.add_argument("--utterances", type=int, default=12, help="utterances played (default 12)")
    ap.add_argument("--gap-s", type=float, default=2.0, help="silence after each utterance (default 2.0)")
    ap.add_argument("--engines", default="espeak-ng,flite", help="speech engines, alternating")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the results here")
    ap.add_argument("--screenshot", type=Path, default=None, metavar="PNG", help="save the page at the end")
    args = ap.parse_args()
    for why in (pulse_missing(), browser_missing()):
        if why:
            sys.exit(f"captions_latency.py: error: {why}")
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="amb-cl-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        model = resolve_model(args.model, args.random_config, workdir)
        engines = args.engines.split(",")
        parts: list[np.ndarray | float] = [0.5]
        for i in range(args.utterances):
            parts += [synthesize(SENTENCES[i % len(SENTENCES)], engine=engines[i % len(engines)], workdir=workdir)]
            parts += [args.gap_s]
        wav = write_wav(workdir / "speech.wav", compose(parts))
        rows, stats, shown = _run(args, workdir, model.path, wav)
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    summary = summarize(latencies)
    print_table(
        "final event -> text in the page's DOM (ms)",
        [Column("finals shown", "n"), *(Column(k, k, ".1f") for k in ("median", "p90", "min", "max"))],
        [summary],
    )
    print(f"captions counters: {stats}")
    notes = [f"{args.utterances} utterances played, {len(rows)} finals, {len(latencies)} with text shown"]
    if model.random:
        notes.append("random weights: the texts are noise, the timing is real")
    write_results(
        args.json,
        benchmark="captions_latency",
        machine=machine,
        settings={"utterances": args.utterances, "gap_s": args.gap_s, "engines": engines},
        results=[{"final_to_dom_ms": summary, "finals": rows, "captions_stats": stats, "page_finals": shown}],
        model=model,
        notes=notes,
    )
    return 0


def _run(
    args: argparse.Namespace, workdir: Path, model: Path, wav: Path
) -> tuple[list[dict[str, object]], dict[str, int], int]:
    """Daemon on the virtual microphone, captions process, browser; play ``wav``; collect the times."""
    with VirtualMic(record=False) as mic:
        cfg = daemon_config(workdir, model, audio={"source": "mic"}, event_log={"fsync": "never"})
        daemon = DaemonProcess(workdir=workdir, config=cfg, env=mic.client_env())
        captions: CaptionsProcess | None = None
        rec: EventRecorder | None = None
        page: CaptionPage | None = None
        try:
            daemon.wait_ready()
            captions = CaptionsProcess(daemon.socket_path, workdir)
            rec = EventRecorder(daemon.socket_path, subscribe=["final"])
            page = CaptionPage(captions.url)
            page.wait_status("listening")
            time.sleep(1.0)  # let capture settle after startup
            player = mic.play(wav)
            shot = False
            while player.poll() is None:  # a screenshot with finals above and a partial in grey below
                if args.screenshot is not None and not shot and len(page.finals()) >= 4 and page.partial():
                    page.screenshot(args.screenshot)
                    shot = True
                time.sleep(0.05)
            if player.returncode != 0:
                raise RuntimeError("paplay failed")
            try:
                rec.wait(lambda ms: sum(r.type == "final" for r in ms) >= args.utterances, timeout=10.0, what="finals")
            except TimeoutError as e:
                print(f"note: {e}", file=sys.stderr)
            time.sleep(1.0)  # the page's last final
            seen = page.record()["finals"]
            rows: list[dict[str, object]] = []
            for r in rec.events("final"):
                uid, text = r.message["utterance_id"], r.message["text"]
                at = seen.get(uid, {}).get("at")
                latency = None if at is None else at - r.arrival * 1000.0
                rows.append({"utterance_id": uid, "text": text, "latency_ms": latency})
            if args.screenshot is not None:
                if not shot:
                    page.screenshot(args.screenshot)
                print(f"screenshot: {args.screenshot}")
            return rows, captions.stats(), len(page.finals())
        finally:
            if page is not None:
                page.close()
            if rec is not None:
                rec.close()
            if captions is not None:
                captions.stop()
            daemon.stop()
            daemon.close()


if __name__ == "__main__":
    sys.exit(main())
