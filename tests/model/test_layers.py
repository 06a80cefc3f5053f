"""Per-layer views: every virtual layer is a module that names the shared tensors it uses, while
each tensor stays stored once (in the encoder's banks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ambient.model.asr import AsrModel
from ambient.model.dims import ModelDims
from ambient.model.layer import ConformerLayer
from ambient.model.testing import build_tiny_model

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "ambient-base" / "model.pt"


def test_print_model_names_each_layer_and_the_stored_tensors_it_shares() -> None:
    model = build_tiny_model("repeat")  # 4 virtual layers from 2 stored blocks, stacked
    text = str(model)
    assert text.count("ConformerLayer(") == 4
    layers = model.encoder.layers
    assert "att.q: slots.att_q full.0 (layers 0,1)" in str(layers[1])
    assert "att.q: slots.att_q full.1 (layers 2,3)" in str(layers[2])
    assert "conv.dw.w: vectors.conv_dw_w.value[1] (layers 2,3)" in str(layers[3])
    residual = str(build_tiny_model("residual").encoder.layers[3])  # K=2: full shared, low rank per layer
    assert "ff2.w1: slots.ff2_w1 full.1 (layers 2,3) + u.3 (layer 3) + v.3 (layer 3) + diag[3] (layer 3)" in residual


def test_views_hold_no_parameters_and_apply_the_banks_own_storage() -> None:
    model = build_tiny_model("module")  # ff + conv shared by all 4 layers
    layers = [layer for layer in model.encoder.layers if isinstance(layer, ConformerLayer)]
    assert len(layers) == 4
    assert sum(p.numel() for layer in layers for p in layer.parameters()) == 0
    assert not any(k.startswith("encoder.layers") for k in model.state_dict())

    def used(proj: Any, layer: ConformerLayer) -> int:  # storage of the full-rank piece a layer applies
        return int(next(proj.bank.full[proj.bank.pieces(layer.index)[0][1]].parameters()).data_ptr())

    w1 = {used(layer.ff1_w1, layer) for layer in layers}
    assert w1 == {model.encoder.get_parameter("slots.ff1_w1.full.0.weight").data_ptr()}
    assert len({used(layer.att_q, layer) for layer in layers}) == 4


def test_a_forward_hook_on_one_layer_sees_that_layer_run() -> None:
    model = build_tiny_model("residual")
    seen: list[tuple[int, ...]] = []
    model.encoder.layers[2].register_forward_hook(lambda _m, _i, out: seen.append(tuple(out[0].shape)))
    with torch.inference_mode():
        _, out_len = model(torch.randn(2, 60, 80), torch.tensor([60, 40]))
    assert seen == [(2, int(out_len.max()), 64)]


def test_the_shipped_checkpoint_keys_are_the_models_state_dict_keys() -> None:
    """Views add no state-dict key: the shipped file loads strictly (load_model, and the shipped-model
    tests reproduce its transcripts) and a model built from its dims has exactly its keys."""
    payload = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    model = AsrModel(dims=ModelDims.from_dict(payload["dims"]))
    assert list(model.state_dict()) == list(payload["state_dict"])


def test_ready_frames_is_what_the_subsampling_computes() -> None:
    for factor in (4, 8):
        encoder = build_tiny_model("none", subsampling=factor).encoder
        for t in range(0, 40):
            with torch.inference_mode():
                computed = encoder.subsampling(torch.zeros(1, t, 80)).size(1)
            assert encoder.ready_frames(t) == computed == int(encoder.subsampling.output_lengths(torch.tensor(t)))
            assert encoder.dims.ready_frames(t) == computed  # what the torch-free ONNX runtime uses
