"""Shrinking the low-rank factors: exact when the dropped directions are empty, close on the shipped model."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ambient.errors import CheckpointError, ConfigError
from ambient.model.asr import AsrModel
from ambient.model.checkpoint import load_model, save_model
from ambient.model.info import stored_params, virtual_params
from ambient.model.sharing import LinearBank
from ambient.model.testing import build_tiny_model
from ambient.train.shrink import factor_energy, shrink_model_file, shrink_rank

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "ambient-base" / "model.pt"


def _full_context(model: AsrModel, feats: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out, _ = model(feats, torch.full((feats.shape[0],), feats.shape[1]))
    return out


def _banks(model: AsrModel) -> list[LinearBank]:
    return [m for m in model.modules() if isinstance(m, LinearBank) and m.spec.rank]


@pytest.mark.parametrize("scheme", ["residual", "lowrank"])
def test_factors_of_low_true_rank_shrink_without_changing_the_outputs(scheme: str) -> None:
    model = build_tiny_model(scheme, seed=4)
    if scheme == "lowrank":  # one U per V (both factors shared), so that every product is stored per pair
        sharing = dataclasses.replace(model.dims.sharing, shared_factor="both")
        model = AsrModel(dims=dataclasses.replace(model.dims, sharing=sharing)).eval()
    rank = model.dims.sharing.rank
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for bank in _banks(model):  # every U·V of true rank 2, stored at the full rank
            for u in bank.u:
                u.weight[:, 2:] = 0.0
    small = shrink_rank(model, 2)
    assert small.dims.sharing.rank == 2 and rank > 2
    assert all(v > 0.999999 for v in factor_energy(model, 2).values())
    per_rank = sum(len(b.u) * b.d_out + len(b.v) * b.d_in for b in _banks(model))
    assert stored_params(model) - stored_params(small) == (rank - 2) * per_rank
    assert virtual_params(small) < virtual_params(model)
    feats = torch.randn(2, 200, 80, generator=gen) * 3
    torch.testing.assert_close(_full_context(small, feats), _full_context(model, feats), rtol=0, atol=1e-4)
    # a real truncation changes the outputs, and the energy report says so
    with torch.no_grad():
        for bank in _banks(model):
            for u in bank.u:
                u.weight.add_(0.5 * torch.randn(u.weight.shape, generator=gen))
    assert min(factor_energy(model, 1).values()) < 0.99
    assert not torch.allclose(_full_context(shrink_rank(model, 1), feats), _full_context(model, feats), atol=1e-3)


def test_the_shipped_model_shrinks_to_the_rank_it_uses(tmp_path: Path) -> None:
    out = tmp_path / "small.pt"
    sha, before, after, kept = shrink_model_file(SHIPPED, 16, out)
    model, small = load_model(SHIPPED), load_model(out)  # load_model verifies the SHA-256
    assert (tmp_path / "small.pt.sha256").read_text().split()[0] == sha
    assert (before, after) == (stored_params(model), stored_params(small))
    assert small.dims.sharing.rank == 16 and kept > 0.9
    assert virtual_params(small) >= 2 * stored_params(small)
    shrunk = small.meta["training"]["shrunk_from"]
    assert shrunk["file"] == "model.pt" and shrunk["rank"] == model.dims.sharing.rank
    # the shared full-rank banks are untouched; the frame-level decisions barely move
    old, new = model.state_dict(), small.state_dict()
    assert all(torch.equal(new[n], old[n]) for n in old if ".full." in n)
    torch.manual_seed(0)
    feats = torch.randn(1, 400, 80) * model.norm_std + model.norm_mean
    a, b = _full_context(model, feats), _full_context(small, feats)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9


def test_what_cannot_shrink_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'repeat' has no low-rank factors"):
        shrink_rank(build_tiny_model("repeat"), 2)
    with pytest.raises(ConfigError, match=r"new rank \(9\) must be between 1 and the model's rank \(4\)"):
        shrink_rank(build_tiny_model("residual"), 9)
    with pytest.raises(ConfigError, match="one U per V"):
        shrink_rank(build_tiny_model("lowrank"), 2)
    int8 = tmp_path / "int8.pt"
    save_model(build_tiny_model("residual"), int8, int8=True)
    with pytest.raises(CheckpointError, match="int8 model file cannot be shrunk"):
        shrink_model_file(int8, 2, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_the_cli_shrinks_a_file_and_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    src = tmp_path / "tiny.pt"
    save_model(build_tiny_model("residual"), src)
    out = tmp_path / "small.pt"
    cmd = [sys.executable, "-m", "ambient", "model", "shrink", str(src)]
    r = subprocess.run([*cmd, "--rank", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "to rank 2" in r.stdout and "of its energy" in r.stdout and load_model(out).dims.sharing.rank == 2
    bad = subprocess.run([*cmd, "--rank", "0", "--out", str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be between 1" in lines[0]
    assert not (tmp_path / "x.pt").exists()
