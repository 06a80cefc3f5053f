"""Weight sharing: stored once in memory and on disk; virtual parameters count reuse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from ambient.model.checkpoint import save_model
from ambient.model.dims import SCHEMES, SLOTS, ModelDims, SharingConfig
from ambient.model.info import stored_params, virtual_params
from ambient.model.sharing import LinearBank, group_index
from ambient.model.testing import SCHEME_EXAMPLES, build_tiny_model


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


def _tiny_dims(n_layers: int, sharing: SharingConfig) -> ModelDims:
    return ModelDims(d_model=32, n_heads=2, d_ff=64, n_layers=n_layers, conv_kernel=3, sub_channels=8, sharing=sharing)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"scheme": "subcomponent", "shared_slots": ("att.qq", "ff.w9")}, "sharing.shared_slots"),
        ({"scheme": "subcomponent", "shared_slots": ("att.q", "att.x")}, "sharing.shared_slots"),
        ({"scheme": "module", "shared_modules": ("ff",), "shared_slots": ("att.q",)}, "sharing.shared_slots"),
        ({"scheme": "residual", "rank": 4, "shared_factor": "v"}, "sharing.shared_factor"),
        ({"scheme": "none", "group_size": 2}, "sharing.group_size"),
        ({"scheme": "module", "shared_modules": ("att",), "order": "cycle"}, "sharing.order"),
        ({"scheme": "lowrank", "rank": 4, "n_stored_blocks": 2}, "sharing.n_stored_blocks"),
    ],
)
def test_unknown_names_and_unused_keys_are_one_line_errors_naming_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError) as e:
        SharingConfig(**kwargs)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("n_layers", "kwargs", "key"),
    [
        (6, {"scheme": "repeat", "n_stored_blocks": 4}, "sharing.n_stored_blocks"),
        (4, {"scheme": "repeat", "n_stored_blocks": 6}, "sharing.n_stored_blocks"),
        (6, {"scheme": "residual", "rank": 4, "group_size": 8}, "sharing.group_size"),
    ],
)
def test_schemes_that_cannot_store_the_layers_as_described_are_refused(
    n_layers: int, kwargs: dict[str, Any], key: str
) -> None:
    with pytest.raises(ValueError) as e:
        _tiny_dims(n_layers, SharingConfig(**kwargs))
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def _groups(k: str, n_layers: int) -> int:
    """Stored copies for a description's ``K=`` (``all`` or a group size)."""
    return 1 if k == "all" else -(-n_layers // int(k))


def _described(text: str, n_layers: int) -> dict[str, tuple[int, int, int]]:
    """What :meth:`SharingConfig.describe` promises: slot -> stored (full, u, v) counts, read from
    the text alone."""
    slots = list(SLOTS)
    if text == "none":
        return {s: (n_layers, 0, 0) for s in slots}
    if m := re.fullmatch(r"repeat\((\d+) stored, (stack|cycle)\)", text):
        return {s: (int(m[1]), 0, 0) for s in slots}
    if m := re.fullmatch(r"module\(([a-z+]+), K=(\w+)\)", text):
        shared = m[1].split("+")
        head = {s: "ff" if s.startswith("ff") else s.split(".")[0] for s in slots}
        return {s: (_groups(m[2], n_layers) if head[s] in shared else n_layers, 0, 0) for s in slots}
    if m := re.fullmatch(r"subcomponent\(([a-z0-9.+]+), K=(\w+)\)", text):
        named = set(m[1].split("+"))
        return {
            s: (_groups(m[2], n_layers) if s in named or f"ff.{s.split('.')[1]}" in named else n_layers, 0, 0)
            for s in slots
        }
    if m := re.fullmatch(r"lowrank\(r=(\d+), shared (u|v|both), K=(\w+)\)", text):
        g = _groups(m[3], n_layers)
        u = g if m[2] in ("u", "both") else n_layers
        v = g if m[2] in ("v", "both") else n_layers
        return {s: (0, u, v) for s in slots}
    if m := re.fullmatch(r"residual\(K=(\w+), r=(\d+)(, diag)?\)", text):
        return {s: (_groups(m[1], n_layers), n_layers, n_layers) for s in slots}
    raise AssertionError(f"unparsed description {text!r}")


@pytest.mark.parametrize(
    ("n_layers", "sharing"),
    [
        *[(4, cfg) for cfg in SCHEME_EXAMPLES.values()],
        (6, SharingConfig(scheme="repeat", n_stored_blocks=3, order="cycle")),
        (6, SharingConfig(scheme="module", shared_modules=("att",), group_size=4)),
        (6, SharingConfig(scheme="subcomponent", shared_slots=("ff1.w2", "conv.pw1"), group_size=2)),
        (6, SharingConfig(scheme="lowrank", rank=4, shared_factor="both", group_size=3)),
        (6, SharingConfig(scheme="residual", rank=4, group_size=0, diag=False)),
    ],
    ids=lambda v: v.describe() if isinstance(v, SharingConfig) else str(v),
)
def test_what_is_stored_is_what_the_description_reports(n_layers: int, sharing: SharingConfig) -> None:
    from ambient.model.asr import AsrModel

    model = AsrModel(dims=_tiny_dims(n_layers, sharing))
    stored = {s: (len(b.full), len(b.u), len(b.v)) for s, b in ((s, _bank(model, s)) for s in SLOTS)}
    assert stored == _described(sharing.describe(), n_layers)
    if sharing.scheme == "repeat":  # the whole block is stored n_stored_blocks times, vectors included
        assert {v.value.size(0) for v in model.encoder.vectors.values()} == {sharing.n_stored_blocks}
