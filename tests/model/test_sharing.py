"""Weight sharing: stored once in memory and on disk; virtual parameters count reuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ambient.model.checkpoint import save_model
from ambient.model.dims import SCHEMES, ModelDims, SharingConfig
from ambient.model.info import stored_params, virtual_params
from ambient.model.sharing import LinearBank, group_index
from ambient.model.testing import build_tiny_model


def _bank(model, slot: str) -> LinearBank:
    return model.encoder.slots[slot.replace(".", "_")]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_checkpoint_stores_each_tensor_once(scheme: str, tmp_path: Path) -> None:
    model = build_tiny_model(scheme)
    state = model.state_dict()
    ptrs = [t.untyped_storage().data_ptr() for t in state.values()]
    assert len(ptrs) == len(set(ptrs)), "a tensor appears twice in the state dict"
    n_params = stored_params(model)
    path = tmp_path / "m.pt"
    save_model(model, path)
    size = path.stat().st_size
    buffers = sum(b.numel() for b in model.buffers())
    payload = 4 * (n_params + buffers)
    assert payload <= size <= payload * 1.02 + 64_000, (size, payload)


def test_repeat_reuses_the_same_tensor_object() -> None:
    model = build_tiny_model("repeat")  # 4 virtual layers from 2 stored blocks, stacked
    bank = _bank(model, "att.q")
    assert len(bank.full) == 2
    assert group_index(0, 2, 4) == group_index(1, 2, 4) == 0
    assert group_index(2, 2, 4) == group_index(3, 2, 4) == 1
    # The weight applied by virtual layers 0 and 1 is the very same storage.
    used = [bank.full[group_index(layer, bank.spec.full_group, 4)].weight.data_ptr() for layer in range(4)]
    assert used[0] == used[1] != used[2] == used[3]


def test_cycle_order_interleaves_blocks() -> None:
    dims = ModelDims(
        d_model=32,
        n_heads=2,
        d_ff=64,
        n_layers=6,
        conv_kernel=3,
        sub_channels=8,
        sharing=SharingConfig(scheme="repeat", n_stored_blocks=2, order="cycle"),
    )
    assert [group_index(layer, 3, 6, "cycle") for layer in range(6)] == [0, 1, 0, 1, 0, 1]
    from ambient.model.asr import AsrModel

    m = AsrModel(dims=dims)
    assert len(m.encoder.slots["ff1_w1"].full) == 2


def test_module_sharing_shares_only_named_modules() -> None:
    model = build_tiny_model("module")  # ff + conv shared by all 4 layers, attention per layer
    assert len(_bank(model, "ff1.w1").full) == 1
    assert len(_bank(model, "conv.pw1").full) == 1
    assert len(_bank(model, "att.q").full) == 4


def test_subcomponent_sharing_shares_single_matrices() -> None:
    model = build_tiny_model("subcomponent")  # att.q, att.k, ff.w1 shared
    assert len(_bank(model, "att.q").full) == 1
    assert len(_bank(model, "att.v").full) == 4
    assert len(_bank(model, "ff2.w1").full) == 1
    assert len(_bank(model, "ff2.w2").full) == 4


def test_lowrank_shares_one_factor() -> None:
    model = build_tiny_model("lowrank")  # W_l = U · V_l, U shared
    bank = _bank(model, "att.o")
    assert len(bank.full) == 0 and len(bank.u) == 1 and len(bank.v) == 4
    assert bank.u[0].weight.shape == (64, 8)


def test_residual_is_shared_plus_lowrank_plus_diagonal() -> None:
    model = build_tiny_model("residual")  # K=2, r=4
    bank = _bank(model, "att.o")
    assert len(bank.full) == 2 and len(bank.u) == 4 and len(bank.v) == 4
    assert bank.diag is not None and bank.diag.shape == (4, 64)
    x = torch.randn(3, 64)
    with torch.no_grad():
        bank.diag[1].fill_(0.5)
        expected = bank.full[0](x) + bank.u[1](bank.v[1](x)) + 0.5 * x + bank.bias[1]
        torch.testing.assert_close(bank(x, 1), expected)


def test_virtual_params_count_reuse() -> None:
    base = build_tiny_model("none")
    assert virtual_params(base) == stored_params(base)
    for scheme in ("repeat", "module", "subcomponent", "lowrank", "residual"):
        m = build_tiny_model(scheme)
        assert stored_params(m) < stored_params(base), scheme
        assert virtual_params(m) > stored_params(m), scheme
    # block repetition applies exactly the baseline's parameter count per frame
    assert virtual_params(build_tiny_model("repeat")) == virtual_params(base)


def test_bad_sharing_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="rank"):
        SharingConfig(scheme="residual")
    with pytest.raises(ValueError, match="unknown sharing scheme"):
        SharingConfig(scheme="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shared module"):
        SharingConfig(scheme="module", shared_modules=("mlp",))


def test_int8_model_reports_the_same_stored_params() -> None:
    from ambient.model.checkpoint import quantize_int8

    for scheme in ("repeat", "residual"):
        m = build_tiny_model(scheme)
        assert stored_params(quantize_int8(m)) == stored_params(m)
