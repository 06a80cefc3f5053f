"""Helpers for the daemon tests: their base configuration and checks of the utterance contract.
The daemon as a subprocess and its clients are in :mod:`ambient.devtools`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ambient.devtools.client import Message
from ambient.devtools.daemon import daemon_config


def base_config(workdir: Path, model: Path, **audio: Any) -> dict[str, Any]:
    """A config for tests: files in ``workdir``, the tiny model, JSON logs, a 3 s stall timeout and
    no fsync of the event log; ``audio`` is merged into the audio section."""
    return daemon_config(workdir, model, audio={"stall_timeout_s": 3.0, **audio}, event_log={"fsync": "never"})


def utterances(events: Sequence[Message]) -> dict[str, list[Message]]:
    """Group speech events by utterance and check the contract: each utterance is
    ``speech_start``, then partials, then exactly one ``final``; utterances do not overlap;
    ``seq`` increases. Returns ``{utterance_id: [events]}`` in order."""
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seq not increasing: {seqs}"
    groups: dict[str, list[Message]] = {}
    open_id: str | None = None
    for e in events:
        kind = e["type"]
        if kind not in ("speech_start", "partial", "final"):
            continue
        uid = e["utterance_id"]
        if kind == "speech_start":
            assert open_id is None, f"speech_start {uid} while {open_id} is open"
            assert uid not in groups, f"utterance id {uid} reused"
            groups[uid] = [e]
            open_id = uid
        else:
            assert uid == open_id, f"{kind} for {uid} but the open utterance is {open_id}"
            groups[uid].append(e)
            if kind == "final":
                open_id = None
    for uid, evs in groups.items():
        assert evs[0]["type"] == "speech_start"
        assert [e["type"] for e in evs[1:-1]] == ["partial"] * (len(evs) - 2), f"{uid}: {evs}"
    return groups


def finals_of(groups: dict[str, list[Message]]) -> list[Message]:
    """The final of each closed utterance, in order."""
    return [evs[-1] for evs in groups.values() if evs[-1]["type"] == "final"]


def check_final(final: Message) -> None:
    """Field-level sanity of a final (values a random model cannot get wrong)."""
    assert isinstance(final["text"], str)
    assert 0.0 <= final["confidence"] <= 1.0
    assert final["offset_start"] <= final["offset_end"]
    assert final["start"] <= final["end"]
    for w in final["words"]:
        assert w["word"] and " " not in w["word"]
        assert w["offset_start"] <= w["offset_end"] and w["start"] <= w["end"]
        assert 0.0 <= w["confidence"] <= 1.0
    if final["words"]:
        assert final["text"] == " ".join(w["word"] for w in final["words"])


def pcm16(audio: Any) -> bytes:
    """float32 samples in [-1, 1] -> s16le bytes."""
    import numpy as np

    a = np.clip(np.asarray(audio, dtype=np.float32) * 32768.0, -32768, 32767).astype("<i2")
    return a.tobytes()
