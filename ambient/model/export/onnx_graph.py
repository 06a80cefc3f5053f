"""The recognizer as one ONNX graph: a streaming step whose every cache is an explicit input and output.

The graph is written node by node from the model's weight banks (not traced), so that what is stored
once in the checkpoint is stored once in the file: every stored tensor of a
:class:`~ambient.model.sharing.LinearBank` or :class:`~ambient.model.sharing.VectorBank` becomes one
initializer, and every virtual layer that reuses it names the same initializer. A traced export folds
each use into a copy of its own.

One call is one encoder chunk (``N`` frames out), with full attention inside the chunk:

========================  ===============  ==========================================================
input                     shape            meaning
========================  ===============  ==========================================================
``feats``                 ``(B, T, 80)``   new raw log-mel frames
``feat_cache``            ``(B, R, 80)``   frames kept by the last call (the subsampling remainder)
``offset``                ``(1,)`` int64   encoder frames already emitted (rotary positions)
``key_{i}``/``value_{i}``  ``(B, H, L, Dh)`` virtual layer ``i``'s rotated keys / values of the left context
``conv_{i}``              ``(B, D, K-1)``  virtual layer ``i``'s last depthwise-convolution inputs
========================  ===============  ==========================================================

Outputs: ``log_probs (B, N, V)`` for ``N = (R + T - rf) // s + 1`` encoder frames, then the new caches
under the same names with ``_out`` (``key_{i}_out`` holds ``L + N`` frames: the caller keeps the last
``left_chunks * chunk_frames``; ``offset_out = offset + N``). The caller feeds exactly the frames that
complete one chunk (``R + T >= rf``); the runtime's driver does that (:mod:`ambient.runtime.onnx_model`).

The full-context pass of two-pass finals is the same graph called once over a whole utterance with
empty caches: one chunk spanning everything is full attention context, as in the torch model's
``forward``.

Model dimensions, tokenizer and metadata ride in the file's ``metadata_props`` (``ambient.*`` keys),
so the runtime needs no torch checkpoint.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ambient.errors import CheckpointError
from ambient.model.asr import AsrModel
from ambient.model.dims import ModelDims
from ambient.model.sharing import LinearBank, VectorBank, group_index
from ambient.runtime.onnx_model import ONNX_FORMAT, ONNX_VERSION

__all__ = ["INT8_SCHEMES", "OPSET", "build_onnx", "export_onnx", "int8_path", "metadata_of", "quantize_onnx_int8"]

OPSET = 17  # LayerNormalization
_INT_MAX = np.iinfo(np.int64).max
_LN_EPS = 1e-5  # torch.nn.functional.layer_norm's default


def _dims_json(dims: ModelDims) -> str:
    return json.dumps(dims.to_dict(), sort_keys=True)


def _tokenizer_json(model: AsrModel) -> str:
    data = dict(model.tokenizer.to_dict())
    if isinstance(data.get("model"), bytes | bytearray):
        data["model"] = base64.b64encode(bytes(data["model"])).decode("ascii")
        data["model_encoding"] = "base64"
    return json.dumps(data, sort_keys=True)


def metadata_of(model: AsrModel, *, source_sha256: str, quantized: str | None) -> dict[str, str]:
    """The ``ambient.*`` metadata stored in the ONNX file (what the runtime needs besides the graph)."""
    from ambient.model.checkpoint import LOAD_TIME_META

    meta = {k: v for k, v in model.meta.items() if k not in LOAD_TIME_META}
    return {
        "ambient.format": ONNX_FORMAT,
        "ambient.version": str(ONNX_VERSION),
        "ambient.dims": _dims_json(model.dims),
        "ambient.tokenizer": _tokenizer_json(model),
        "ambient.meta": json.dumps(meta, sort_keys=True, default=str),
        "ambient.source_sha256": source_sha256,
        "ambient.quantized": quantized or "",
    }


class _Builder:
    """Nodes and initializers of one graph; every helper returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self._n = 0

    def init(self, name: str, value: np.ndarray | torch.Tensor) -> str:
        if name not in self.inits:
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        return name

    def ints(self, *values: int) -> str:
        name = "i64_" + "_".join(str(v).replace("-", "m") for v in values)
        return self.init(name, np.array(values, dtype=np.int64))

    def scalar(self, value: float) -> str:
        return self.init(f"f32_{value!r}".replace("-", "m").replace(".", "p"), np.array(value, dtype=np.float32))

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = name or f"t{self._n}.{op_type}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n{self._n}_{op_type}", **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n_out: int, **attrs: Any) -> list[str]:
        self._n += 1
        outs = [f"t{self._n}.{op_type}.{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"n{self._n}_{op_type}", **attrs))
        return outs

    def slice(self, x: str, start: int | str, end: int, axis: int, step: int = 1, name: str | None = None) -> str:
        starts = start if isinstance(start, str) else self.ints(start)
        return self.op("Slice", x, starts, self.ints(end), self.ints(axis), self.ints(step), name=name)

    def silu(self, x: str) -> str:
        return self.op("Mul", x, self.op("Sigmoid", x))


class _Encoder:
    """Writes the layers of one :class:`AsrModel` into a :class:`_Builder`."""

    def __init__(self, model: AsrModel, g: _Builder) -> None:
        self.m, self.g, self.dims = model, g, model.dims
        enc = model.encoder
        self.slots: dict[str, LinearBank] = {k: b for k, b in enc.slots.items() if isinstance(b, LinearBank)}
        self.vectors: dict[str, VectorBank] = {k: b for k, b in enc.vectors.items() if isinstance(b, VectorBank)}

    # --------------------------------------------------------------- stored tensors, named once
    def _lin_weight(self, slot: str, piece: str, index: int, linears: torch.nn.ModuleList) -> str:
        # Stored as W^T (in, out) so that MatMul(x, W^T) needs no Transpose node per use.
        lin = linears[index]
        if not isinstance(lin, torch.nn.Linear):
            raise ValueError(f"{slot}.{piece}.{index}: export an fp32 model (found {type(lin).__name__})")
        return self.g.init(f"{slot}.{piece}.{index}", lin.weight.detach().t().contiguous())

    def linear(self, slot: str, x: str, layer: int) -> str:
        """``x (..., in)`` through slot ``slot`` of virtual ``layer``: full + U·V + diag, plus bias."""
        key = slot.replace(".", "_")
        bank, g = self.slots[key], self.g
        s = bank.spec

        def gi(size: int) -> int:
            return group_index(layer, size, bank.n_layers, bank.order)

        bias = g.init(f"{slot}.bias.{gi(s.bias_group)}", bank.bias[gi(s.bias_group)])
        y: str | None = None
        if s.full_group:
            i = gi(s.full_group)
            y = g.op("MatMul", x, self._lin_weight(slot, "full", i, bank.full))
        if s.rank:
            iu, iv = gi(s.u_group), gi(s.v_group)
            t = g.op("MatMul", x, self._lin_weight(slot, "v", iv, bank.v))
            low = g.op("MatMul", t, self._lin_weight(slot, "u", iu, bank.u))
            y = low if y is None else g.op("Add", y, low)
        assert y is not None
        y = g.op("Add", y, bias)
        if bank.diag is not None:
            m = bank.n_diag
            d = g.init(f"{slot}.diag.{layer}", bank.diag[layer])
            xd = g.op("Mul", x if m == bank.d_in else g.slice(x, 0, m, -1), d)
            if m == bank.d_out:
                y = g.op("Add", y, xd)
            else:
                head = g.op("Add", g.slice(y, 0, m, -1), xd)
                y = g.op("Concat", head, g.slice(y, m, _INT_MAX, -1), axis=-1)
        return y

    def vec(self, name: str, layer: int) -> str:
        bank = self.vectors[name.replace(".", "_")]
        i = group_index(layer, bank.group, bank.n_layers, bank.order)
        value = bank.value[i]
        if name == "conv.dw.w":
            value = value.unsqueeze(1)  # (D, 1, K): a grouped Conv weight, same elements
        return self.g.init(f"{name}.{i}", value)

    def norm(self, prefix: str, x: str, layer: int) -> str:
        return self.g.op(
            "LayerNormalization",
            x,
            self.vec(f"{prefix}.w", layer),
            self.vec(f"{prefix}.b", layer),
            axis=-1,
            epsilon=_LN_EPS,
        )

    # --------------------------------------------------------------- blocks
    def ffn(self, which: str, x: str, layer: int) -> str:
        g = self.g
        h = g.silu(self.linear(f"{which}.w1", self.norm(f"{which}.norm", x, layer), layer))
        return self.linear(f"{which}.w2", h, layer)

    def rotary(self, x: str, cos: str, sin: str) -> str:
        """Rotate ``x (B, H, N, Dh)`` pairwise (even, odd) by ``cos``/``sin (N, Dh/2)``."""
        g = self.g
        x1, x2 = g.slice(x, 0, _INT_MAX, -1, 2), g.slice(x, 1, _INT_MAX, -1, 2)
        a = g.op("Sub", g.op("Mul", x1, cos), g.op("Mul", x2, sin))
        b = g.op("Add", g.op("Mul", x1, sin), g.op("Mul", x2, cos))
        ax = g.ints(-1)
        pairs = g.op("Concat", g.op("Unsqueeze", a, ax), g.op("Unsqueeze", b, ax), axis=-1)  # (B, H, N, Dh/2, 2)
        return g.op("Reshape", pairs, g.ints(0, 0, 0, -1))

    def attention(self, x: str, layer: int, cos: str, sin: str) -> tuple[str, str, str]:
        g, d = self.g, self.dims
        dh = d.d_model // d.n_heads
        h = self.norm("att.norm", x, layer)

        def heads(y: str) -> str:
            return g.op("Transpose", g.op("Reshape", y, g.ints(0, 0, d.n_heads, dh)), perm=[0, 2, 1, 3])

        q = self.rotary(heads(self.linear("att.q", h, layer)), cos, sin)
        k = self.rotary(heads(self.linear("att.k", h, layer)), cos, sin)
        v = heads(self.linear("att.v", h, layer))
        k_all = g.op("Concat", f"key_{layer}", k, axis=2, name=f"key_{layer}_out")  # (B, H, L + N, Dh)
        v_all = g.op("Concat", f"value_{layer}", v, axis=2, name=f"value_{layer}_out")
        k_t = g.op("Transpose", k_all, perm=[0, 1, 3, 2])  # (B, H, Dh, L + N)
        scores = g.op("Mul", g.op("MatMul", q, k_t), g.scalar(1 / math.sqrt(dh)))
        a = g.op("MatMul", g.op("Softmax", scores, axis=-1), v_all)  # (B, H, N, Dh)
        a = g.op("Reshape", g.op("Transpose", a, perm=[0, 2, 1, 3]), g.ints(0, 0, d.d_model))
        return self.linear("att.o", a, layer), k_all, v_all

    def conv(self, x: str, layer: int) -> str:
        g, d = self.g, self.dims
        h = self.linear("conv.pw1", self.norm("conv.norm", x, layer), layer)  # (B, N, 2D)
        a, b = g.slice(h, 0, d.d_model, -1), g.slice(h, d.d_model, _INT_MAX, -1)
        h = g.op("Transpose", g.op("Mul", a, g.op("Sigmoid", b)), perm=[0, 2, 1])  # GLU -> (B, D, N)
        h = g.op("Concat", f"conv_{layer}", h, axis=2)  # (B, D, K - 1 + N)
        g.slice(h, -(d.conv_kernel - 1), _INT_MAX, 2, name=f"conv_{layer}_out")
        h = g.op("Conv", h, self.vec("conv.dw.w", layer), self.vec("conv.dw.b", layer), group=d.d_model)
        h = g.silu(self.norm("conv.ln", g.op("Transpose", h, perm=[0, 2, 1]), layer))
        return self.linear("conv.pw2", h, layer)

    def layer(self, x: str, layer: int, cos: str, sin: str) -> str:
        g = self.g
        half = g.scalar(0.5)
        x = g.op("Add", x, g.op("Mul", self.ffn("ff1", x, layer), half))
        a, _, _ = self.attention(x, layer, cos, sin)
        x = g.op("Add", x, a)
        x = g.op("Add", x, self.conv(x, layer))
        x = g.op("Add", x, g.op("Mul", self.ffn("ff2", x, layer), half))
        return self.norm("out.norm", x, layer)

    def subsample(self, feats: str) -> str:
        """Normalized ``(B, R + T, 80)`` -> ``(B, N, D)`` through the strided convolutions."""
        g, sub = self.g, self.m.encoder.subsampling
        h = g.op("Unsqueeze", feats, g.ints(1))  # (B, 1, T, F)
        n = 0
        for mod in sub.conv:
            if isinstance(mod, torch.nn.Conv2d):
                w = g.init(f"subsampling.conv.{n}.weight", mod.weight)
                b = g.init(f"subsampling.conv.{n}.bias", mod.bias)  # type: ignore[arg-type]
                h = g.silu(g.op("Conv", h, w, b, strides=[2, 2], kernel_shape=[3, 3]))
                n += 1
        h = g.op("Reshape", g.op("Transpose", h, perm=[0, 2, 1, 3]), g.ints(0, 0, -1))  # (B, N, C·F')
        proj = sub.proj
        y = g.op("MatMul", h, g.init("subsampling.proj.weight", proj.weight.detach().t().contiguous()))
        return g.op("Add", y, g.init("subsampling.proj.bias", proj.bias))


def build_onnx(model: AsrModel, *, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The streaming-step graph of ``model`` (fp32, eval weights); see the module docstring."""
    if any(not p.is_floating_point() for p in model.parameters()):
        raise ValueError("export an fp32 model (quantize the ONNX file instead)")
    d = model.dims
    g = _Builder()
    enc = _Encoder(model, g)
    sub = model.encoder.subsampling
    dh = d.d_model // d.n_heads

    raw = g.op("Concat", "feat_cache", "feats", axis=1)  # (B, R + T, 80)
    normed = g.op("Div", g.op("Sub", raw, g.init("norm_mean", model.norm_mean)), g.init("norm_std", model.norm_std))
    x = enc.subsample(normed)  # (B, N, D)
    n = g.op("Slice", g.op("Shape", x), g.ints(1), g.ints(2))  # (1,) = N
    g.slice(raw, g.op("Mul", n, g.ints(sub.factor)), _INT_MAX, 1, name="feat_cache_out")  # the remainder
    end = g.op("Add", "offset", n, name="offset_out")
    pos = g.op("Cast", g.op("Range", g.op("Squeeze", "offset"), g.op("Squeeze", end), g.ints(1)), to=TensorProto.FLOAT)
    inv = 1.0 / (10000.0 ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh))  # as layer.rotary_tables
    ang = g.op("Mul", g.op("Unsqueeze", pos, g.ints(1)), g.init("rotary_inv_freq", inv[None, :]))  # (N, Dh/2)
    cos, sin = g.op("Cos", ang), g.op("Sin", ang)
    for layer in range(d.n_layers):
        x = enc.layer(x, layer, cos, sin)
    logits = g.op(
        "Add",
        g.op("MatMul", x, g.init("head.weight", model.head.weight.detach().t().contiguous())),
        g.init("head.bias", model.head.bias),
    )
    g.op("LogSoftmax", logits, axis=-1, name="log_probs")

    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("feats", f, ["B", "T", d.n_mels]),
        helper.make_tensor_value_info("feat_cache", f, ["B", "R", d.n_mels]),
        helper.make_tensor_value_info("offset", TensorProto.INT64, [1]),
    ]
    outputs = [
        helper.make_tensor_value_info("log_probs", f, ["B", "N", d.vocab_size]),
        helper.make_tensor_value_info("feat_cache_out", f, ["B", "R_out", d.n_mels]),
        helper.make_tensor_value_info("offset_out", TensorProto.INT64, [1]),
    ]
    for i in range(d.n_layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"{kind}_{i}", f, ["B", d.n_heads, "L", dh]))
            outputs.append(helper.make_tensor_value_info(f"{kind}_{i}_out", f, ["B", d.n_heads, "L_out", dh]))
        inputs.append(helper.make_tensor_value_info(f"conv_{i}", f, ["B", d.d_model, d.conv_kernel - 1]))
        outputs.append(helper.make_tensor_value_info(f"conv_{i}_out", f, ["B", d.d_model, d.conv_kernel - 1]))
    graph = helper.make_graph(g.nodes, "ambient_stream_step", inputs, outputs, list(g.inits.values()))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ambient")
    proto.ir_version = 8  # readable by onnxruntime >= 1.10
    helper.set_model_props(proto, metadata or metadata_of(model, source_sha256="", quantized=None))
    onnx.checker.check_model(proto)
    return proto


#: How ``quantize_onnx_int8`` stores the MatMul weights in int8.
#:
#: - ``block``: ``MatMulNBits`` with 8 bits and one fp32 scale per 32 input rows of each output column
#:   (onnxruntime's ``MatMulNBitsQuantizer``), computed in int8 with the activations quantized per
#:   block at run time. The default: closer to fp32 than dynamic quantization, and smaller in memory,
#:   because the graph keeps one node per MatMul (dynamic quantization adds quantize, integer-MatMul
#:   and rescale nodes per use, and each node costs the session memory: per virtual layer that is more
#:   than the layer's weights).
#: - ``dynamic`` / ``dynamic-per-channel``: onnxruntime's dynamic quantization (int8 activations computed
#:   per call; one scale per tensor or per output channel). Faster, further from fp32.
INT8_SCHEMES = ("block", "dynamic", "dynamic-per-channel")
INT8_BLOCK = 32
INT8_ACCURACY_LEVEL = 4


def quantize_onnx_int8(src: Path, dst: Path, *, scheme: str = "block") -> None:
    """int8 copy of every MatMul weight of ``src`` in ``dst`` (see :data:`INT8_SCHEMES`); the metadata is
    kept, with ``ambient.quantized`` naming the scheme (``int8-block32``, ``int8``, ``int8-per-channel``).
    A shared weight is quantized once and stays one initializer that every virtual layer names."""
    if scheme not in INT8_SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r} (one of {', '.join(INT8_SCHEMES)})")
    # the quantizers log advice and per-node notes, on the root logger and on their own (set to INFO)
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        if scheme == "block":
            from onnxruntime.quantization import matmul_nbits_quantizer as nbits

            # accuracy_level 4: the product runs in int8 (activations quantized per block of 32 at run
            # time), onnxruntime's fast MatMulNBits kernels; at level 0 the 8-bit weights are widened to
            # fp32 on every call (2x slower than fp32 in streaming chunks).
            config = nbits.DefaultWeightOnlyQuantConfig(
                block_size=INT8_BLOCK, is_symmetric=True, bits=8, accuracy_level=INT8_ACCURACY_LEVEL
            )
            quantizer = nbits.MatMulNBitsQuantizer(
                onnx.load(str(src)),
                bits=8,
                block_size=INT8_BLOCK,
                is_symmetric=True,
                accuracy_level=INT8_ACCURACY_LEVEL,
                algo_config=config,
            )
            quantizer.process()
            proto = quantizer.model.model
            tag = f"int8-block{INT8_BLOCK}"
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            per_channel = scheme == "dynamic-per-channel"
            quantize_dynamic(
                src, dst, weight_type=QuantType.QInt8, per_channel=per_channel, op_types_to_quantize=["MatMul"]
            )
            proto = onnx.load(str(dst))
            tag = "int8-per-channel" if per_channel else "int8"
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    props = {p.key: p.value for p in proto.metadata_props}
    props["ambient.quantized"] = tag
    del proto.metadata_props[:]
    helper.set_model_props(proto, props)
    onnx.save(proto, str(dst))


def int8_path(path: Path) -> Path:
    """Where the int8 twin of an exported file goes: ``model.onnx`` -> ``model-int8.onnx``."""
    return path.with_name(f"{path.stem}-int8{path.suffix}")


def _save_with_sha(proto: onnx.ModelProto, path: Path) -> str:
    import hashlib

    data = proto.SerializeToString()
    digest = hashlib.sha256(data).hexdigest()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def export_onnx(model_path: Path, out: Path, *, int8: bool = True, int8_scheme: str = "block") -> dict[str, str]:
    """Export the fp32 checkpoint ``model_path`` (SHA-256 verified) to ``out`` and, with ``int8``, its
    int8 twin (:func:`int8_path`); each file gets a ``.sha256`` beside it. Returns ``{file name: sha256}``."""
    from ambient.model.checkpoint import file_sha256, load_model

    model = load_model(model_path)
    if model.meta.get("int8"):
        raise CheckpointError(f"{model_path}: export the fp32 model file (the int8 graph is quantized from it)")
    source = file_sha256(Path(model_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {
        out.name: _save_with_sha(
            build_onnx(model, metadata=metadata_of(model, source_sha256=source, quantized=None)), out
        )
    }
    if int8:
        q = int8_path(out)
        tmp = q.with_name(f".{q.name}.quantizing{os.getpid()}")
        quantize_onnx_int8(out, tmp, scheme=int8_scheme)
        written[q.name] = _save_with_sha(onnx.load(str(tmp)), q)
        tmp.unlink()
    return written
