"""The speaker-disjoint dev set: whole speakers held out, machine transcripts never evaluate,
the trainer refuses a held-out speaker, the manifests' speaker column, and command sentences."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ambient.train.manifest import Utterance, read_manifest, write_manifest
from ambient.train.readers import (
    MACHINE_TRANSCRIBED,
    DevSplit,
    UnseenRule,
    read_tsv,
    split_speakers,
)


def _utt(source: str, speaker: str, i: int, sub: str = "") -> Utterance:
    return Utterance(
        audio=f"/d/{source}/{sub}{speaker}_{i}.opus", text=f"word {i}", duration=1.0, speaker=speaker, source=source
    )


def _corpus() -> list[Utterance]:
    utts = []
    for s in range(40):
        for i in range(6):
            utts.append(_utt("speech_commands", f"spk{s}", i))
            utts.append(_utt("speechocean762", f"so{s}", i, sub="test/" if s % 2 else "train/"))
    for i in range(30):
        utts.append(_utt("coffee_commands", "coffee_commands", i))
        utts.append(_utt("cathy_arctic", "cathy", i))
    return utts


def test_held_out_speakers_never_train_and_machine_transcripts_never_evaluate() -> None:
    utts = _corpus()
    rules = (UnseenRule("speech_commands", 0.25), UnseenRule("speechocean762", 0.5, under="/test/"))
    parts = split_speakers(utts, DevSplit(percent=0.0, speakers=frozenset()), rules=rules, per_speaker=4)
    unseen_spk = {(u.source, u.speaker) for u in parts.unseen + parts.unseen_dropped}
    train_spk = {(u.source, u.speaker) for u in parts.train}
    assert unseen_spk and not unseen_spk & train_spk
    # Every utterance lands in exactly one part.
    assert len(parts.train) + len(parts.seen) + len(parts.unseen) + len(parts.unseen_dropped) == len(utts)
    # At most four utterances of each held-out speaker evaluate; the rest are in neither part.
    assert max(Counter((u.source, u.speaker) for u in parts.unseen).values()) == 4
    assert all(u.source not in MACHINE_TRANSCRIBED for u in parts.unseen + parts.seen)
    # speechocean762's held-out speakers come from its published test half only.
    assert all("/test/" in u.audio for u in parts.unseen if u.source == "speechocean762")
    n_commands = len({u.speaker for u in parts.unseen if u.source == "speech_commands"})
    assert 4 <= n_commands <= 18  # about a quarter of 40, chosen by hash
    # Deterministic.
    again = split_speakers(utts, DevSplit(percent=0.0, speakers=frozenset()), rules=rules, per_speaker=4)
    assert again == parts


@pytest.mark.parametrize(
    ("rule", "message"),
    [(UnseenRule("an4", 0.0), "must be in"), (UnseenRule("coffee_commands", 1.0), "machine transcripts")],
)
def test_bad_rules_are_refused(rule: UnseenRule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_speakers(_corpus(), DevSplit(), rules=(rule,))


def test_speaker_column_overrides_and_empty_column_falls_back(tmp_path: Path) -> None:
    for name in ("a", "b"):
        sf.write(str(tmp_path / f"{name}.wav"), np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "m.tsv").write_text("a.wav\tyes\tspk7\nb.wav\tno\t\n")
    res = read_tsv(tmp_path / "m.tsv", speaker="corpus", source="corpus")
    assert [(u.text, u.speaker) for u in res.utterances] == [("yes", "spk7"), ("no", "corpus")]


def _ambient(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ambient", *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


def test_cli_unseen_out_writes_disjoint_parts(tmp_path: Path) -> None:
    root = tmp_path / "data"
    corpus = root / "speech_commands"
    (corpus / "opus").mkdir(parents=True)
    lines = []
    for s in range(12):
        for i in range(3):
            name = f"opus/s{s}_{i}.wav"
            sf.write(str(corpus / name), np.zeros(1600, dtype=np.float32), 16000)
            lines.append(f"{name}\tyes\tspk{s}")
    (corpus / "manifest.tsv").write_text("\n".join(lines) + "\n")
    out, dev, unseen = tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "unseen.jsonl"
    proc = _ambient(
        "data", "prepare", "shared", str(root), "--out", str(out), "--dev-out", str(dev), "--unseen-out", str(unseen)
    )
    assert proc.returncode == 0, proc.stderr
    train_u, unseen_u = read_manifest(out), read_manifest(unseen)
    assert unseen_u and not {u.speaker for u in unseen_u} & {u.speaker for u in train_u}
    assert read_manifest(tmp_path / "unseen-commands.jsonl") == unseen_u
    assert read_manifest(tmp_path / "unseen-sentences.jsonl") == []


def test_trainer_refuses_a_held_out_speaker(tmp_path: Path) -> None:
    from ambient.errors import ConfigError
    from ambient.train.config import load_train_config
    from ambient.train.trainer import Trainer

    sf.write(str(tmp_path / "a.wav"), np.zeros(16000, dtype=np.float32), 16000)
    u = Utterance(audio=str(tmp_path / "a.wav"), text="yes", duration=1.0, speaker="spk1", source="speech_commands")
    write_manifest(tmp_path / "train.jsonl", [u])
    write_manifest(tmp_path / "unseen.jsonl", [u])
    smoke = Path(__file__).resolve().parents[2] / "configs" / "train" / "smoke.yaml"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {
                "extends": str(smoke),
                "data": {"train": [{"path": "train.jsonl"}], "dev": None, "held_out": ["unseen.jsonl"]},
                "run": {"output_dir": "run"},
            }
        )
    )
    with pytest.raises(ConfigError, match=r"speaker 'spk1' of 'speech_commands', held out by .*unseen\.jsonl"):
        Trainer(cfg=load_train_config(cfg))


def test_command_sentences_are_normalized_commands() -> None:
    pytest.importorskip("hassil")
    from ambient.text.normalize import normalize_text
    from ambient.train.command_text import AREAS, command_sentences

    sentences = command_sentences(per_intent=50, seed=1)
    assert len(sentences) > 500 and len(set(sentences)) == len(sentences)
    assert all(normalize_text(s) == s for s in sentences)
    assert any(s.startswith(("turn off", "turn on")) for s in sentences)
    assert any(area in s for s in sentences for area in AREAS)
    assert command_sentences(per_intent=50, seed=1) == sentences
