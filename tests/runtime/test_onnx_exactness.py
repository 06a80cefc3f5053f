"""The exported graph computes what the torch model computes: streaming, full context, every scheme.

Tiny random models, one per sharing scheme, exported with :func:`build_onnx` and run through the onnx
backend's own driver (:class:`OnnxAcoustic`: numpy front end, chunking, left-context trim) against the
torch backend on the same audio, fed in irregular blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from ambient.model.asr import AsrModel
from ambient.model.export.onnx_graph import build_onnx, quantize_onnx_int8
from ambient.model.info import stored_params
from ambient.model.testing import SCHEME_EXAMPLES, build_tiny_model
from ambient.runtime.onnx_model import OnnxAcoustic, load_onnx_model
from ambient.stream.acoustic import AcousticModel
from ambient.stream.torch_backend import TorchAcoustic

ATOL = 1e-4
#: (chunk frames, left chunks): one-frame chunks, a bounded left context, unlimited left context.
CHUNKINGS = [(1, 3), (4, 2), (16, -1)]


def _pcm(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.2 * np.sin(2 * np.pi * (200 + 150 * np.sin(3 * t)) * t)  # something the filterbank resolves
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _export(model: AsrModel, path: Path) -> OnnxAcoustic:
    path.write_bytes(build_onnx(model).SerializeToString())
    return load_onnx_model(path, verify=False)


def _stream(model: AcousticModel, pcm: np.ndarray, *, chunk_frames: int, left_chunks: int) -> np.ndarray:
    s = model.new_stream(chunk_frames=chunk_frames, left_chunks=left_chunks)
    cuts = np.random.default_rng(chunk_frames).integers(1, 4000, size=64).cumsum()
    pieces = [s.accept(p) for p in np.split(pcm, cuts[cuts < pcm.size])]
    return np.concatenate([*pieces, s.finish()])


@pytest.mark.parametrize("scheme", list(SCHEME_EXAMPLES))
def test_onnx_streaming_equals_torch_streaming(scheme: str, tmp_path: Path) -> None:
    model = build_tiny_model(scheme, seed=3)
    ref, got = TorchAcoustic(model), _export(model, tmp_path / "m.onnx")
    pcm = _pcm(2.3, seed=1)
    for chunk_frames, left_chunks in CHUNKINGS:
        a = _stream(ref, pcm, chunk_frames=chunk_frames, left_chunks=left_chunks)
        b = _stream(got, pcm, chunk_frames=chunk_frames, left_chunks=left_chunks)
        assert a.shape == b.shape and a.shape[0] > 40
        np.testing.assert_allclose(b, a, atol=ATOL, rtol=0, err_msg=f"{scheme} chunk={chunk_frames}")
    np.testing.assert_allclose(got.full_context_log_probs(pcm), ref.full_context_log_probs(pcm), atol=ATOL, rtol=0)


def test_eight_times_subsampling_and_short_inputs(tmp_path: Path) -> None:
    model = build_tiny_model("residual", seed=4, subsampling=8)
    ref, got = TorchAcoustic(model), _export(model, tmp_path / "m.onnx")
    for seconds in (0.02, 0.15, 1.1):  # shorter than one frame, than the receptive field, a few chunks
        pcm = _pcm(seconds, seed=2)
        a = _stream(ref, pcm, chunk_frames=3, left_chunks=1)
        np.testing.assert_allclose(_stream(got, pcm, chunk_frames=3, left_chunks=1), a, atol=ATOL, rtol=0)
        np.testing.assert_allclose(got.full_context_log_probs(pcm), ref.full_context_log_probs(pcm), atol=ATOL)


@pytest.mark.parametrize("scheme", ["repeat", "residual", "lowrank"])
def test_a_shared_weight_is_one_initializer(scheme: str, tmp_path: Path) -> None:
    """Every stored tensor is one initializer however many virtual layers use it: the float elements
    are the stored parameters plus the normalization statistics and two constants, and the file is
    no bigger than those floats."""
    model = build_tiny_model(scheme, n_layers=6)
    proto = build_onnx(model)
    floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    dh = model.dims.d_model // model.dims.n_heads
    extra = 2 * model.dims.n_mels + dh // 2 + 2  # norm mean/std, rotary frequencies, 0.5 and 1/sqrt(Dh)
    assert sum(int(np.prod(t.dims)) for t in floats) == stored_params(model) + extra
    bank = model.encoder.slots["ff1_w1"]
    stored = [t.name for t in proto.graph.initializer if t.name.startswith("ff1.w1.")]
    assert len([n for n in stored if ".full." in n or ".u." in n or ".v." in n]) == len(bank.full) + len(bank.u) + len(
        bank.v
    )
    uses = sum(name.startswith("ff1.w1.") for node in proto.graph.node for name in node.input)
    assert uses > len(stored)  # virtual layers reference the stored tensors, not copies
    size = len(proto.SerializeToString())
    assert 4 * (stored_params(model) + extra) < size < 4 * (stored_params(model) + extra) * 1.05 + 64_000

    fp32 = tmp_path / "m.onnx"
    fp32.write_bytes(proto.SerializeToString())
    weights = {t.name for t in proto.graph.initializer}
    matmul_weights = {n.input[1] for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in weights}
    for int8_scheme, op in (("block", "MatMulNBits"), ("dynamic", "MatMulInteger")):
        int8 = tmp_path / f"m-int8-{int8_scheme}.onnx"
        quantize_onnx_int8(fp32, int8, scheme=int8_scheme)
        q = onnx.load(str(int8))
        q_inits = {t.name: t for t in q.graph.initializer}
        q_nodes = [n for n in q.graph.node if n.op_type == op or n.op_type == "MatMul"]
        quantized = {n.input[1] for n in q_nodes if n.op_type == op and n.input[1] in q_inits}
        left = {n.input[1] for n in q_nodes if n.op_type == "MatMul" and n.input[1] in q_inits}
        # Each shared weight is quantized once (one int8 initializer that every use names); a weight
        # the block scheme cannot cut in blocks of 32 (a narrow input) stays fp32.
        assert quantized and len(quantized) + len(left) == len(matmul_weights), int8_scheme
        assert all(q_inits[n].data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for n in quantized)
        assert sum(n.op_type == op for n in q.graph.node) > len(quantized)  # virtual layers share them
        assert int8.stat().st_size < 0.8 * fp32.stat().st_size  # norms and biases stay fp32 (a big share here)
