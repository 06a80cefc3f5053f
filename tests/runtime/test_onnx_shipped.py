"""The shipped ONNX files: verified on load, exported from the shipped checkpoint, recognizing exactly
as the torch model does on recordings, and run without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ambient.audio.io import read_audio
from ambient.errors import CheckpointError
from ambient.model.checkpoint import file_sha256, load_model
from ambient.model.info import stored_params
from ambient.runtime.onnx_model import load_onnx_model
from ambient.stream.factory import load_acoustic_model, resolve_backend
from ambient.stream.recognizer import StreamingRecognizer, transcribe_blocks
from ambient.stream.torch_backend import TorchAcoustic

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "ambient-base"
#: Recordings for the comparison (espeak-ng; the onnx and torch transcripts must be the same words).
SENTENCES = ("switch off the bedroom lamp", "how warm is it outside", "remind me to call my sister at noon")


def test_the_onnx_files_are_exported_from_the_shipped_checkpoint() -> None:
    sums = (SHIPPED / "SHA256SUMS").read_text().split()
    assert {"model.onnx", "model-int8.onnx"} <= set(sums[1::2])
    fp32, int8 = load_onnx_model(SHIPPED / "model.onnx"), load_onnx_model(SHIPPED / "model-int8.onnx")
    torch_model = load_model(SHIPPED / "model.pt")
    assert fp32.dims == int8.dims == torch_model.dims and not fp32.int8 and int8.int8
    # ship_model.py exports from the model.pt it writes: a re-shipped checkpoint cannot keep stale graphs.
    source = fp32._session.get_modelmeta().custom_metadata_map["ambient.source_sha256"]
    assert source == file_sha256(SHIPPED / "model.pt")
    assert fp32.name == torch_model.name == "ambient-base"
    # One initializer per stored tensor: the file is the stored parameters in fp32, plus little.
    stored = stored_params(torch_model)
    assert 4 * stored < (SHIPPED / "model.onnx").stat().st_size < 4 * stored * 1.01 + 64_000
    # int8 in blocks of 32: a byte per weight plus a 4-byte scale per 32 (norms and biases stay fp32).
    assert (SHIPPED / "model-int8.onnx").stat().st_size < 0.4 * (SHIPPED / "model.onnx").stat().st_size
    assert int8.quantized == "int8-block32"
    assert resolve_backend(SHIPPED / "model.pt", backend="auto", int8=True) == ("onnx", SHIPPED / "model-int8.onnx")
    # The default (model.int8: auto) runs the shipped int8 graph; the torch backend stays fp32.
    assert resolve_backend(SHIPPED / "model.pt", backend="auto", int8="auto") == ("onnx", SHIPPED / "model-int8.onnx")
    assert resolve_backend(SHIPPED / "model.pt", backend="torch", int8="auto") == ("torch", SHIPPED / "model.pt")
    assert resolve_backend(SHIPPED / "model.pt", backend="auto", int8=False) == ("onnx", SHIPPED / "model.onnx")


def test_the_int8_graph_stays_close_to_fp32_on_speech(synth: Callable[..., Path]) -> None:
    """Weight-only int8: the per-frame best token agrees with fp32 almost everywhere."""
    pcm = np.concatenate([read_audio(synth(s)) for s in SENTENCES])
    fp32, int8 = load_onnx_model(SHIPPED / "model.onnx"), load_onnx_model(SHIPPED / "model-int8.onnx")
    a, b = fp32.full_context_log_probs(pcm), int8.full_context_log_probs(pcm)
    assert a.shape == b.shape and a.shape[0] > 100
    assert float(np.mean(a.argmax(-1) == b.argmax(-1))) > 0.97
    assert float(np.abs(a - b).max()) > 0.0  # the int8 graph really is another computation


def test_onnx_streaming_matches_torch_on_speech(synth: Callable[..., Path]) -> None:
    pcm = np.concatenate([read_audio(synth(s)) for s in SENTENCES[:2]])
    ref = TorchAcoustic(load_model(SHIPPED / "model.pt"))
    got = load_onnx_model(SHIPPED / "model.onnx")
    for chunk_frames in (4, 16):
        a, b = (
            ref.new_stream(chunk_frames=chunk_frames, left_chunks=16),
            got.new_stream(chunk_frames=chunk_frames, left_chunks=16),
        )
        lp_a = np.concatenate([*(a.accept(pcm[i : i + 1600]) for i in range(0, pcm.size, 1600)), a.finish()])
        lp_b = np.concatenate([*(b.accept(pcm[i : i + 1600]) for i in range(0, pcm.size, 1600)), b.finish()])
        np.testing.assert_allclose(lp_b, lp_a, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.full_context_log_probs(pcm), ref.full_context_log_probs(pcm), atol=1e-4, rtol=0)


@pytest.mark.parametrize("final_pass", ["streaming", "full"])
def test_transcripts_are_identical_with_either_backend(synth: Callable[..., Path], final_pass: str) -> None:
    """Greedy and with the shipped word LM, streaming finals and two-pass finals."""
    from ambient.model.lexicon_lm import load_lm

    backends = {"torch": load_acoustic_model(SHIPPED / "model.pt", backend="torch")}
    backends["onnx"] = load_acoustic_model(SHIPPED / "model.pt", backend="onnx")
    lm = load_lm("auto", model_path=SHIPPED / "model.pt", tokenizer=backends["onnx"].tokenizer)
    texts: dict[tuple[str, bool], list[str]] = {}
    for name, model in backends.items():
        for with_lm in (False, True):
            rec = StreamingRecognizer(model, chunk_ms=640, lm=lm if with_lm else None, final_pass=final_pass)  # type: ignore[arg-type]
            texts[name, with_lm] = [transcribe_blocks(rec, [read_audio(synth(s))])[0].text for s in SENTENCES]
    for with_lm in (False, True):
        assert texts["onnx", with_lm] == texts["torch", with_lm]
        assert any(texts["onnx", with_lm])


def _corrupt(tmp_path: Path, name: str, data: bytes) -> Path:
    import hashlib

    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(data)
    (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  model.onnx\n")
    return folder / "model.onnx"


def test_damaged_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    good = (SHIPPED / "model.onnx").read_bytes()
    truncated = _corrupt(tmp_path, "truncated", good[: len(good) // 2])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    foreign = _corrupt(tmp_path, "foreign", helper.make_model(graph).SerializeToString())
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    (flipped / "model.onnx").write_bytes(good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])
    (flipped / "SHA256SUMS").write_text((SHIPPED / "SHA256SUMS").read_text())
    cases = {
        truncated: "not a readable ambient model file",
        foreign: "not an ambient model file (foreign ONNX model)",
        flipped / "model.onnx": "SHA-256 mismatch",
        tmp_path / "missing.onnx": "model file not found",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError) as err:
            load_onnx_model(path)
        assert message in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


_NO_TORCH = """
import sys
from ambient.cli.main import main
status = main(sys.argv[1:])
print("TORCH_LOADED" if "torch" in sys.modules else "NO_TORCH", file=sys.stderr)
sys.exit(status)
"""


def test_the_onnx_backend_never_imports_torch(synth: Callable[..., Path], tmp_path: Path) -> None:
    """``ambient transcribe`` and the daemon itself (``ambient run`` on a file, to its end)."""
    from ambient.devtools.daemon import daemon_config, write_config

    wav = synth(SENTENCES[0])
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, "transcribe", "--json", str(wav)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "onnx" and json.loads(proc.stdout)["text"]
    assert proc.stderr.strip().endswith("NO_TORCH"), proc.stderr[-500:]

    cfg = daemon_config(tmp_path, SHIPPED / "model.pt", event_log={"fsync": "never"})
    conf = write_config(tmp_path / "c.yaml", cfg)
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, "run", "--config", str(conf), "--file", str(wav), "--fast"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"backend": "onnx"' in proc.stderr and proc.stderr.strip().endswith("NO_TORCH"), proc.stderr[-800:]
