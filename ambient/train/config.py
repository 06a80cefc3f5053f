"""Training settings: one YAML file validated by pydantic (``TrainConfig``).

Sections: ``model`` (:class:`~ambient.model.dims.ModelDims` fields, ``sharing`` included, except
``vocab_size`` which the tokenizer sets), ``tokenizer``, ``data``, ``optim``, ``chunk`` (dynamic
chunk training) and ``run``. Unknown keys and bad values raise :class:`ConfigError` with a one-line
message naming the key. Relative paths are taken relative to the YAML file's folder. A file may
``extends:`` another and change only what differs (:func:`load_train_config`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ambient.config import read_yaml_file
from ambient.errors import ConfigError
from ambient.model.dims import ModelDims
from ambient.stream.recognizer import DEFAULT_LEFT_CONTEXT_S
from ambient.train.augment import AugmentConfig

__all__ = [
    "ChunkConfig",
    "DataConfig",
    "ManifestSpec",
    "OptimConfig",
    "RunConfig",
    "TokenizerConfig",
    "TrainConfig",
    "config_reference_markdown",
    "load_train_config",
    "parse_train_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TokenizerConfig(_Section):
    """Output units of the CTC head."""

    type: Literal["char", "sentencepiece"] = Field(
        "char",
        description="`char`: blank, space, apostrophe, a-z (fits 4x subsampling); "
        "`sentencepiece`: BPE units (needed for 8x).",
    )
    model: Path | None = Field(None, description="The sentencepiece `.model` file for `type: sentencepiece`.")

    @model_validator(mode="after")
    def _needs_model(self) -> TokenizerConfig:
        if self.type == "sentencepiece" and self.model is None:
            raise ValueError("tokenizer type 'sentencepiece' needs tokenizer.model (a .model file)")
        return self


class ManifestSpec(_Section):
    """One training manifest and how often each of its utterances is seen per epoch."""

    path: Path = Field(description="A JSON-lines manifest (`ambient data prepare`).")
    weight: float = Field(
        1.0, ge=0, le=100, description="Repeat factor per epoch: 3 = every utterance three times, 0.5 = a random half."
    )
    sources: list[str] | None = Field(
        None,
        min_length=1,
        description="Keep only the utterances of these corpora (their `source`), so one manifest can be weighted "
        "per corpus; null = all.",
    )


class DataConfig(_Section):
    """Training and development data."""

    train: list[ManifestSpec] = Field(min_length=1, description="Training manifests with their weights.")
    dev: Path | None = Field(None, description="Development manifest for periodic WER; null = no dev evaluation.")
    held_out: list[Path] = Field(
        default_factory=list,
        description="Dev manifests whose speakers must never train: a training utterance of any of their "
        "(source, speaker) pairs stops the run with an error naming it.",
    )
    dev_max_utterances: int | None = Field(
        400, ge=1, description="Evaluate on a fixed random subset of this many dev utterances (null = all)."
    )
    augment: AugmentConfig | None = Field(None, description="On-the-fly augmentation; null = none.")
    min_duration_s: float = Field(0.3, ge=0, description="Shorter training utterances are skipped.")
    max_duration_s: float = Field(20.0, gt=0, description="Longer training utterances are skipped.")
    max_batch_seconds: float = Field(
        160.0, gt=0, description="Padded audio per batch (utterances x longest) on each rank, in seconds."
    )
    max_batch_size: int | None = Field(None, ge=1, description="Optional cap on utterances per batch.")
    num_buckets: int = Field(6, ge=1, le=64, description="Duration buckets (quantiles) used to group similar lengths.")
    num_workers: int = Field(
        1, ge=0, le=64, description="DataLoader worker processes per rank (0 = load in the trainer)."
    )
    norm_utterances: int = Field(
        500, ge=1, description="Training utterances sampled for the global log-mel mean/std of a fresh run."
    )

    @model_validator(mode="after")
    def _durations(self) -> DataConfig:
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError("data.min_duration_s must be below data.max_duration_s")
        return self


class OptimConfig(_Section):
    """Optimizer, learning-rate schedule, stopping, precision."""

    lr: float = Field(1e-3, gt=0, le=1, description="Peak learning rate (AdamW).")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    weight_decay: float = Field(
        1e-3, ge=0, description="Decoupled weight decay on matrices (not on biases, norms, vectors)."
    )
    warmup_steps: int = Field(2000, ge=0, description="Linear warm-up from 0 to `lr`.")
    schedule: Literal["cosine", "noam", "constant"] = Field(
        "cosine",
        description="After warm-up: `cosine` decay to `min_lr_ratio * lr` at `max_steps`; "
        "`noam` (inverse square root); `constant`.",
    )
    min_lr_ratio: float = Field(
        0.02, ge=0, le=1, description="Final learning rate of the cosine schedule, relative to `lr`."
    )
    max_steps: int = Field(100_000, ge=1, description="Stop after this many optimizer steps (also the cosine horizon).")
    max_hours: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Also stop after this much training wall time, summed over resumed runs; null = no limit.",
    )
    grad_clip: float = Field(5.0, gt=0, description="Clip the global gradient norm to this value.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="`bf16`: autocast matmuls to bfloat16; `fp32`: none; `auto`: bf16 where the hardware has it "
        "natively (CUDA, CPUs with AVX512-BF16, AMX or Arm BF16), else fp32 (emulated bf16 is several times slower).",
    )

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("betas must be in [0, 1)")
        return v


class ChunkConfig(_Section):
    """Dynamic chunk training (as in WeNet): one model for several streaming latencies."""

    full_context_prob: float = Field(
        0.5, ge=0, le=1, description="Probability that a batch trains with full context (no chunk mask)."
    )
    max_chunk_frames: int = Field(
        25, ge=1, description="Otherwise the chunk is uniform in [1, this] encoder frames (25 = 1 s at 4x subsampling)."
    )
    max_left_chunks: int = Field(
        8, ge=0, description="Left context of a chunked batch: uniform in [0, this] chunks, or unlimited (below)."
    )
    unlimited_left_prob: float = Field(
        0.5, ge=0, le=1, description="Probability that a chunked batch sees all earlier chunks."
    )
    left_context_s: float = Field(
        DEFAULT_LEFT_CONTEXT_S,
        ge=-1,
        description="Attention left context when the exported model streams, in seconds (negative = unlimited); "
        "stored as the model's `left_context_s` metadata, which the recognizer uses.",
    )


class RunConfig(_Section):
    """Where the run lives, how often it checkpoints and evaluates, and on what."""

    output_dir: Path = Field(
        description="Run directory, never tracked by git (e.g. the repo's ignored `runs/`): "
        "training states, metrics, plots, best.pt, last.pt."
    )
    seed: int = Field(0, description="Seed of initialization, data order, augmentation and chunk sampling.")
    threads: int = Field(
        1, ge=1, le=256, description="torch intra-op threads per rank (with DataLoader workers, leave them a core)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`: CUDA when available, else CPU.")
    checkpoint_every_steps: int | None = Field(None, ge=1, description="Save a training state every this many steps.")
    checkpoint_every_minutes: float | None = Field(
        15.0, gt=0, description="Save a training state when this much wall time passed since the last one."
    )
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="Training states kept in the run directory.")
    dev_every_steps: int = Field(
        1000, ge=1, description="Evaluate dev WER (and export `last.pt`/`best.pt`) every this many steps."
    )
    dev_chunk_ms: int = Field(
        640, ge=10, description="Chunk of the streaming dev evaluation (the daemon's `recognizer.chunk_ms`)."
    )
    log_every_steps: int = Field(
        20, ge=1, description="Write a metrics record (and a log line off a terminal) every this many steps."
    )
    name: str = Field("ambient", description="Model name stored in the exported checkpoints' metadata.")
    init_from: Path | None = Field(
        None,
        description="Start a new run from the weights and normalization of this exported model (`best.pt`, "
        "`last.pt`); model and tokenizer must match. Optimizer, schedule and data order start fresh. "
        "Ignored when the run directory already holds a training state (that one is resumed).",
    )
    init_parts: list[str] | None = Field(
        None,
        description="With `init_from`: copy only the tensors whose names start with one of these prefixes "
        "(e.g. `[encoder.subsampling, head, norm_]`: front end, output layer and feature normalization), "
        "so that models with other layers or weight sharing can start from the same pieces. Each copied "
        "tensor must have the same shape; the rest keeps its fresh initialization. Null: the whole model.",
    )


class TrainConfig(_Section):
    """A whole training run."""

    model: ModelDims = Field(default_factory=ModelDims, description="Model dimensions and weight sharing.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Output units.")
    data: DataConfig = Field(description="Training and dev data.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimization.")
    chunk: ChunkConfig = Field(default_factory=ChunkConfig, description="Dynamic chunk training.")
    run: RunConfig = Field(description="Run directory and schedule of checkpoints and evaluations.")

    @field_validator("model", mode="before")
    @classmethod
    def _no_vocab(cls, v: Any) -> Any:
        if isinstance(v, dict) and "vocab_size" in v:
            raise ValueError("vocab_size is set by the tokenizer, leave it out")
        return v

    def model_dims(self, vocab_size: int) -> ModelDims:
        """The model's dimensions with the tokenizer's vocabulary size filled in."""
        return dataclasses.replace(self.model, vocab_size=vocab_size)

    def to_json(self) -> str:
        """Canonical JSON of the whole config (stored in training states and checkpoint metadata)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{source}: unknown key '{key}'"
    if first["type"] == "missing":
        return f"{source}: missing key '{key}'"
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{source}: {key}: {msg}"


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the relative paths of a raw config mapping relative to ``base``."""

    def fix(v: Any) -> Any:
        if not isinstance(v, str) or not v:
            return v
        p = Path(v).expanduser()
        return os.path.normpath(p if p.is_absolute() else base / p)

    data = json.loads(json.dumps(data, default=str))  # deep copy of plain YAML data
    d = data.get("data")
    if isinstance(d, dict):
        if isinstance(d.get("train"), list):
            for m in d["train"]:
                if isinstance(m, dict) and "path" in m:
                    m["path"] = fix(m["path"])
        if "dev" in d:
            d["dev"] = fix(d["dev"])
        if isinstance(d.get("held_out"), list):
            d["held_out"] = [fix(v) for v in d["held_out"]]
        aug = d.get("augment")
        if isinstance(aug, dict):
            for k, v in aug.items():
                if k.endswith(("_dir", "_manifest", "_path")):
                    aug[k] = fix(v)
    for section, key in (("tokenizer", "model"), ("run", "output_dir"), ("run", "init_from")):
        s = data.get(section)
        if isinstance(s, dict) and key in s:
            s[key] = fix(s[key])
    return data


def parse_train_config(data: Any, *, source: str = "config", base_dir: Path | None = None) -> TrainConfig:
    """Validate a parsed YAML mapping; relative paths are made relative to ``base_dir`` if given."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    if base_dir is not None:
        data = _resolve_paths(data, base_dir)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_with_parents(p: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of ``p`` laid over the file it ``extends`` (recursively), paths resolved per file."""
    real = p.resolve()
    if real in chain:
        raise ConfigError(f"{p}: 'extends' goes round in a circle")
    data = read_yaml_file(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    data = _resolve_paths(data, real.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{p}: extends: must be the path of another training config")
    return _merge(_read_with_parents(real.parent / Path(parent).expanduser(), (*chain, real)), data)


def load_train_config(path: str | Path) -> TrainConfig:
    """Load and validate a training YAML file.

    A top-level ``extends: OTHER.yaml`` (relative to the file) starts from that file's settings:
    sections merge key by key, lists such as ``data.train`` are replaced whole, and each file's
    relative paths stay relative to its own folder.
    """
    p = Path(path)
    return parse_train_config(_read_with_parents(p), source=str(p))


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if dataclasses.is_dataclass(value):
        return "(see below)"
    return f"`{json.dumps(value, default=str)}`"


def _row(name: str, field: Any) -> str:
    description = (field.description or "").replace("|", "\\|")
    return f"| `{name}` | {_default_text(field)} | {description} |"


def _rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows: list[str] = []
    for key, field in model.model_fields.items():
        name = f"{prefix}{key}"
        ann = field.annotation
        nested = next(
            (a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if nested is ManifestSpec:
            rows += _rows(f"{name}[].", ManifestSpec)
        elif nested is not None:
            rows.append(_row(name, field))
            rows += _rows(f"{name}.", nested)
        else:
            rows.append(_row(name, field))
    return rows


def config_reference_markdown() -> str:
    """The reference table of every training-config key (kept in ``docs/training.md``)."""
    lines = ["| key | default | description |", "|---|---|---|"]
    for f in dataclasses.fields(ModelDims):
        if f.name in ("vocab_size", "sharing"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        lines.append(f"| `model.{f.name}` | `{json.dumps(default)}` | `ModelDims.{f.name}` (docs/model.md) |")
    from ambient.model.dims import SharingConfig

    for f in dataclasses.fields(SharingConfig):
        default = f.default if f.default is not dataclasses.MISSING else None
        lines.append(
            f"| `model.sharing.{f.name}` | `{json.dumps(default)}` | `SharingConfig.{f.name}` (docs/model.md) |"
        )
    lines += [row for row in _rows("", TrainConfig) if not row.startswith("| `model`")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m ambient.train.config --markdown")
    sys.stdout.write(config_reference_markdown())
