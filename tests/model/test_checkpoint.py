"""Checkpoints: round trip, SHA-256 verification, corrupt/foreign files, int8."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ambient.audio.features import compute_fbank
from ambient.errors import CheckpointError
from ambient.model.checkpoint import file_sha256, load_model, save_model
from ambient.model.testing import build_tiny_model


def _feats() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return compute_fbank(0.1 * torch.randn(32000, generator=g))[None]


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = build_tiny_model("residual")
    model.set_normalization(torch.full((80,), -3.0), torch.full((80,), 2.0))
    digest = save_model(model, tmp_path / "m.pt", meta={"note": "x"})
    assert (tmp_path / "m.pt.sha256").read_text().split() == [digest, "m.pt"]
    assert digest == file_sha256(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.dims == model.dims and loaded.meta["note"] == "x"
    f = _feats()
    lens = torch.tensor([f.size(1)])
    with torch.inference_mode():
        torch.testing.assert_close(loaded(f, lens, chunk_frames=4)[0], model(f, lens, chunk_frames=4)[0])
    torch.testing.assert_close(loaded.norm_std, torch.full((80,), 2.0))


def test_sha_mismatch_truncated_foreign_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(build_tiny_model("none"), path)
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_model(path)
    with pytest.raises(CheckpointError, match="not a readable ambient model file"):
        load_model(path, verify=False)

    foreign = tmp_path / "f.pt"
    torch.save({"state_dict": {}}, foreign)
    (tmp_path / "f.pt.sha256").write_text(f"{file_sha256(foreign)}  f.pt\n")
    with pytest.raises(CheckpointError, match="foreign"):
        load_model(foreign)

    nosum = tmp_path / "n.pt"
    nosum.write_bytes(data)
    with pytest.raises(CheckpointError, match="no SHA-256"):
        load_model(nosum)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.pt")


def test_sha256sums_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    digest = save_model(build_tiny_model("none"), path)
    (tmp_path / "model.pt.sha256").unlink()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  model.pt\n")
    assert load_model(path).dims.n_layers == 4


def test_cli_reports_corrupt_model_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(build_tiny_model("none"), path)
    path.write_bytes(b"garbage" * 100)
    wav = tmp_path / "x.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    r = subprocess.run(
        [sys.executable, "-m", "ambient", "transcribe", str(wav), "--model", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("scheme", ["none", "lowrank", "residual"])
def test_int8_agrees_with_fp32_on_most_frames(scheme: str, tmp_path: Path) -> None:
    model = build_tiny_model(scheme)
    save_model(model, tmp_path / "fp32.pt")
    save_model(model, tmp_path / "int8.pt", int8=True)
    q_loaded = load_model(tmp_path / "int8.pt")
    q_opt = load_model(tmp_path / "fp32.pt", int8=True)
    assert (tmp_path / "int8.pt").stat().st_size < 0.75 * (tmp_path / "fp32.pt").stat().st_size
    f = _feats()
    lens = torch.tensor([f.size(1)])
    with torch.inference_mode():
        ref = model(f, lens, chunk_frames=4)[0].argmax(-1)
        for q in (q_loaded, q_opt):
            agree = (q(f, lens, chunk_frames=4)[0].argmax(-1) == ref).float().mean().item()
            assert agree >= 0.85, agree
    # every linear weight, shared and low-rank, is quantized
    assert not any(isinstance(m, torch.nn.Linear) for m in q_loaded.modules())
