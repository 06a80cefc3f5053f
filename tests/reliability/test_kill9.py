"""``kill -9`` of the daemon at random moments while it transcribes speech with clients connected,
then a restart on the same socket and event log, three times over. Afterwards the event log parses
completely (every line of every file, no torn line), and every final that any client received is
in the log, byte for byte the same event. The kill moments come from a fixed seed (printed on
failure; AMBIENT_KILL9_SEED picks another), and the first kill waits for a client to hold a final,
so the comparison always has something to compare."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import daemon_config, log_records

from ambient.devtools.client import Client
from ambient.devtools.daemon import DaemonProcess, write_config

pytestmark = pytest.mark.slow

ROUNDS = 3
#: The default seed of the kill moments (reproducible runs; AMBIENT_KILL9_SEED overrides it).
SEED = 9


def test_kill_9_at_random_moments_loses_no_final_a_client_saw(
    tiny_checkpoint: Path, speech_file: Path, workdir: Path
) -> None:
    seed = int(os.environ.get("AMBIENT_KILL9_SEED", SEED))
    rng = random.Random(seed)
    data = daemon_config(
        workdir,
        tiny_checkpoint,
        audio={"source": "file", "file": str(speech_file), "realtime": True},
        event_log={"fsync": "always", "include_partials": True},  # more writes to interrupt
    )
    cfg = write_config(workdir / "config.yaml", data)
    sock = workdir / "ambient.sock"
    received: dict[str, dict[str, Any]] = {}
    kill_after: list[float] = []
    for round_ in range(ROUNDS):
        daemon = DaemonProcess(config=cfg, workdir=workdir, stderr="pipe")
        clients: list[Client] = []
        try:
            daemon.wait_ready()
            clients = [Client(sock), Client(sock, subscribe=["final"])]
            t0 = time.monotonic()
            delay = rng.uniform(1.0, 9.0)  # the file holds four utterances in about 11 s
            if round_ == 0:  # the first kill comes a moment after a client received a final
                clients[1].wait_type("final", timeout=30)
                delay = time.monotonic() - t0 + rng.uniform(0.0, 1.5)
            kill_after.append(round(delay, 3))
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
            daemon.signal(signal.SIGKILL)
            assert daemon.wait() == -signal.SIGKILL
            for c in clients:
                c.wait_eof()
                assert not c.of_type("bye"), "a killed daemon cannot say goodbye"
                for m in c.of_type("final"):
                    received[m["utterance_id"]] = m
        finally:
            for c in clients:
                c.close()
            daemon.close()
        assert sock.exists()  # left behind by the crash; the next start must cope with it

    # One more start repairs a torn tail (if any) and runs cleanly; then everything must parse.
    daemon = DaemonProcess(config=cfg, workdir=workdir, stderr="pipe")
    try:
        daemon.wait_ready()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
    context = f"seed {seed}, kills after {kill_after} s"
    records = log_records(workdir / "events.jsonl")  # strict: every line of every file
    logged = {r["utterance_id"]: r for r in records if r["type"] == "final"}
    assert received, f"no client received a final before the kills ({context})"
    missing = sorted(set(received) - set(logged))
    assert not missing, f"finals received by clients but not in the log: {missing} ({context})"
    for uid, msg in received.items():
        assert {k: v for k, v in msg.items() if k != "seq"} == logged[uid], context
    starts = [r["state"] for r in records if r["type"] == "status"].count("listening")
    assert starts == ROUNDS + 1, context
