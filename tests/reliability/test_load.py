"""100 clients at once on the real daemon while it transcribes about 23 s of speech in real time:
every client receives every final (the ones in the event log, in order), those subscribed to
everything see consecutive ``seq`` values, nobody is disconnected. The daemon's CPU time and peak
resident memory over the run are printed (``-s``); docs/reliability.md records them. The longer
version is ``bench/load.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from reliability_helpers import ClientPool, daemon_config, log_records

from ambient.devtools.daemon import DaemonProcess, write_config

pytestmark = pytest.mark.slow

CLIENTS = 100


def test_a_hundred_clients_all_receive_every_final(
    tiny_checkpoint: Path, speech_file: Path, compose: Callable[..., Path], workdir: Path
) -> None:
    audio = compose(workdir / "twice.wav", [speech_file, speech_file])  # 8 utterances, ~23 s
    data = daemon_config(workdir, tiny_checkpoint, audio={"source": "file", "file": str(audio), "realtime": True})
    daemon = DaemonProcess(config=write_config(workdir / "config.yaml", data), workdir=workdir, stderr="pipe")
    pool: ClientPool | None = None
    try:
        daemon.wait_ready()
        proc = psutil.Process(daemon.pid)
        # Even clients take everything, odd ones only finals (what `ambient listen` asks for).
        pool = ClientPool(workdir / "ambient.sock", CLIENTS, subscribe=lambda i: None if i % 2 == 0 else ["final"])
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        peak_rss = 0
        while daemon.proc.poll() is None:  # the daemon exits at the end of the file
            try:
                peak_rss = max(peak_rss, proc.memory_info().rss)
                cpu1, t1 = proc.cpu_times(), time.monotonic()
            except psutil.NoSuchProcess:
                break
            time.sleep(0.25)
        assert daemon.wait() == 0, daemon.stderr_text()
        pool.wait_eof()
    finally:
        if pool is not None:
            pool.close()
        daemon.close()

    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    print(
        f"\n{CLIENTS} clients, {t1 - t0:.1f} s: daemon CPU {100 * cpu_s / (t1 - t0):.1f} % of one core, "
        f"peak RSS {peak_rss / 2**20:.0f} MiB"
    )
    logged = [r["utterance_id"] for r in log_records(workdir / "events.jsonl") if r["type"] == "final"]
    assert len(logged) >= 4
    for i, msgs in enumerate(pool.messages):
        finals = [m["utterance_id"] for m in msgs if m.get("type") == "final"]
        assert finals == logged, f"client {i} received {len(finals)} of {len(logged)} finals"
        assert msgs[-1] == {"type": "bye", "reason": "shutdown"}, f"client {i} ended with {msgs[-1]}"
        if i % 2 == 0:
            seqs = [m["seq"] for m in msgs if "seq" in m]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"client {i} missed events"
    assert not daemon.events_logged("client too slow, disconnecting")
    assert daemon.proc.returncode == 0
