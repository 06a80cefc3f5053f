"""Two CPU ranks under torchrun (gloo): both step in lockstep, only rank 0 writes, resume loads on all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ambient.train.checkpointing import list_training_states
from ambient.train.manifest import Utterance, write_manifest
from ambient.train.metrics import read_metrics

torch.set_num_threads(1)

RANKS = 2
MAX_STEPS = 8


def _corpus(folder: Path, name: str, n: int, seed: int) -> Path:
    """Noisy harmonic tones with short transcripts: enough for CTC to train on, no synthesizer needed."""
    rng = np.random.default_rng(seed)
    words = ("on", "off", "up", "down")
    utts = []
    for i in range(n):
        seconds = float(rng.uniform(0.8, 2.0))
        t = np.arange(int(seconds * 16000)) / 16000
        f0 = float(rng.uniform(100, 250))
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.1
        wave = (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        path = folder / f"{name}{i:02d}.flac"
        sf.write(path, wave, 16000)
        text = " ".join(words[j] for j in rng.integers(0, 4, size=2))
        utts.append(Utterance(audio=str(path), text=text, duration=seconds, speaker=f"s{i % 3}", source="tone"))
    manifest = folder / f"{name}.jsonl"
    write_manifest(manifest, utts)
    return manifest


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return _corpus(folder, "train", 24, seed=0), _corpus(folder, "dev", 5, seed=1)


def _config(path: Path, train: Path, dev: Path, run_dir: Path) -> Path:
    cfg: dict[str, Any] = {
        "model": {"d_model": 32, "n_heads": 2, "d_ff": 64, "n_layers": 2, "conv_kernel": 3, "sub_channels": 8},
        "data": {"train": [{"path": str(train)}], "dev": str(dev), "max_batch_seconds": 6, "num_workers": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "max_steps": MAX_STEPS},
        "run": {
            "output_dir": str(run_dir),
            "threads": 1,
            "dev_every_steps": 4,
            "log_every_steps": 2,
            "checkpoint_every_steps": 4,
            "checkpoint_every_minutes": None,
            "keep_checkpoints": 5,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _torchrun(config: Path, log: Path, *extra: str) -> list[dict[str, Any]]:
    """Run the job to completion; returns the JSON log lines of all ranks."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={RANKS}",
        "-m",
        "ambient.train",
        "--config",
        str(config),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent).returncode
    text = log.read_text()
    assert rc == 0, text[-4000:]
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def _finished(lines: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["rank"]): r for r in lines if r.get("event") == "training stopped"}


def test_two_gloo_ranks_train_in_lockstep_and_resume(data: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = data
    run_a = tmp_path / "a"
    lines = _torchrun(_config(tmp_path / "a.yaml", train, dev, run_a), tmp_path / "a.log")

    done = _finished(lines)
    assert sorted(done) == [0, 1], "both ranks must finish"
    assert all(r["step"] == MAX_STEPS for r in done.values())
    # DDP averaged the gradients: both ranks hold the same weights and consumed as many batches
    assert done[0]["weights_sha256"] == done[1]["weights_sha256"]
    assert (done[0]["epoch"], done[0]["batch"]) == (done[1]["epoch"], done[1]["batch"])

    # one writer: states, metrics and exports come from rank 0 only
    savers = [r for r in lines if r.get("event") == "training state saved"]
    assert [r["step"] for r in savers] == [4, 8] and all(r.get("rank") == 0 for r in savers)
    assert [s for s, _ in list_training_states(run_a)] == [4, 8]
    records = read_metrics(run_a / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]
    dev_records = [r for r in records if r["kind"] == "dev"]
    assert [r["step"] for r in dev_records] == [4, 8]
    assert all(r["utterances"] == 5 for r in dev_records), "dev shards of both ranks are summed"
    assert (run_a / "last.pt").exists() and (run_a / "best.pt").exists()
    state = torch.load(run_a / "state-000000008.pt", weights_only=True)
    assert len(state["ranks"]) == RANKS
    assert not torch.equal(state["ranks"][0]["rng"], state["ranks"][1]["rng"]), "ranks draw different dropout"

    # resume a copy from step 4 on both ranks: the same weights as the uninterrupted job
    run_b = tmp_path / "b"
    run_b.mkdir()
    shutil.copy(run_a / "state-000000004.pt", run_b)
    lines_b = _torchrun(_config(tmp_path / "b.yaml", train, dev, run_b), tmp_path / "b.log", "--resume")
    resumed = [r for r in lines_b if r.get("event") == "resumed"]
    assert [r["step"] for r in resumed] == [4]
    done_b = _finished(lines_b)
    assert sorted(done_b) == [0, 1]
    assert done_b[0]["weights_sha256"] == done_b[1]["weights_sha256"] == done[0]["weights_sha256"]
