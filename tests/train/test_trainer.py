"""The trainer end to end (real speech synthesis, real subprocesses, real signals) and its parts.

The end-to-end test trains a small model on espeak-ng digit sequences until it transcribes held-out
sequences, interrupts a copy of the run with SIGTERM and with ``kill -9``, resumes it, and checks
that the resumed run is bit-identical to the uninterrupted one; then ``ambient eval`` decodes the
dev set through the daemon's streaming recognizer.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from scipy.signal import resample_poly

from ambient.errors import CheckpointError, ConfigError
from ambient.train.checkpointing import list_training_states, load_latest_training_state, save_training_state
from ambient.train.config import ChunkConfig, OptimConfig, load_train_config, parse_train_config
from ambient.train.manifest import Utterance, write_manifest
from ambient.train.metrics import MetricsLog, plot_metrics, read_metrics
from ambient.train.trainer import LrSchedule, Trainer, sample_chunking

torch.set_num_threads(1)

WORDS = ("one", "two", "three", "four", "five", "six")
MAX_STEPS = 160


# ----------------------------------------------------------------------------- fixtures


def _espeak(text: str) -> np.ndarray:
    """One voice (en-us, 130 words/min) at 16 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "130", "--stdout", text], capture_output=True, check=True
    ).stdout
    data, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 22050
    return resample_poly(data, 160, 441).astype(np.float32)


def _synth_split(folder: Path, name: str, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    utts = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        wave = _espeak(text)
        path = folder / f"{name}{i:03d}.flac"
        sf.write(path, wave, 16000)
        utts.append(Utterance(audio=str(path), text=text, duration=len(wave) / 16000, speaker="en-us", source="espeak"))
    manifest = folder / f"{name}.jsonl"
    write_manifest(manifest, utts)
    return manifest


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """48 training and 8 dev utterances of 2-4 words from a six-word vocabulary."""
    folder = tmp_path_factory.mktemp("digits")
    return _synth_split(folder, "train", 48, seed=1), _synth_split(folder, "dev", 8, seed=2)


def _config(train: Path, dev: Path, run_dir: Path, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": {
            "d_model": 64,
            "n_heads": 2,
            "d_ff": 128,
            "n_layers": 2,
            "conv_kernel": 5,
            "sub_channels": 16,
            "dropout": 0.05,  # so that resuming must restore the dropout RNG to be exact
            "sharing": {"scheme": "repeat", "n_stored_blocks": 1},
        },
        "data": {
            "train": [{"path": str(train)}],
            "dev": str(dev),
            "max_batch_seconds": 12,
            "num_buckets": 2,
            "num_workers": 1,
        },
        "optim": {"lr": 3e-3, "warmup_steps": 20, "max_steps": MAX_STEPS, "weight_decay": 0.0},
        "chunk": {"full_context_prob": 0.5, "max_chunk_frames": 16},
        "run": {
            "output_dir": str(run_dir),
            "threads": 1,
            "dev_every_steps": 40,
            "log_every_steps": 10,
            "checkpoint_every_steps": 40,
            "checkpoint_every_minutes": None,
            "keep_checkpoints": 10,
        },
    }
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        cfg[section][key] = value
    return cfg


def _write_yaml(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=_env(), cwd=log.parent
    )


def _wait_for(proc: subprocess.Popen[bytes], predicate: Any, what: str, log: Path) -> None:
    """Poll until ``predicate()``; fail if the process exits first (no time limit but the test's)."""
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"process exited (rc {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def _finish(proc: subprocess.Popen[bytes], log: Path) -> None:
    rc = proc.wait()
    assert rc == 0, log.read_text()[-3000:]


def _train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"}


def _state_model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- end to end


def test_train_converges_resumes_exactly_and_evaluates(digits: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = digits
    # --- A: an uninterrupted run through torchrun's entry point (one process) -------------
    run_a = tmp_path / "run_a"
    cfg_a = _write_yaml(tmp_path / "a.yaml", _config(train, dev, run_a))
    log_a = tmp_path / "a.log"
    _finish(_start(["-m", "ambient.train", "--config", str(cfg_a)], log_a), log_a)

    records = read_metrics(run_a / "metrics.jsonl")
    dev_records = [r for r in records if r["kind"] == "dev"]
    assert [r["step"] for r in dev_records] == [40, 80, 120, 160]
    assert dev_records[0]["wer_stream"] > 0.5, "an untrained model should not already transcribe"
    assert dev_records[-1]["wer_full"] < 0.3 and dev_records[-1]["wer_stream"] < 0.3, dev_records
    losses_a = _train_losses(run_a)
    assert sorted(losses_a) == list(range(10, MAX_STEPS + 1, 10))
    assert losses_a[MAX_STEPS] < 0.25 * losses_a[10]
    train_rec = [r for r in records if r["kind"] == "train"][-1]
    assert train_rec["audio_hours"] > 0 and train_rec["audio_s_per_s"] > 0 and train_rec["lr"] > 0
    for name in ("best.pt", "best.pt.sha256", "last.pt", "last.pt.sha256", "loss.png", "dev_wer.png", "lr.png"):
        assert (run_a / name).exists(), name
    assert [s for s, _ in list_training_states(run_a)] == [40, 80, 120, 160]

    from ambient.model.checkpoint import load_model

    best = load_model(run_a / "best.pt")
    info = best.meta["training"]
    assert info["steps"] in (120, 160)
    assert info["dev_wer_stream"] == pytest.approx(min(r["wer_stream"] for r in dev_records), abs=1e-5)
    assert info["audio_hours_seen"] > 0 and info["data"][0]["manifest"] == str(train)
    assert float(best.norm_std.mean()) != 1.0, "normalization statistics must be stored in the model"

    # --- B: a copy of A's run from step 40, stopped by SIGTERM, killed with -9, resumed -----
    run_b = tmp_path / "run_b"
    run_b.mkdir()
    shutil.copy(run_a / "state-000000040.pt", run_b)
    shutil.copy(run_a / "metrics.jsonl", run_b)  # later records must be dropped on resume
    cfg_b = _write_yaml(tmp_path / "b.yaml", _config(train, dev, run_b))
    log_b = tmp_path / "b.log"
    train_cmd = ["-m", "ambient", "train", "--config", str(cfg_b), "--resume"]

    proc = _start(train_cmd, log_b)
    _wait_for(proc, lambda: max((s for s, _ in list_training_states(run_b)), default=0) >= 80, "step 80", log_b)
    proc.send_signal(signal.SIGTERM)  # graceful: saves the state of the step it is at
    _finish(proc, log_b)
    stopped_at = max(s for s, _ in list_training_states(run_b))
    assert 80 <= stopped_at < MAX_STEPS
    assert '"stopped_by": "signal"' in log_b.read_text()

    proc = _start(train_cmd, log_b)
    _wait_for(proc, lambda: max((s for s, _ in list_training_states(run_b)), default=0) >= 120, "step 120", log_b)
    proc.kill()  # SIGKILL: no chance to save anything
    assert proc.wait() == -signal.SIGKILL

    _finish(_start(train_cmd, log_b), log_b)
    final_a, final_b = _state_model(run_a / "state-000000160.pt"), _state_model(run_b / "state-000000160.pt")
    assert final_a.keys() == final_b.keys()
    for k in final_a:
        assert torch.equal(final_a[k], final_b[k]), f"{k} differs after resuming"
    losses_b = _train_losses(run_b)
    assert sorted(losses_b) == sorted(losses_a), "metrics must read as one run, without repeated steps"
    assert losses_b == losses_a, "the resumed run must reproduce the uninterrupted one exactly"

    # --- eval through the streaming recognizer ------------------------------------------------
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ambient",
            "eval",
            "--model",
            str(run_a / "best.pt"),
            str(dev),
            "--json",
            "--utterances",
            "--final-pass",
            "streaming",  # what the trainer's dev WER measures
        ],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["utterances"] == 8 and report["chunk_ms"] == 640
    exact = [u for u in report["utterances_detail"] if u["reference"] == u["hypothesis"]]
    assert len(exact) >= 4, report["utterances_detail"]
    # the dev WER logged during training used the same chunking as the streaming recognizer
    assert report["wer"] == pytest.approx(info["dev_wer_stream"], abs=1e-6)
    assert set(report["by_source"]) == {"espeak"}


# ----------------------------------------------------------------------------- configuration


def _minimal(tmp_path: Path) -> dict[str, Any]:
    return {"data": {"train": [{"path": "train.jsonl"}]}, "run": {"output_dir": "run"}}


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    data = _minimal(tmp_path)
    data["data"]["dev"] = "/abs/dev.jsonl"
    data["data"]["augment"] = {"noise_manifest": "../noise/manifest.tsv"}
    cfg = load_train_config(_write_yaml(cfg_dir / "t.yaml", data))
    assert cfg.data.train[0].path == cfg_dir / "train.jsonl"
    assert cfg.data.dev == Path("/abs/dev.jsonl")
    assert cfg.run.output_dir == cfg_dir / "run"
    assert cfg.data.augment is not None and cfg.data.augment.noise_manifest == tmp_path / "noise" / "manifest.tsv"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"optim": {"learning_rate": 1}}, "unknown key 'optim.learning_rate'"),
        ({"model": {"d_modle": 64}}, "unknown key 'model.d_modle'"),
        ({"model": {"vocab_size": 40}}, "model: vocab_size is set by the tokenizer"),
        ({"model": {"d_model": 66, "n_heads": 4}}, "d_model must split into n_heads heads"),
        ({"model": {"sharing": {"scheme": "repeat"}}}, "needs n_stored_blocks"),
        (
            {"model": {"sharing": {"scheme": "subcomponent", "shared_slots": ["att.qq"]}}},
            "sharing.shared_slots: unknown",
        ),
        ({"optim": {"lr": -1}}, "optim.lr: Input should be greater than 0"),
        ({"tokenizer": {"type": "sentencepiece"}}, "needs tokenizer.model"),
        ({"data": {"train": []}}, "data.train: List should have at least 1 item"),
        ({"run": {}}, "missing key 'run.output_dir'"),
        ({"data": {"train": [{"path": "x"}], "augment": {"speed_prob": 2}}}, "data.augment.speed_prob"),
    ],
)
def test_config_errors_are_one_line_and_name_the_key(tmp_path: Path, patch: dict[str, Any], message: str) -> None:
    data = _minimal(tmp_path)
    for section, values in patch.items():
        data[section] = values
    with pytest.raises(ConfigError) as e:
        load_train_config(_write_yaml(tmp_path / "bad.yaml", data))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(str(tmp_path / "bad.yaml"))


def test_config_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_train_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_train_config(tmp_path / "bad.yaml")


def test_extends_merges_sections_replaces_lists_and_keeps_each_files_paths(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "child").mkdir()
    parent = _minimal(tmp_path)
    parent["data"]["train"].append({"path": "more.jsonl", "weight": 2.0})
    parent["data"]["augment"] = {"noise_manifest": "noise.tsv", "speed_prob": 0.5}
    parent["optim"] = {"lr": 1e-3, "max_steps": 50}
    _write_yaml(tmp_path / "base" / "p.yaml", parent)
    child = {
        "extends": "../base/p.yaml",
        "data": {"train": [{"path": "new.jsonl"}], "augment": {"speed_prob": 0.1}},
        "optim": {"lr": 5e-4},
    }
    cfg = load_train_config(_write_yaml(tmp_path / "child" / "c.yaml", child))
    assert [m.path for m in cfg.data.train] == [tmp_path / "child" / "new.jsonl"]  # lists replace
    assert cfg.data.augment is not None
    assert cfg.data.augment.noise_manifest == tmp_path / "base" / "noise.tsv"  # the parent's own folder
    assert cfg.data.augment.speed_prob == 0.1
    assert (cfg.optim.lr, cfg.optim.max_steps) == (5e-4, 50)  # sections merge key by key
    assert cfg.run.output_dir == tmp_path / "base" / "run"

    _write_yaml(tmp_path / "base" / "p.yaml", {**parent, "extends": "../child/c.yaml"})
    with pytest.raises(ConfigError, match="goes round in a circle"):
        load_train_config(tmp_path / "child" / "c.yaml")
    _write_yaml(tmp_path / "child" / "c.yaml", {**child, "extends": ["p.yaml"]})
    with pytest.raises(ConfigError, match="extends: must be the path"):
        load_train_config(tmp_path / "child" / "c.yaml")
    _write_yaml(tmp_path / "child" / "c.yaml", {**child, "extends": "gone.yaml"})
    with pytest.raises(ConfigError, match=r"gone\.yaml: config file not found"):
        load_train_config(tmp_path / "child" / "c.yaml")


_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


@pytest.mark.parametrize("name", sorted(p.name for p in _CONFIGS.glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    from ambient.model.asr import AsrModel
    from ambient.train.trainer import build_tokenizer

    cfg = load_train_config(_CONFIGS / name)
    assert _CONFIGS.parent.parent in cfg.run.output_dir.parents  # runs/ (ignored by git), never configs/
    assert cfg.run.output_dir.parent.name == "runs"
    tokenizer = build_tokenizer(cfg)
    AsrModel(dims=cfg.model_dims(tokenizer.vocab_size), tokenizer=tokenizer)


def test_docs_hold_the_current_config_reference() -> None:
    from ambient.train.config import config_reference_markdown

    doc = (_CONFIGS.parent.parent / "docs" / "training.md").read_text()
    begin, end = "<!-- BEGIN generated config reference -->\n", "<!-- END generated config reference -->"
    assert doc.split(begin)[1].split(end)[0] == config_reference_markdown(), (
        "docs/training.md is stale: regenerate it with python -m ambient.train.config --markdown"
    )


def test_model_dims_take_the_vocabulary_from_the_tokenizer(tmp_path: Path) -> None:
    cfg = parse_train_config({**_minimal(tmp_path), "model": {"d_model": 96, "n_heads": 4}})
    dims = cfg.model_dims(29)
    assert (dims.d_model, dims.vocab_size) == (96, 29)


# ----------------------------------------------------------------------------- schedules


def test_learning_rate_warms_up_then_follows_the_schedule() -> None:
    cos = LrSchedule(OptimConfig(lr=1e-3, warmup_steps=100, max_steps=1100, min_lr_ratio=0.1))
    assert cos.lr_at(0) == pytest.approx(1e-5)
    assert cos.lr_at(49) == pytest.approx(5e-4)
    assert cos.lr_at(99) == pytest.approx(1e-3)
    assert cos.lr_at(599) == pytest.approx(0.55e-3)  # half way: the mean of peak and floor
    assert cos.lr_at(1099) == pytest.approx(1e-4)
    assert cos.lr_at(5000) == pytest.approx(1e-4)
    lrs = [cos.lr_at(s) for s in range(100, 1100)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    noam = LrSchedule(OptimConfig(lr=1e-3, warmup_steps=100, schedule="noam"))
    assert noam.lr_at(99) == pytest.approx(1e-3)
    assert noam.lr_at(399) == pytest.approx(0.5e-3)
    const = LrSchedule(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"))
    assert const.lr_at(0) == const.lr_at(10**6) == 1e-3


def test_dynamic_chunk_sampling_covers_the_configured_ranges() -> None:
    cfg = ChunkConfig(full_context_prob=0.3, max_chunk_frames=8, max_left_chunks=3, unlimited_left_prob=0.5)
    rng = random.Random(0)
    draws = [sample_chunking(cfg, rng) for _ in range(4000)]
    full = sum(1 for c, _ in draws if c == 0)
    assert 0.25 < full / len(draws) < 0.35
    assert all(left == -1 for c, left in draws if c == 0)
    chunks = {c for c, _ in draws if c > 0}
    lefts = {left for c, left in draws if c > 0}
    assert chunks == set(range(1, 9))
    assert lefts == {-1, 0, 1, 2, 3}
    assert sample_chunking(ChunkConfig(full_context_prob=1.0), rng) == (0, -1)


# ----------------------------------------------------------------------------- checkpoints


def test_training_states_are_kept_and_read_newest_first(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save_training_state(tmp_path, {"step": step, "w": torch.full((3,), float(step))}, step=step, keep=3)
    assert [s for s, _ in list_training_states(tmp_path)] == [20, 30, 40]
    found = load_latest_training_state(tmp_path)
    assert found is not None and found[1]["step"] == 40
    # a torn newest file (a disk that lied about fsync) falls back to the previous state
    newest = tmp_path / "state-000000040.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    found = load_latest_training_state(tmp_path)
    assert found is not None and found[1]["step"] == 30 and torch.equal(found[1]["w"], torch.full((3,), 30.0))
    # a leftover temporary file of an interrupted save is cleaned up by the next save
    (tmp_path / ".tmp-state-000000050-123").write_bytes(b"partial")
    save_training_state(tmp_path, {"step": 50}, step=50, keep=3)
    assert not list(tmp_path.glob(".tmp-state-*"))
    for _, p in list_training_states(tmp_path):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="none of the 3 training states can be read"):
        load_latest_training_state(tmp_path)
    assert load_latest_training_state(tmp_path / "empty") is None


def test_resume_requires_a_state_and_a_matching_model(digits: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = digits
    cfg = parse_train_config(_config(train, dev, tmp_path / "run"))
    with pytest.raises(ConfigError, match="--resume: no training state in"):
        Trainer(cfg=cfg, require_resume=True)
    trainer = Trainer(cfg=cfg)
    trainer.save_state()
    assert [s for s, _ in list_training_states(tmp_path / "run")] == [0]
    other = parse_train_config(_config(train, dev, tmp_path / "run", **{"model.d_model": 32}))
    with pytest.raises(ConfigError, match="different 'model' section"):
        Trainer(cfg=other)


def _starting_model(train: Path, dev: Path, tmp_path: Path) -> Trainer:
    """A trainer whose weights and normalization a fresh initialization cannot produce, exported
    to ``tmp_path/start.pt``."""
    from ambient.model.checkpoint import save_model

    first = Trainer(cfg=parse_train_config(_config(train, dev, tmp_path / "first")))
    with torch.no_grad():
        for p in first.model.parameters():
            p.add_(0.01)
        first.model.norm_mean.add_(1.0)
    save_model(first.model, tmp_path / "start.pt")
    return first


def test_init_from_copies_weights_and_normalization_but_not_the_schedule(
    digits: tuple[Path, Path], tmp_path: Path
) -> None:
    from ambient.model.checkpoint import load_model

    train, dev = digits
    _starting_model(train, dev, tmp_path)
    start = load_model(tmp_path / "start.pt")

    cfg = parse_train_config(_config(train, dev, tmp_path / "second", **{"run.init_from": str(tmp_path / "start.pt")}))
    second = Trainer(cfg=cfg)
    assert second.progress.step == 0 and second.resumed_from is None
    for (name, a), b in zip(second.model.state_dict().items(), start.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fresh = Trainer(cfg=parse_train_config(_config(train, dev, tmp_path / "third")))  # same seed, no init_from
    assert torch.allclose(fresh.model.head.weight + 0.01, second.model.head.weight)

    other = parse_train_config(
        _config(train, dev, tmp_path / "fourth", **{"model.d_model": 32, "run.init_from": str(tmp_path / "start.pt")})
    )
    with pytest.raises(ConfigError, match=r"run\.init_from: .*different model dims"):
        Trainer(cfg=other)
    missing = parse_train_config(_config(train, dev, tmp_path / "fifth", **{"run.init_from": str(tmp_path / "no.pt")}))
    with pytest.raises(CheckpointError):
        Trainer(cfg=missing)


def test_init_parts_copies_only_the_named_pieces_into_a_model_with_other_sharing(
    digits: tuple[Path, Path], tmp_path: Path
) -> None:
    train, dev = digits
    first = _starting_model(train, dev, tmp_path)

    parts = ["encoder.subsampling", "head", "norm_"]
    other_model = {"model.n_layers": 3, "model.sharing": {"scheme": "none"}}  # other layers and sharing

    def from_start(run: str, take: list[str], **overrides: Any) -> Trainer:
        init = {"run.init_from": str(tmp_path / "start.pt"), "run.init_parts": take}
        return Trainer(cfg=parse_train_config(_config(train, dev, tmp_path / run, **overrides, **init)))

    second = from_start("second", parts, **other_model)
    fresh = Trainer(cfg=parse_train_config(_config(train, dev, tmp_path / "third", **other_model)))
    start = first.model.state_dict()
    for name, value in second.model.state_dict().items():
        if any(name.startswith(p) for p in parts):
            assert torch.equal(value, start[name]), name
        elif value.is_floating_point() and name.startswith("encoder.") and value.numel() > 1:
            assert torch.equal(value, fresh.model.state_dict()[name]), name  # fresh initialization kept
    assert torch.equal(second.model.head.weight, first.model.head.weight)

    with pytest.raises(ConfigError, match=r"run\.init_parts: encoder\.subsampling\.\S+ of .* does not fit"):
        from_start("fourth", parts, **{"model.d_model": 32})
    with pytest.raises(ConfigError, match=r"run\.init_parts: .* has no tensor named decoder\*"):
        from_start("fifth", ["decoder"])


def test_wall_time_limit_stops_the_run_with_a_saved_state(digits: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = digits
    cfg = parse_train_config(_config(train, dev, tmp_path / "run", **{"optim.max_hours": 1e-9}))
    result = Trainer(cfg=cfg).run()
    assert (result.stopped_by, result.step) == ("max_hours", 0)
    found = load_latest_training_state(tmp_path / "run")
    assert found is not None and found[1]["progress"]["global_batch"] == 0  # the batch was not consumed
    assert (tmp_path / "run" / "last.pt").exists()


# ----------------------------------------------------------------------------- metrics


def test_metrics_drop_records_after_the_resumed_step_and_plot(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(10, 60, 10):
        log.write({"kind": "train", "step": step, "loss": 1.0 / step, "lr": 1e-3, "grad_norm": float("nan")})
    log.write({"kind": "dev", "step": 40, "wer_full": 0.5, "wer_stream": 0.6})
    log.close()
    with path.open("a") as f:
        f.write('{"kind": "train", "st')  # torn by a crash
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 30, 40, 50, 40]
    assert read_metrics(path)[0]["grad_norm"] is None
    log = MetricsLog(path, resume_step=30)
    log.write({"kind": "train", "step": 40, "loss": 0.02, "lr": 1e-3})
    log.close()
    assert [(r["kind"], r["step"]) for r in read_metrics(path)] == [
        ("train", 10),
        ("train", 20),
        ("train", 30),
        ("train", 40),
    ]
    written = plot_metrics(path, tmp_path)
    assert [p.name for p in written] == ["loss.png", "lr.png"]  # no dev records left to plot
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert MetricsLog(path).path.read_text() == ""  # a fresh run starts a new file
