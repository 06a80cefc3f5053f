"""Checkpoint averaging: the mean of real model weights, from training states and model files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ambient.errors import CheckpointError, ConfigError
from ambient.model.asr import AsrModel
from ambient.model.checkpoint import load_model, save_model
from ambient.train.average import average_checkpoints, average_state_dicts, last_training_states
from ambient.train.checkpointing import save_training_state


def _perturbed(reference: Path, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = load_model(reference).state_dict()
    return {k: (v + torch.randn_like(v) if v.is_floating_point() else v + seed) for k, v in sd.items()}


def test_the_average_of_training_states_is_the_mean_of_their_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    dicts = [_perturbed(tiny_checkpoint, s) for s in (1, 2, 3)]
    for step, sd in zip((10, 20, 30), dicts, strict=True):
        save_training_state(run, {"step": step, "model": sd}, step=step, keep=5)
    states = last_training_states(run, 2)
    assert [p.name for p in states] == ["state-000000020.pt", "state-000000030.pt"]

    out = tmp_path / "avg.pt"
    average_checkpoints(states, tiny_checkpoint, out)
    avg = load_model(out)  # verifies the written SHA-256 too
    got = avg.state_dict()
    for k, v in got.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (dicts[1][k] + dicts[2][k]) / 2)
        else:
            assert torch.equal(v, dicts[2][k])  # integer buffers come from the newest input
    assert avg.meta["training"]["averaged_from"] == ["state-000000020.pt", "state-000000030.pt"]
    stored = torch.load(out, map_location="cpu", weights_only=True)["meta"]
    assert "path" not in stored and "int8" not in stored  # load-time keys are not written
    # the averaged model runs
    feats = torch.randn(1, 120, avg.dims.n_mels)
    log_probs, lengths = avg(feats, torch.tensor([120]))
    assert torch.isfinite(log_probs).all() and int(lengths[0]) > 0


def _perturbed_file(reference: Path, seed: int, out: Path) -> AsrModel:
    """``reference``'s model with :func:`_perturbed` weights, saved as ``out`` (returned)."""
    model = load_model(reference)
    model.load_state_dict(_perturbed(reference, seed))
    save_model(model, out)
    return model


def test_model_files_average_too_and_one_input_is_itself(tiny_checkpoint: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    model = _perturbed_file(tiny_checkpoint, 4, other)
    out = tmp_path / "one.pt"
    average_checkpoints([other], tiny_checkpoint, out)
    for k, v in load_model(out).state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def test_bad_inputs_are_refused_with_a_clear_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to average"):
        average_state_dicts([])
    a = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="shapes differ"):
        average_state_dicts([a, {"w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="different parameters"):
        average_state_dicts([a, {"v": torch.zeros(2)}])
    with pytest.raises(ConfigError, match="at least 1, got 0"):
        last_training_states(tmp_path, 0)
    with pytest.raises(CheckpointError, match="0 training states, 2 asked for"):
        last_training_states(tmp_path, 2)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not readable"):
        average_checkpoints([junk], tiny_checkpoint, tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="cannot be averaged"):
        int8 = tmp_path / "int8.pt"
        save_model(load_model(tiny_checkpoint), int8, int8=True)
        average_checkpoints([int8], tiny_checkpoint, tmp_path / "out.pt")


def test_the_cli_averages_a_run_and_refuses_too_few_states(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    run = tmp_path / "run"
    for step in (5, 6):
        save_training_state(run, {"step": step, "model": _perturbed(tiny_checkpoint, step)}, step=step, keep=5)
    shutil.copy(tiny_checkpoint, run / "last.pt")
    shutil.copy(tiny_checkpoint.with_name(tiny_checkpoint.name + ".sha256"), run / "last.pt.sha256")
    cmd = [sys.executable, "-m", "ambient", "model", "average", str(run), "--out", str(tmp_path / "avg.pt")]
    bad = subprocess.run([*cmd, "--last", "3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "2 training states, 3 asked for" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "avg.pt").exists()
    ok = subprocess.run([*cmd, "--last", "2"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "state-000000005.pt, state-000000006.pt" in ok.stdout
    assert load_model(tmp_path / "avg.pt").meta["training"]["averaged_from"] == [
        "state-000000005.pt",
        "state-000000006.pt",
    ]


def test_the_cli_averages_given_model_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """``--files``: a model and its fine-tuned version, averaged half and half (a weight-space soup)."""
    import subprocess
    import sys

    tuned = tmp_path / "tuned.pt"
    _perturbed_file(tiny_checkpoint, 7, tuned)
    out = tmp_path / "soup.pt"
    cmd = [sys.executable, "-m", "ambient", "model", "average"]
    ok = subprocess.run(
        [*cmd, "--files", str(tiny_checkpoint), str(tuned), "--out", str(out)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    soup, a, b = load_model(out), load_model(tiny_checkpoint).state_dict(), load_model(tuned).state_dict()
    for k, v in soup.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k] + b[k]) / 2)
    assert soup.meta["training"]["averaged_from"] == [tiny_checkpoint.name, "tuned.pt"]
    both = subprocess.run([*cmd, str(tmp_path), "--files", str(tuned), "--out", str(tmp_path / "x.pt")],
                          capture_output=True, text=True)  # fmt: skip
    assert both.returncode != 0 and "exactly one" in both.stderr and not (tmp_path / "x.pt").exists()
    assert len(both.stderr.strip().splitlines()) == 1
