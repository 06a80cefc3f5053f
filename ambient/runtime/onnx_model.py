"""The ONNX backend of :class:`~ambient.stream.acoustic.AcousticModel`: no torch anywhere.

``model.onnx`` (written by ``ambient model export --onnx``, see :mod:`ambient.model.export.onnx_graph`)
holds the streaming step with every cache an explicit input and output, plus the model's dimensions,
tokenizer and metadata. This module drives it: the numpy log-mel front end, one graph call per encoder
chunk with exactly the feature frames that complete it, the left-context trim of the attention
caches, and the full-context pass (one call over the whole utterance with empty caches). The output
equals the torch model's streaming output to float rounding (tests/runtime/test_onnx_exactness.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from ambient.audio.fbank import HOP, SAMPLE_RATE, StreamingFbank, compute_fbank
from ambient.errors import CheckpointError
from ambient.model.checksums import check_model_file
from ambient.model.dims import ModelDims
from ambient.model.tokenizer import Tokenizer, tokenizer_from_dict
from ambient.runtime.heap import release_memory

__all__ = ["ONNX_FORMAT", "ONNX_VERSION", "OnnxAcoustic", "load_onnx_model", "read_onnx_metadata"]

ONNX_FORMAT = "ambient-onnx"
ONNX_VERSION = 1


def read_onnx_metadata(props: dict[str, str], path: Path) -> tuple[ModelDims, Tokenizer, dict[str, Any], str]:
    """``(dims, tokenizer, meta, quantized)`` from an exported file's ``ambient.*`` metadata;
    CheckpointError naming ``path`` if it is not an ambient ONNX model of this version."""
    if props.get("ambient.format") != ONNX_FORMAT:
        raise CheckpointError(f"{path}: not an ambient model file (foreign ONNX model)")
    if props.get("ambient.version") != str(ONNX_VERSION):
        raise CheckpointError(
            f"{path}: unsupported model file version {props.get('ambient.version')!r} (expected {ONNX_VERSION})"
        )
    try:
        dims = ModelDims.from_dict(json.loads(props["ambient.dims"]))
        tok = json.loads(props["ambient.tokenizer"])
        if tok.pop("model_encoding", None) == "base64":
            tok["model"] = base64.b64decode(tok["model"])
        tokenizer = tokenizer_from_dict(tok)
        meta = json.loads(props.get("ambient.meta", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: inconsistent model file ({str(e).splitlines()[0][:160]})") from None
    return dims, tokenizer, meta, props.get("ambient.quantized", "")


class _OnnxStream:
    """Front end, unconsumed feature frames and the graph's caches for one utterance."""

    def __init__(self, model: OnnxAcoustic, *, chunk_frames: int, left_chunks: int) -> None:
        self._m = model
        self._c = chunk_frames
        self._left = -1 if left_chunks < 0 else left_chunks * chunk_frames
        self._fbank = StreamingFbank()
        self._todo = np.zeros((0, model.dims.n_mels), np.float32)  # frames not yet given to the graph
        self._state = model.empty_state()

    def _call(self, feats: np.ndarray) -> np.ndarray:
        m = self._m
        out = m.run(feats, self._state)
        state = {"feat_cache": out["feat_cache_out"], "offset": out["offset_out"]}
        for i in range(m.dims.n_layers):
            for kind in ("key", "value"):
                kv = out[f"{kind}_{i}_out"]
                if self._left >= 0:
                    kv = kv[:, :, kv.shape[2] - min(self._left, kv.shape[2]) :]
                state[f"{kind}_{i}"] = kv
            state[f"conv_{i}"] = out[f"conv_{i}_out"]
        self._state = state
        return out["log_probs"][0]

    def _drain(self, *, final: bool) -> np.ndarray:
        m = self._m
        rf, s = m.receptive_field, m.factor
        outs: list[np.ndarray] = []
        while True:
            r = self._state["feat_cache"].shape[1]
            need = (self._c - 1) * s + rf - r  # frames that complete the next chunk
            if len(self._todo) >= need:
                feats, self._todo = self._todo[:need], self._todo[need:]
            elif final and r + len(self._todo) >= rf:
                feats, self._todo = self._todo, self._todo[:0]
            else:
                break
            outs.append(self._call(feats))
        if not outs:
            return np.zeros((0, m.vocab_size), np.float32)
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def accept(self, pcm: np.ndarray) -> np.ndarray:
        """Feed samples; the log-probs of the chunks they completed."""
        feats = self._fbank.accept(pcm)
        if len(feats):
            self._todo = np.concatenate([self._todo, feats]) if len(self._todo) else feats
        return self._drain(final=False)

    def finish(self) -> np.ndarray:
        """The last, partial chunk."""
        return self._drain(final=True)  # StreamingRecognizer.finish trims the heap after it


class OnnxAcoustic:
    """An exported model run by onnxruntime (see the module docstring)."""

    backend = "onnx"

    def __init__(
        self, session: Any, *, path: Path, dims: ModelDims, tokenizer: Tokenizer, meta: dict[str, Any], quantized: str
    ) -> None:
        self._session = session
        self.path = path
        self.dims = dims
        self.tokenizer = tokenizer
        self.meta = meta
        self.quantized = quantized
        self.factor = dims.subsampling
        self.receptive_field = dims.receptive_field
        self._outputs = [o.name for o in session.get_outputs()]
        self.meta.setdefault("name", path.parent.name if path.parent.name not in ("", ".") else path.stem)
        self.meta["path"] = str(path)
        self.meta["int8"] = self.int8

    @property
    def name(self) -> str:
        """The model's name."""
        return str(self.meta.get("name", "ambient"))

    @property
    def frame_shift_s(self) -> float:
        """Seconds per encoder frame."""
        return HOP * self.factor / SAMPLE_RATE

    @property
    def vocab_size(self) -> int:
        """Output units."""
        return self.dims.vocab_size

    @property
    def int8(self) -> bool:
        """Whether the MatMul weights are int8."""
        return self.quantized.startswith("int8")

    def empty_state(self) -> dict[str, np.ndarray]:
        """The caches of a fresh utterance (nothing cached, offset 0)."""
        d = self.dims
        dh = d.d_model // d.n_heads
        state: dict[str, np.ndarray] = {
            "feat_cache": np.zeros((1, 0, d.n_mels), np.float32),
            "offset": np.zeros(1, np.int64),
        }
        for i in range(d.n_layers):
            state[f"key_{i}"] = np.zeros((1, d.n_heads, 0, dh), np.float32)
            state[f"value_{i}"] = np.zeros((1, d.n_heads, 0, dh), np.float32)
            state[f"conv_{i}"] = np.zeros((1, d.d_model, d.conv_kernel - 1), np.float32)
        return state

    def run(self, feats: np.ndarray, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One graph call: ``feats (t, 80)`` raw log-mel with ``state``; every output by name."""
        outs: list[np.ndarray] = self._session.run(self._outputs, {**state, "feats": feats[None]})
        return dict(zip(self._outputs, outs, strict=True))

    def ready_frames(self, feature_frames: int) -> int:
        """Encoder frames computable from ``feature_frames`` feature frames."""
        return self.dims.ready_frames(feature_frames)

    def new_stream(self, *, chunk_frames: int, left_chunks: int) -> _OnnxStream:
        """A fresh stream at this chunking."""
        if chunk_frames < 1:
            raise ValueError("streaming needs chunk_frames >= 1")
        return _OnnxStream(self, chunk_frames=chunk_frames, left_chunks=left_chunks)

    def full_context_log_probs(self, pcm: np.ndarray) -> np.ndarray:
        """One call over the whole utterance with empty caches: full attention context."""
        feats = compute_fbank(pcm)
        if len(feats) < self.receptive_field:
            return np.zeros((0, self.vocab_size), np.float32)
        log_probs = self.run(feats, self.empty_state())["log_probs"][0]
        release_memory()
        return log_probs


def load_onnx_model(path: str | Path, *, threads: int = 1, verify: bool = True) -> OnnxAcoustic:
    """Load an exported model file; every failure is a one-line :class:`CheckpointError` naming it.

    Args:
        path: ``model.onnx`` or ``model-int8.onnx``.
        threads: onnxruntime intra-op threads.
        verify: check the SHA-256 recorded beside it (``SHA256SUMS`` or ``<name>.sha256``) first.
    """
    import onnxruntime as ort

    p = Path(path)
    check_model_file(p, expected="model.onnx", verify=verify)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Shapes change every call (the caches grow to the left context): an arena would keep its peak,
    # and a memory pattern is planned and kept per distinct set of input shapes (every utterance
    # length of the full-context pass): a slow growth malloc_trim cannot return.
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    # Prepacking (weights laid out once for the MatMul kernels) is kept: the int8 MatMulNBits kernels
    # need it for their int8 path (2.3x faster streaming), fp32 gains 15 %, and it costs 0.1 MiB (fp32)
    # to 1.5 MiB (int8) for the 6-layer model.
    try:
        session = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a file it cannot parse
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a readable ambient model file ({first[:120]})") from None
    props = dict(session.get_modelmeta().custom_metadata_map)
    dims, tokenizer, meta, quantized = read_onnx_metadata(props, p)
    return OnnxAcoustic(session, path=p, dims=dims, tokenizer=tokenizer, meta=meta, quantized=quantized)
