"""Model dimensions and the weight-sharing scheme: frozen dataclasses stored inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["SCHEMES", "SHARED_SLOT_NAMES", "SLOTS", "ModelDims", "SharingConfig"]

Scheme = Literal["none", "repeat", "module", "subcomponent", "lowrank", "residual"]
SCHEMES: tuple[str, ...] = ("none", "repeat", "module", "subcomponent", "lowrank", "residual")

#: Projection slots of one Conformer layer: name -> (input dim, output dim) as names.
SLOTS: dict[str, tuple[str, str]] = {
    "ff1.w1": ("d", "f"),
    "ff1.w2": ("f", "d"),
    "att.q": ("d", "d"),
    "att.k": ("d", "d"),
    "att.v": ("d", "d"),
    "att.o": ("d", "d"),
    "conv.pw1": ("d", "2d"),
    "conv.pw2": ("d", "d"),
    "ff2.w1": ("d", "f"),
    "ff2.w2": ("f", "d"),
}

#: What ``shared_slots`` may name: a slot of :data:`SLOTS`, or ``ff.w1``/``ff.w2`` for both feed-forwards.
SHARED_SLOT_NAMES: tuple[str, ...] = (*SLOTS, "ff.w1", "ff.w2")

#: The schemes that read each :class:`SharingConfig` field; any other scheme needs it left at its default.
_USED_BY: dict[str, tuple[str, ...]] = {
    "n_stored_blocks": ("repeat",),
    "order": ("repeat",),
    "shared_modules": ("module",),
    "shared_slots": ("subcomponent",),
    "group_size": ("module", "subcomponent", "lowrank", "residual"),
    "rank": ("lowrank", "residual"),
    "shared_factor": ("lowrank",),
    "diag": ("residual",),
}


@dataclass(frozen=True)
class SharingConfig:
    """How the virtual layers' weights are stored.

    Schemes (``n_layers`` = M virtual layers):

    - ``none``: every virtual layer has its own weights (the baseline).
    - ``repeat``: ``n_stored_blocks`` = N whole Conformer blocks applied to make M layers
      (``order="stack"``: each block runs M/N times in a row; ``"cycle"``: blocks 0..N-1, 0..N-1, …).
    - ``module``: the modules named in ``shared_modules`` (``ff``, ``att``, ``conv``) are shared by
      groups of ``group_size`` adjacent layers (0 = all layers); the other modules are per layer.
    - ``subcomponent``: the projection matrices named in ``shared_slots`` (e.g. ``att.q``, ``ff.w1``,
      ``conv.pw1``) are shared by groups of ``group_size`` layers; everything else is per layer.
    - ``lowrank``: every projection is ``W = U·V`` of rank ``rank``; the factor(s) named by
      ``shared_factor`` are shared by groups of ``group_size`` layers, the other is per layer.
    - ``residual`` (ResidualTransformer): ``W_l = W_shared(group of group_size adjacent layers)
      + U_l·V_l (rank) + diag(d_l)`` (the diagonal term only if ``diag``).
    """

    scheme: Scheme = "none"
    n_stored_blocks: int = 0
    order: Literal["stack", "cycle"] = "stack"
    shared_modules: tuple[str, ...] = ()
    shared_slots: tuple[str, ...] = ()
    group_size: int = 0
    rank: int = 0
    shared_factor: Literal["u", "v", "both"] = "u"
    diag: bool = True

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(
                f"sharing.scheme: unknown sharing scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}"
            )
        if self.scheme == "repeat" and self.n_stored_blocks < 1:
            raise ValueError("sharing.n_stored_blocks: sharing scheme 'repeat' needs n_stored_blocks >= 1")
        if self.scheme in ("lowrank", "residual") and self.rank < 1:
            raise ValueError(f"sharing.rank: sharing scheme {self.scheme!r} needs rank >= 1")
        if self.scheme == "module" and not self.shared_modules:
            raise ValueError("sharing.shared_modules: sharing scheme 'module' needs shared_modules (ff, att, conv)")
        if self.scheme == "subcomponent" and not self.shared_slots:
            raise ValueError("sharing.shared_slots: scheme 'subcomponent' needs shared_slots (e.g. att.q, ff.w1)")
        bad = set(self.shared_modules) - {"ff", "att", "conv"}
        if bad:
            raise ValueError(f"sharing.shared_modules: unknown shared module(s) {sorted(bad)}; choose ff, att, conv")
        bad = set(self.shared_slots) - set(SHARED_SLOT_NAMES)
        if bad:
            raise ValueError(
                f"sharing.shared_slots: unknown slot(s) {sorted(bad)}; choose from {', '.join(SHARED_SLOT_NAMES)}"
            )
        if self.group_size < 0:
            raise ValueError("sharing.group_size must be >= 0 (0 = all layers)")
        defaults = {f.name: f.default for f in fields(SharingConfig)}
        for key, schemes in _USED_BY.items():
            if self.scheme not in schemes and getattr(self, key) != defaults[key]:
                raise ValueError(
                    f"sharing.{key} is not used by scheme {self.scheme!r} (only by {', '.join(schemes)}); remove it"
                )

    def check_layers(self, n_layers: int) -> None:
        """Raise a one-line ``ValueError`` naming the key if this scheme cannot store ``n_layers``
        virtual layers as :meth:`describe` reports it."""
        if self.scheme == "repeat" and (self.n_stored_blocks > n_layers or n_layers % self.n_stored_blocks):
            raise ValueError(
                f"sharing.n_stored_blocks: {self.n_stored_blocks} blocks cannot make n_layers={n_layers} "
                "virtual layers (it must divide n_layers)"
            )
        if self.group_size > n_layers:
            raise ValueError(
                f"sharing.group_size: groups of {self.group_size} layers exceed n_layers={n_layers} (0 = all layers)"
            )

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``residual(K=3, r=16, diag)``."""
        s = self.scheme
        k = "all" if self.group_size == 0 else str(self.group_size)
        if s == "repeat":
            return f"repeat({self.n_stored_blocks} stored, {self.order})"
        if s == "module":
            return f"module({'+'.join(self.shared_modules)}, K={k})"
        if s == "subcomponent":
            return f"subcomponent({'+'.join(self.shared_slots)}, K={k})"
        if s == "lowrank":
            return f"lowrank(r={self.rank}, shared {self.shared_factor}, K={k})"
        if s == "residual":
            return f"residual(K={k}, r={self.rank}{', diag' if self.diag else ''})"
        return "none"


@dataclass(frozen=True)
class ModelDims:
    """Every dimension of the recognizer. Stored in the checkpoint; one source of truth.

    ``subsampling`` 4 gives 25 encoder frames/s (characters fit); 8 gives 12.5 frames/s and needs
    BPE units so that CTC has at least one frame per token.
    """

    n_mels: int = 80
    d_model: int = 144
    n_heads: int = 4
    d_ff: int = 576
    conv_kernel: int = 15
    n_layers: int = 6
    subsampling: Literal[4, 8] = 4
    sub_channels: int = 64
    vocab_size: int = 29
    dropout: float = 0.1
    sharing: SharingConfig = field(default_factory=SharingConfig)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model must split into n_heads heads of even size (rotary positions)")
        if self.subsampling not in (4, 8):
            raise ValueError("subsampling must be 4 or 8")
        if self.conv_kernel < 1 or self.n_layers < 1 or self.vocab_size < 2:
            raise ValueError("conv_kernel, n_layers must be >= 1 and vocab_size >= 2")
        self.sharing.check_layers(self.n_layers)

    @property
    def receptive_field(self) -> int:
        """Feature frames one subsampled frame reads: frame ``j`` sees ``[s*j, s*j + rf)``, ``rf = 2s - 1``."""
        return 2 * self.subsampling - 1

    def ready_frames(self, feature_frames: int) -> int:
        """Encoder frames the subsampling can compute from the first ``feature_frames`` feature frames
        (plain arithmetic, so the torch encoder and the torch-free ONNX runtime share it)."""
        rf, s = self.receptive_field, self.subsampling
        return (feature_frames - rf) // s + 1 if feature_frames >= rf else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for the checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDims:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        data = dict(data)
        sharing = dict(data.pop("sharing", {}))
        for key in ("shared_modules", "shared_slots"):
            if key in sharing:
                sharing[key] = tuple(sharing[key])
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model dimension(s): {sorted(unknown)}")
        return cls(**data, sharing=SharingConfig(**sharing))
