"""Growing the low-rank factors: the same outputs, more stored capacity, trainable new factors."""

from __future__ import annotations

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
from ambient.train.grow import grow_depth, grow_model_file, grow_rank

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "ambient-base" / "model.pt"


def _outputs(model: AsrModel, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-context log-probs of ``feats (B, T, 80)`` and the streaming ones of its first item."""
    with torch.no_grad():
        full, _ = model(feats, torch.full((feats.shape[0],), feats.shape[1]))
        cache = model.init_cache(chunk_frames=4, left_chunks=2)
        parts = []
        for i in range(0, feats.shape[1], 64):
            out, cache = model.forward_chunk(feats[:1, i : i + 64], cache, final=i + 64 >= feats.shape[1])
            parts.append(out)
    return full, torch.cat(parts, dim=1)


@pytest.mark.parametrize("scheme", ["residual", "lowrank"])
def test_a_grown_model_computes_exactly_what_it_did(scheme: str) -> None:
    model = build_tiny_model(scheme, seed=3)
    # trained-looking weights: no factor is left at its initial value
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rank = model.dims.sharing.rank
    grown = grow_rank(model, rank * 3)
    assert grown.dims.sharing.rank == rank * 3
    assert grown.dims.sharing.scheme == scheme
    assert stored_params(grown) > stored_params(model)
    feats = torch.randn(2, 256, 80) * 3
    want_full, want_stream = _outputs(model, feats)
    got_full, got_stream = _outputs(grown, feats)
    torch.testing.assert_close(got_full, want_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_stream, want_stream, rtol=0, atol=1e-5)
    # the new factors are not dead: one backward pass reaches the new columns of U
    grown.train()
    log_probs, _ = grown(feats, torch.full((2,), 256))
    log_probs[..., 1:].sum().backward()  # any loss that depends on every output
    grads = [u.weight.grad for bank in grown.modules() if isinstance(bank, LinearBank) for u in bank.u]
    new_u = [g[:, rank:] for g in grads if isinstance(g, torch.Tensor)]
    assert new_u and len(new_u) == len(grads)
    assert sum(float(g.abs().sum()) for g in new_u) > 0


def test_the_shipped_model_grows_with_the_same_outputs(tmp_path: Path) -> None:
    r = load_model(SHIPPED).dims.sharing.rank
    out = tmp_path / "grown.pt"
    sha, before, after = grow_model_file(SHIPPED, r + 16, out)
    assert (tmp_path / "grown.pt.sha256").read_text().split()[0] == sha
    model, grown = load_model(SHIPPED), load_model(out)  # load_model verifies the SHA-256
    assert grown.dims.sharing.rank == r + 16
    # rank enters only the factors: each U gains 16 columns of d_out, each V 16 rows of d_in
    per_rank = sum(
        len(bank.u) * bank.d_out + len(bank.v) * bank.d_in for bank in model.modules() if isinstance(bank, LinearBank)
    )
    assert stored_params(grown) - stored_params(model) == 16 * per_rank
    assert (before, after) == (stored_params(model), stored_params(grown))
    assert grown.meta["training"]["grown_from"] == {"file": "model.pt", "rank": r, "n_layers": model.dims.n_layers}
    torch.manual_seed(0)
    feats = torch.randn(1, 300, 80) * 3 + model.norm_mean
    want_full, want_stream = _outputs(model, feats)
    got_full, got_stream = _outputs(grown, feats)
    torch.testing.assert_close(got_full, want_full, rtol=0, atol=1e-4)
    torch.testing.assert_close(got_stream, want_stream, rtol=0, atol=1e-4)


def test_what_cannot_grow_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'repeat' has no low-rank factors"):
        grow_rank(build_tiny_model("repeat"), 8)
    with pytest.raises(ConfigError, match=r"new rank \(2\) is below the model's rank \(4\)"):
        grow_rank(build_tiny_model("residual"), 2)
    int8 = tmp_path / "int8.pt"
    save_model(build_tiny_model("residual"), int8, int8=True)
    with pytest.raises(CheckpointError, match="int8 model file cannot be grown"):
        grow_model_file(int8, 8, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_the_cli_grows_a_file_and_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    src = tmp_path / "tiny.pt"
    save_model(build_tiny_model("residual"), src)
    out = tmp_path / "grown.pt"
    r = subprocess.run(
        [sys.executable, "-m", "ambient", "model", "grow", str(src), "--rank", "12", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "to rank 12" in r.stdout and load_model(out).dims.sharing.rank == 12
    bad = subprocess.run(
        [sys.executable, "-m", "ambient", "model", "grow", str(src), "--rank", "2", "--out", str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "below the model's rank" in lines[0]
    assert not (tmp_path / "x.pt").exists()


def test_depth_growth_repeats_every_layer_over_the_same_shared_weights() -> None:
    model = build_tiny_model("residual", seed=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m, k = model.dims.n_layers, model.dims.sharing.group_size
    grown = grow_depth(model, 2)
    assert grown.dims.n_layers == 2 * m and grown.dims.sharing.group_size == 2 * k
    old, new = model.state_dict(), grown.state_dict()
    full = [n for n in old if ".full." in n]
    assert full and all(torch.equal(new[n], old[n]) for n in full)  # still stored once per group
    assert not [n for n in new if ".full." in n and n not in old]  # no new shared tensor
    for j in range(2 * m):  # layer j starts as a copy of layer j // 2, piece by piece
        for name in (n for n in old if ".u." in n or ".v." in n):
            parts = name.split(".")
            if int(parts[-2]) == j // 2:
                parts[-2] = str(j)
                assert torch.equal(new[".".join(parts)], old[name])
        for name in (n for n in old if n.startswith("encoder.vectors.") or n.endswith((".diag", ".bias"))):
            if old[name].shape[0] == m:
                assert torch.equal(new[name][j], old[name][j // 2])
    # storage grows by the per-layer pieces only; what is applied per frame grows with the depth
    per_layer = sum(
        v.numel() for n, v in old.items() if n.startswith(("encoder.slots.", "encoder.vectors.")) and ".full." not in n
    )
    assert stored_params(grown) - stored_params(model) == per_layer
    assert virtual_params(grown) > 1.9 * virtual_params(model) - stored_params(model)
    feats = torch.randn(1, 200, 80) * 3
    got, want = _outputs(grown, feats), _outputs(model, feats)
    assert [t.shape for t in got] == [t.shape for t in want]
    assert all(bool(torch.isfinite(t).all()) for t in got)
    assert not torch.allclose(got[0], want[0], atol=1e-3)  # a layer run twice computes something else
    with pytest.raises(ConfigError, match="needs sharing scheme 'residual'"):
        grow_depth(build_tiny_model("repeat"), 2)
    with pytest.raises(ConfigError, match="at least 2"):
        grow_depth(model, 1)


def test_the_cli_grows_depth_and_needs_something_to_grow(tmp_path: Path) -> None:
    src = tmp_path / "tiny.pt"
    save_model(build_tiny_model("residual"), src)
    out = tmp_path / "deep.pt"
    cmd = [sys.executable, "-m", "ambient", "model", "grow", str(src)]
    r = subprocess.run([*cmd, "--depth", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grown = load_model(out)
    assert grown.dims.n_layers == 2 * load_model(src).dims.n_layers
    assert grown.meta["training"]["grown_from"]["n_layers"] == load_model(src).dims.n_layers
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "x.pt")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0
    assert "give --rank, --depth or both" in bad.stderr and not (tmp_path / "x.pt").exists()
