"""Many socket clients on one daemon: does every client receive every final, and what do the
clients cost the daemon?

Usage: python bench/load.py [--model PATH | --random-config NAME] [--clients 0,100] [--seconds 60]
                            [--json OUT]

For each client count the daemon transcribes the same file in real time (``audio.source: file``):
spoken commands from espeak-ng and flite with 1.5 s of silence between them, ``--seconds`` long.
The clients connect as soon as the daemon is ready; one selector thread in this process serves all
of them (a thread per client would measure this script more than the daemon). Even-numbered
clients receive every event, odd ones subscribe to finals only, as ``ambient listen`` does.

Reported per run: finals in the event log, clients that received all of them (in order, and with
consecutive ``seq`` for the clients taking everything), disconnections for slowness, the daemon's
CPU time over the run in % of one core, and its peak resident memory. The 0-client run is the
baseline: the difference is what the clients cost. tests/reliability/test_load.py is the short
version that runs in CI.
"""

from __future__ import annotations

import argparse
import json
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from _common import (
    SENTENCES,
    Column,
    add_model_args,
    compose,
    machine_info,
    print_table,
    resolve_model,
    synthesize,
    write_results,
    write_wav,
)

from ambient.devtools.daemon import DaemonProcess, daemon_config
from ambient.publish.eventlog import read_events

#: Silence before the first utterance: the clients connect meanwhile.
_LEAD_S = 2.0
_GAP_S = 1.5


class ClientPool:
    """``n`` socket clients read by one selector thread; each keeps the messages it received.

    Not :class:`ambient.devtools.client.Client` (a thread per connection): a hundred clients must
    not add a hundred Python threads to the machine whose load is being measured."""

    def __init__(self, path: Path, n: int) -> None:
        self.messages: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self.open = n
        self._socks = []
        for i in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            if i % 2:
                s.sendall(b'{"type":"subscribe","events":["final"]}\n')
            s.setblocking(False)
            self._socks.append(s)
        self._thread = threading.Thread(target=self._run, name="clients", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        bufs = [b""] * len(self._socks)
        for i, s in enumerate(self._socks):
            sel.register(s, selectors.EVENT_READ, i)
        while self.open:
            for key, _ in sel.select(timeout=0.5):
                i = key.data
                try:
                    data = self._socks[i].recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(self._socks[i])
                    self.open -= 1
                    continue
                *lines, bufs[i] = (bufs[i] + data).split(b"\n")
                self.messages[i].extend(json.loads(x) for x in lines if x.strip())
        sel.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        for s in self._socks:
            s.close()


def speech_program(seconds: float, workdir: Path) -> Path:
    """Spoken commands (alternating engines) with silence between, at least ``seconds`` long."""
    voices = [synthesize(text, engine=e, workdir=workdir) for text in SENTENCES for e in ("espeak-ng", "flite")]
    parts: list[Any] = [_LEAD_S]
    total, k = _LEAD_S, 0
    while total < seconds:
        clip = voices[k % len(voices)]
        parts += [clip, _GAP_S]
        total += len(clip) / 16000 + _GAP_S
        k += 1
    return write_wav(workdir / "program.wav", compose(parts))


def run_once(n_clients: int, audio: Path, model: Path, workdir: Path, int8: bool) -> dict[str, Any]:
    run_dir = workdir / f"c{n_clients}"
    run_dir.mkdir()
    cfg = daemon_config(
        run_dir, model, audio={"source": "file", "file": str(audio), "realtime": True}, model={"int8": int8}
    )
    daemon = DaemonProcess(workdir=run_dir, config=cfg)
    pool: ClientPool | None = None
    try:
        daemon.wait_ready()
        proc = psutil.Process(daemon.pid)
        pool = ClientPool(daemon.socket_path, n_clients) if n_clients else None
        rss0 = proc.memory_info().rss
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        cpu1, t1, peak = cpu0, t0, rss0
        while daemon.proc.poll() is None:  # the daemon exits at the end of the file
            try:
                peak = max(peak, proc.memory_info().rss)
                cpu1, t1 = proc.cpu_times(), time.monotonic()
            except psutil.NoSuchProcess:
                break
            time.sleep(0.5)
        code = daemon.proc.wait(timeout=60)
        if pool is not None:
            pool.join(timeout=30)
    finally:
        daemon.close()
    logged = [e["utterance_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "final"]
    complete = 0
    for i, msgs in enumerate(pool.messages if pool else []):
        finals = [m["utterance_id"] for m in msgs if m.get("type") == "final"]
        seqs = [m["seq"] for m in msgs if "seq" in m]
        gapless = i % 2 == 1 or seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        complete += finals == logged and gapless
    wall = t1 - t0
    return {
        "clients": n_clients,
        "seconds": round(wall, 1),
        "exit_status": code,
        "finals": len(logged),
        "clients_complete": complete,
        "disconnected_slow": sum(1 for r in daemon.logs() if r.get("event") == "client too slow, disconnecting"),
        "cpu_pct": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / wall if wall > 0 else None,
        "rss_start_mib": rss0 / 2**20,
        "rss_peak_mib": peak / 2**20,
    }


COLUMNS = (
    Column("clients", "clients"),
    Column("s", "seconds", ".0f"),
    Column("finals", "finals"),
    Column("complete", "clients_complete"),
    Column("too slow", "disconnected_slow"),
    Column("CPU %", "cpu_pct", ".1f"),
    Column("RSS MiB", "rss_start_mib", ".0f"),
    Column("peak MiB", "rss_peak_mib", ".0f"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--clients", default="0,100", help="client counts to run, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the transcribed speech")
    ap.add_argument("--int8", action="store_true", help="run the daemon with model.int8: true")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",") if c]
    if any(c < 0 or c > 10000 for c in counts) or args.seconds <= 0:
        ap.error("--clients takes counts from 0 to 10000 and --seconds must be positive")
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="amb-load-", dir="/tmp"))
    try:
        model = resolve_model(args.model, args.random_config, workdir)
        audio = speech_program(args.seconds, workdir)
        rows = []
        for n in counts:
            rows.append(run_once(n, audio, model.path, workdir, args.int8))
            r = rows[-1]
            print(
                f"  {n:5} clients: {r['clients_complete']}/{n} complete, {r['finals']} finals, "
                f"CPU {r['cpu_pct']:.1f}% of a core, peak RSS {r['rss_peak_mib']:.0f} MiB",
                flush=True,
            )
        print_table(f"{args.seconds:.0f} s of speech in real time ({model.label})", COLUMNS, rows)
        notes = [f"{r['clients'] - r['clients_complete']} client(s) missed finals" for r in rows if r["clients"]]
        notes = [n for n in notes if not n.startswith("0 ")]
        settings = {k: v for k, v in vars(args).items() if k not in ("model", "json")}
        write_results(
            args.json, benchmark="load", machine=machine, settings=settings, results=rows, model=model, notes=notes
        )
        return 1 if notes or any(r["exit_status"] != 0 for r in rows) else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
