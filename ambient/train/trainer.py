"""The training loop: CTC with dynamic chunk masks, AdamW, checkpoints, dev WER, DDP.

One process per rank (``torchrun --nproc_per_node=N -m ambient.train``, or one plain process). Each
step every rank loads its shard of a planned batch, runs forward and backward under a chunk mask
drawn from the step's seed (full context with probability ``full_context_prob``, else a random
chunk size and left context, as in WeNet), DDP averages the gradients, and AdamW steps after
global-norm clipping. A step whose gradient norm is not finite is skipped on all ranks alike.

Before each step the ranks exchange one small tensor: whether some rank's batch came out empty
(every file unreadable — then nobody steps, so DDP stays in lockstep), the batch's audio seconds and
skip counts (so every rank knows the global totals), and rank 0's wall-clock decisions (checkpoint
now, time is up) plus any rank's stop request (SIGTERM), so that collective operations are always
entered by all ranks together.

Exact resume: the batch plan is a pure function of ``(seed, epoch)``, augmentation is seeded per
item, the chunk mask per step, the learning rate is a function of the step, and a training state
holds the model, the optimizer, the data position and every rank's torch RNG (dropout). So a run
killed at any moment and resumed from its last training state reproduces the uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import structlog
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ambient.config import LoggingConfig
from ambient.errors import ConfigError
from ambient.logs import configure_logging
from ambient.model.asr import AsrModel
from ambient.model.checkpoint import load_model, save_model
from ambient.model.info import stored_params, virtual_params
from ambient.model.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer
from ambient.stream.recognizer import StreamingRecognizer
from ambient.text.normalize import normalize_text
from ambient.train.augment import Augmenter
from ambient.train.batching import BucketBatchSampler, DataPosition, ItemKey
from ambient.train.checkpointing import load_latest_training_state, save_training_state
from ambient.train.config import ChunkConfig, OptimConfig, TrainConfig
from ambient.train.dataset import Batch, SpeechDataset, collate, feature_stats
from ambient.train.evaluate import ErrorCounts, evaluate_batches
from ambient.train.manifest import Utterance, read_manifest
from ambient.train.metrics import MetricsLog, plot_metrics
from ambient.train.precision import resolve_precision

__all__ = [
    "DistEnv",
    "LrSchedule",
    "TrainResult",
    "Trainer",
    "build_tokenizer",
    "init_distributed",
    "run_training",
    "sample_chunking",
]

_log = structlog.get_logger(__name__)


# --------------------------------------------------------------------------- distributed setup


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: ``rank`` of ``world_size``, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics, plots and exported models."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``...), or return a single-process environment.

    NCCL on GPUs, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("run.device is 'cuda' but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class LrSchedule:
    """Learning rate as a pure function of the step (so resuming needs no scheduler state)."""

    cfg: OptimConfig

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        c = self.cfg
        s = step + 1
        if c.warmup_steps and s <= c.warmup_steps:
            return c.lr * s / c.warmup_steps
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "noam":
            return c.lr * math.sqrt(max(c.warmup_steps, 1) / s)
        span = max(c.max_steps - c.warmup_steps, 1)
        progress = min(max(s - c.warmup_steps, 0) / span, 1.0)
        floor = c.min_lr_ratio * c.lr
        return floor + (c.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def sample_chunking(cfg: ChunkConfig, rng: random.Random) -> tuple[int, int]:
    """``(chunk_frames, left_chunks)`` for one batch: ``(0, -1)`` is full context; otherwise a chunk
    uniform in ``[1, max_chunk_frames]`` encoder frames and a left context uniform in
    ``[0, max_left_chunks]`` chunks, or unlimited (-1)."""
    if rng.random() < cfg.full_context_prob:
        return 0, -1
    chunk = rng.randint(1, cfg.max_chunk_frames)
    left = -1 if rng.random() < cfg.unlimited_left_prob else rng.randint(0, cfg.max_left_chunks)
    return chunk, left


def build_tokenizer(cfg: TrainConfig) -> Tokenizer:
    """The tokenizer named by the config."""
    if cfg.tokenizer.type == "char":
        return CharTokenizer()
    assert cfg.tokenizer.model is not None  # checked by the config
    try:
        proto = Path(cfg.tokenizer.model).read_bytes()
    except OSError as e:
        raise ConfigError(f"tokenizer.model: cannot read {cfg.tokenizer.model}: {e.strerror}") from None
    return SentencePieceTokenizer(proto)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    step: int
    audio_hours: float
    train_hours: float
    stopped_by: str
    dev_wer_full: float | None
    dev_wer_stream: float | None
    best_wer: float | None
    skipped: dict[str, int]


@dataclass
class _Progress:
    """Counters carried in the training state."""

    step: int = 0
    position: DataPosition = field(default_factory=DataPosition)
    audio_seconds: float = 0.0
    train_seconds: float = 0.0
    best_wer: float | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    nonfinite_steps: int = 0

    def to_state(self, world_size: int) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.position.epoch,
            "global_batch": self.position.batch * world_size,
            "audio_seconds": self.audio_seconds,
            "train_seconds": self.train_seconds,
            "best_wer": self.best_wer,
            "skipped": dict(self.skipped),
            "nonfinite_steps": self.nonfinite_steps,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any], world_size: int) -> _Progress:
        # The plan is sharded round-robin, so batches consumed globally / ranks is the local index
        # whatever world size the state was written with.
        return cls(
            step=int(s["step"]),
            position=DataPosition(epoch=int(s["epoch"]), batch=int(s["global_batch"]) // world_size),
            audio_seconds=float(s["audio_seconds"]),
            train_seconds=float(s["train_seconds"]),
            best_wer=None if s["best_wer"] is None else float(s["best_wer"]),
            skipped=Counter({str(k): int(v) for k, v in s["skipped"].items()}),
            nonfinite_steps=int(s["nonfinite_steps"]),
        )


_SKIP_REASONS = ("unreadable", "ctc_infeasible")


def _empty_window() -> dict[str, float]:
    """Sums over the steps since the last metrics record (kept in training states, so that the
    records of a resumed run equal those of an uninterrupted one)."""
    return {"loss": 0.0, "n": 0.0, "audio": 0.0, "grad": 0.0}


# --------------------------------------------------------------------------- the trainer


def _copies_normalization(parts: list[str] | None) -> bool:
    """Whether ``run.init_from`` with these ``run.init_parts`` brings the feature normalization
    (then the training data's statistics need not be computed)."""
    return parts is None or all(any(k.startswith(p) for p in parts) for k in ("norm_mean", "norm_std"))


class Trainer:
    """One rank of a training run. Build it, then call :meth:`run`."""

    def __init__(self, *, cfg: TrainConfig, env: DistEnv | None = None, require_resume: bool = False) -> None:
        """Prepare model, data and optimizer, resuming from the run directory's newest training state.

        Args:
            cfg: the run's configuration.
            env: distributed environment (default: one CPU process).
            require_resume: fail with :class:`ConfigError` if the run directory holds no state.
        """
        self.cfg = cfg
        self.env = env or DistEnv()
        self.run_dir = Path(cfg.run.output_dir)
        self.precision, warning = resolve_precision(cfg.optim.precision, self.env.device.type)
        if warning is not None and self.env.is_main:
            _log.warning(warning)
        torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)  # the same initial weights on every rank
        self.tokenizer = build_tokenizer(cfg)
        self.model = AsrModel(
            dims=cfg.model_dims(self.tokenizer.vocab_size),
            tokenizer=self.tokenizer,
            meta={"name": cfg.run.name, "left_context_s": cfg.chunk.left_context_s},
        ).to(self.env.device)
        torch.manual_seed(cfg.run.seed + 1 + self.env.rank)  # but different dropout masks
        self.schedule = LrSchedule(cfg.optim)
        self.optimizer = self._build_optimizer()
        self.progress = _Progress()
        self._window = _empty_window()
        self._load_data()
        resumed = self._maybe_resume(require_resume)
        if not resumed:
            if cfg.run.init_from is None or not _copies_normalization(cfg.run.init_parts):
                self._init_normalization()
            if cfg.run.init_from is not None:
                self._init_from(cfg.run.init_from, cfg.run.init_parts)
        self.resumed_from = resumed
        self.ddp: torch.nn.Module = (
            DistributedDataParallel(
                self.model, device_ids=[self.env.local_rank] if self.env.device.type == "cuda" else None
            )
            if self.env.distributed
            else self.model
        )  # DDP broadcasts rank 0's parameters and buffers (normalization included) here
        self.sampler.set_position(self.progress.position)
        self._stop_requested = False
        self._dev_batches: list[Batch] | None = None
        self._saved_step = self.progress.step if resumed else -1

    # ----------------------------------------------------------------------- setup helpers

    def _build_optimizer(self) -> torch.optim.AdamW:
        c = self.cfg.optim
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.lr,
            betas=c.betas,
            eps=c.eps,
        )

    def _output_frames(self, n: int) -> int:
        return int(self.model.output_lengths(torch.tensor([n]))[0])

    def _load_data(self) -> None:
        d = self.cfg.data
        utts: list[Utterance] = []
        groups: list[int] = []
        dropped: Counter[str] = Counter()
        held = {(u.source, u.speaker): path for path in d.held_out for u in read_manifest(path)}
        for g, spec in enumerate(d.train):
            for u in read_manifest(spec.path):
                if spec.sources is not None and u.source not in spec.sources:
                    continue
                if (u.source, u.speaker) in held:
                    raise ConfigError(
                        f"data.train: {spec.path} has speaker {u.speaker!r} of {u.source!r}, "
                        f"held out by {held[(u.source, u.speaker)]} ({u.audio})"
                    )
                if not d.min_duration_s <= u.duration <= d.max_duration_s:
                    dropped["duration"] += 1
                    continue
                utts.append(u)
                groups.append(g)
        augmenter = Augmenter(d.augment, seed=self.cfg.run.seed) if d.augment is not None else None
        everything = SpeechDataset(
            utterances=utts,
            tokenizer=self.tokenizer,
            output_frames=self._output_frames,
            augmenter=augmenter,
            seed=self.cfg.run.seed,
        )
        keep = [i for i in range(len(everything)) if everything.feasible(i)]
        dropped["ctc_infeasible"] += len(everything) - len(keep)
        if not keep:
            raise ConfigError("data.train: no usable training utterances (check durations and transcripts)")
        self.train_set = everything.subset(keep)
        kept_groups = [groups[i] for i in keep]
        self.sampler = BucketBatchSampler(
            durations=[u.duration for u in self.train_set.utterances],
            groups=kept_groups,
            weights=[m.weight for m in d.train],
            max_batch_seconds=d.max_batch_seconds,
            max_batch_size=d.max_batch_size,
            num_buckets=d.num_buckets,
            seed=self.cfg.run.seed,
            rank=self.env.rank,
            world_size=self.env.world_size,
        )
        weights = [d.train[g].weight for g in kept_groups]
        self.hours_per_epoch = (
            sum(u.duration * w for u, w in zip(self.train_set.utterances, weights, strict=True)) / 3600
        )
        if self.env.is_main:
            _log.info(
                "training data",
                utterances=len(self.train_set),
                hours_per_epoch=round(self.hours_per_epoch, 2),
                batches_per_epoch_per_rank=self.sampler.batches_per_epoch(0),
                dropped=dict(dropped),
            )
        self.dev_set: SpeechDataset | None = None
        if d.dev is not None:
            dev = read_manifest(d.dev)
            if d.dev_max_utterances is not None and len(dev) > d.dev_max_utterances:
                rng = np.random.default_rng([self.cfg.run.seed, 0xDE7])
                dev = [dev[i] for i in sorted(rng.choice(len(dev), d.dev_max_utterances, replace=False).tolist())]
            self.dev_set = SpeechDataset(
                utterances=dev[self.env.rank :: self.env.world_size],
                tokenizer=self.tokenizer,
                output_frames=self._output_frames,
            )

    def _init_normalization(self) -> None:
        if not self.env.is_main:
            return  # rank 0's statistics reach the other ranks when DDP broadcasts the buffers
        mean, std, frames = feature_stats(
            self.train_set.utterances, max_utterances=self.cfg.data.norm_utterances, seed=self.cfg.run.seed
        )
        self.model.set_normalization(mean.to(self.env.device), std.to(self.env.device))
        _log.info(
            "feature statistics", frames=frames, mean=round(float(mean.mean()), 3), std=round(float(std.mean()), 3)
        )

    def _init_from(self, path: Path, parts: list[str] | None = None) -> None:
        """Copy weights and normalization from an exported model of the same dims and tokenizer.

        With ``parts``, copy only the tensors whose names start with one of those prefixes; the
        starting model may then differ in layers and sharing, but each copied tensor must match.
        """
        start = load_model(path)
        if start.tokenizer.to_dict() != self.tokenizer.to_dict():
            raise ConfigError(f"run.init_from: {path} has a different tokenizer than this config")
        if parts is None:
            if start.dims != self.model.dims:
                raise ConfigError(f"run.init_from: {path} has different model dims than this config")
            self.model.load_state_dict(start.state_dict(), strict=True)
            _log.info("initialized from model", path=str(path))
            return
        mine = self.model.state_dict()
        theirs = {k: v for k, v in start.state_dict().items() if any(k.startswith(p) for p in parts)}
        for prefix in parts:
            if not any(k.startswith(prefix) for k in theirs):
                raise ConfigError(f"run.init_parts: {path} has no tensor named {prefix}*")
        for key, value in theirs.items():
            if key not in mine or mine[key].shape != value.shape:
                raise ConfigError(f"run.init_parts: {key} of {path} does not fit this model")
        self.model.load_state_dict(theirs, strict=False)
        _log.info("initialized parts from model", path=str(path), parts=parts, tensors=len(theirs))

    def _maybe_resume(self, required: bool) -> Path | None:
        found = load_latest_training_state(self.run_dir)
        if found is None:
            if required:
                raise ConfigError(f"--resume: no training state in {self.run_dir}")
            return None
        path, state = found
        saved = json.loads(state["config"])
        for section in ("model", "tokenizer"):
            if saved.get(section) != json.loads(self.cfg.to_json())[section]:
                raise ConfigError(
                    f"{self.run_dir} holds a run with a different '{section}' section; "
                    "use a new run.output_dir or restore the original settings"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = _Progress.from_state(state["progress"], self.env.world_size)
        ranks: list[dict[str, Any]] = state["ranks"]
        if len(ranks) == self.env.world_size:
            mine = ranks[self.env.rank]
            torch.set_rng_state(mine["rng"])
            if self.env.device.type == "cuda" and mine["cuda_rng"] is not None:
                torch.cuda.set_rng_state(mine["cuda_rng"], self.env.device)
            # the partial window's sums continue; its throughput restarts with this session
            self._window = {**{k: float(v) for k, v in mine["window"].items()}, "audio": 0.0}
        else:
            torch.manual_seed(self.cfg.run.seed + self.progress.step * 1000 + self.env.rank)
            if self.env.is_main:
                _log.warning("world size changed since the checkpoint: dropout randomness reseeded")
        if self.env.is_main:
            _log.info("resumed", path=str(path), step=self.progress.step, epoch=self.progress.position.epoch)
        return path

    # ----------------------------------------------------------------------- collective helpers

    def _all_sum(self, values: list[float]) -> list[float]:
        if not self.env.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.env.device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def _gather_rank_states(self) -> list[dict[str, Any]]:
        """Every rank's RNG states and partial metrics window, gathered on all ranks."""
        mine = {
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.env.device) if self.env.device.type == "cuda" else None,
            "window": dict(self._window),
        }
        if not self.env.distributed:
            return [mine]
        gathered: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(gathered, mine)
        return gathered

    # ----------------------------------------------------------------------- checkpoints and exports

    def save_state(self) -> Path | None:
        """Write a training state (all ranks must call this together; rank 0 writes)."""
        if self._saved_step == self.progress.step:
            return None
        self._saved_step = self.progress.step
        ranks = self._gather_rank_states()
        if not self.env.is_main:
            return None
        state = {
            "step": self.progress.step,
            "config": self.cfg.to_json(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": self.progress.to_state(self.env.world_size),
            "ranks": ranks,
        }
        path = save_training_state(self.run_dir, state, step=self.progress.step, keep=self.cfg.run.keep_checkpoints)
        _log.info("training state saved", path=str(path), step=self.progress.step)
        return path

    def _meta(self, wers: dict[str, float] | None) -> dict[str, Any]:
        c = self.cfg
        return {
            "name": c.run.name,
            "left_context_s": c.chunk.left_context_s,
            "training": {
                "steps": self.progress.step,
                "audio_hours_seen": round(self.progress.audio_seconds / 3600, 3),
                "train_hours": round(self.progress.train_seconds / 3600, 3),
                "ranks": self.env.world_size,
                "data": [{"manifest": str(m.path), "weight": m.weight} for m in c.data.train],
                "dev": None if c.data.dev is None else str(c.data.dev),
                "dev_wer_full": None if wers is None else round(wers["full"], 5),
                "dev_wer_stream": None if wers is None else round(wers["stream"], 5),
                "dev_chunk_ms": c.run.dev_chunk_ms,
                "sharing": c.model.sharing.describe(),
                "stored_params": stored_params(self.model),
                "virtual_params": virtual_params(self.model),
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": json.loads(c.to_json()),
            },
        }

    def _export(self, wers: dict[str, float] | None) -> None:
        """Rank 0: write ``last.pt`` and, if the streaming dev WER improved, ``best.pt``."""
        meta = self._meta(wers)
        save_model(self.model, self.run_dir / "last.pt", meta=meta)
        if wers is not None and (self.progress.best_wer is None or wers["stream"] < self.progress.best_wer):
            self.progress.best_wer = wers["stream"]
            save_model(self.model, self.run_dir / "best.pt", meta=meta)
            _log.info("new best model", step=self.progress.step, dev_wer_stream=round(wers["stream"], 4))

    # ----------------------------------------------------------------------- evaluation

    def dev_wer(self) -> dict[str, float] | None:
        """Full-context and streaming dev WER over all ranks' shards (all ranks call it together)."""
        if self.dev_set is None:
            return None
        ds = self.dev_set
        if self._dev_batches is None:  # loaded once, kept in memory
            plan = BucketBatchSampler(
                durations=[u.duration for u in ds.utterances],
                groups=[0] * len(ds),
                weights=[1.0],
                max_batch_seconds=self.cfg.data.max_batch_seconds,
                shuffle=False,
            )
            self._dev_batches = [
                collate([ds[ItemKey(utt=u, epoch=0, batch=b, local=b, slot=s)] for s, u in enumerate(utts)]).to(
                    self.env.device
                )
                for b, utts in enumerate(plan.rank_batches(0))
            ]
        rec = StreamingRecognizer(self.model, chunk_ms=self.cfg.run.dev_chunk_ms)
        refs = [normalize_text(u.text) for u in ds.utterances]
        self.model.eval()
        try:
            counts = evaluate_batches(
                self.model,
                self._dev_batches,
                refs,
                settings={"full": (0, -1), "stream": (rec.chunk_frames, rec.left_chunks)},
            )
        finally:
            self.model.train()
        full = ErrorCounts.from_list([round(v) for v in self._all_sum([float(x) for x in counts["full"].as_list()])])
        stream = ErrorCounts.from_list(
            [round(v) for v in self._all_sum([float(x) for x in counts["stream"].as_list()])]
        )
        if full.utterances == 0:
            if self.env.is_main:
                _log.warning("no dev utterance could be read: dev WER skipped", dev=str(self.cfg.data.dev))
            return None
        return {"full": full.wer, "stream": stream.wer, "utterances": float(full.utterances)}

    # ----------------------------------------------------------------------- the loop

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Ask the loop to save a training state and stop after the current step (signal-safe)."""
        self._stop_requested = True

    def _loader(self) -> DataLoader[Any]:
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.train_set,  # type: ignore[arg-type]
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.env.device.type == "cuda",
            prefetch_factor=2 if workers else None,
            worker_init_fn=_worker_init if workers else None,
            # an own generator: creating the iterator must not draw from the global torch RNG,
            # whose state (dropout) a resumed run restores exactly
            generator=torch.Generator().manual_seed(self.cfg.run.seed),
        )

    def _autocast(self) -> torch.autocast:
        enabled = self.precision == "bf16"
        return torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=enabled)

    def run(self) -> TrainResult:
        """Train until ``max_steps``, ``max_hours`` or a stop request; returns the outcome."""
        c = self.cfg
        p = self.progress
        metrics = (
            MetricsLog(self.run_dir / "metrics.jsonl", resume_step=p.step if self.resumed_from else None)
            if self.env.is_main
            else None
        )
        bar = _progress_bar(c.optim.max_steps, p.step) if self.env.is_main and sys.stderr.isatty() else None
        session_start = time.monotonic()
        base_train_s = p.train_seconds
        last_save = time.monotonic()
        window_start = time.monotonic()
        max_s = None if c.optim.max_hours is None else c.optim.max_hours * 3600
        stopped_by = "max_steps"
        wers: dict[str, float] | None = None
        self.model.train()
        loader_iter = iter(self._loader())
        if self.env.is_main:
            _log.info(
                "training",
                step=p.step,
                max_steps=c.optim.max_steps,
                ranks=self.env.world_size,
                device=str(self.env.device),
                precision=self.precision,
                stored_params=stored_params(self.model),
                virtual_params=virtual_params(self.model),
            )
        try:
            while p.step < c.optim.max_steps:
                batch: Batch = next(loader_iter)
                p.train_seconds = base_train_s + time.monotonic() - session_start
                save_due = c.run.checkpoint_every_minutes is not None and (
                    time.monotonic() - last_save >= c.run.checkpoint_every_minutes * 60
                )
                time_up = max_s is not None and p.train_seconds >= max_s
                sync = self._all_sum(
                    [
                        float(batch.size == 0),
                        float(self.env.is_main and save_due),
                        float(self.env.is_main and time_up),
                        float(self._stop_requested),
                        batch.audio_seconds,
                        *(float(batch.skipped.get(r, 0)) for r in _SKIP_REASONS),
                    ]
                )
                any_empty, save_now, out_of_time, stop, audio_s = sync[:5]
                if out_of_time or stop:
                    stopped_by = "max_hours" if out_of_time else "signal"
                    break  # this batch stays unconsumed: the position still points at it
                p.position = DataPosition(epoch=batch.epoch, batch=batch.local + 1)
                for r, n in zip(_SKIP_REASONS, sync[5:], strict=True):
                    if n:
                        p.skipped[r] += int(n)
                if any_empty:
                    continue  # every rank skips this step together
                loss, grad_norm = self._step(batch)
                p.audio_seconds += audio_s
                p.step += 1
                w = self._window
                w["loss"] += loss
                w["n"] += 1
                w["audio"] += audio_s
                w["grad"] += grad_norm if math.isfinite(grad_norm) else 0.0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.schedule.lr_at(p.step - 1):.2e}", refresh=False)
                if p.step % c.run.log_every_steps == 0:
                    self._log_window(time.monotonic() - window_start, metrics, bar is None)
                    self._window = _empty_window()
                    window_start = time.monotonic()
                if p.step % c.run.dev_every_steps == 0:
                    wers = self._evaluate_and_export(metrics)
                step_due = c.run.checkpoint_every_steps is not None and p.step % c.run.checkpoint_every_steps == 0
                if save_now or step_due:
                    p.train_seconds = base_train_s + time.monotonic() - session_start
                    self.save_state()
                    last_save = time.monotonic()
        finally:
            if bar is not None:
                bar.close()
        p.train_seconds = base_train_s + time.monotonic() - session_start
        # a stop request wants the process gone soon: save the state, skip the final evaluation
        if stopped_by != "signal" and (p.step % c.run.dev_every_steps != 0 or wers is None):
            wers = self._evaluate_and_export(metrics)
        self.save_state()
        if metrics is not None:
            metrics.close()
            plot_metrics(metrics.path, self.run_dir)
        # every rank reports, so a desynchronized rank (different weights) shows in the logs
        _log.info(
            "training stopped",
            by=stopped_by,
            step=p.step,
            epoch=p.position.epoch,
            batch=p.position.batch,
            audio_hours=round(p.audio_seconds / 3600, 3),
            skipped=dict(p.skipped),
            weights_sha256=_weights_digest(self.model),
        )
        return TrainResult(
            run_dir=self.run_dir,
            step=p.step,
            audio_hours=p.audio_seconds / 3600,
            train_hours=p.train_seconds / 3600,
            stopped_by=stopped_by,
            dev_wer_full=None if wers is None else wers["full"],
            dev_wer_stream=None if wers is None else wers["stream"],
            best_wer=p.best_wer,
            skipped=dict(p.skipped),
        )

    def _step(self, batch: Batch) -> tuple[float, float]:
        """One optimizer step on ``batch``; returns (loss, gradient norm before clipping)."""
        p = self.progress
        lr = self.schedule.lr_at(p.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        chunk_frames, left_chunks = sample_chunking(self.cfg.chunk, random.Random(f"{self.cfg.run.seed}:{p.step}"))
        b = batch.to(self.env.device, non_blocking=True)
        with self._autocast():
            log_probs, out_lengths = self.ddp(
                b.feats, b.feat_lengths, chunk_frames=chunk_frames, left_chunks=left_chunks
            )
        loss = self.model.ctc_loss(log_probs, out_lengths, b.targets, b.target_lengths)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            p.nonfinite_steps += 1
            if self.env.is_main:
                _log.warning("non-finite gradient: step skipped", step=p.step, skipped_total=p.nonfinite_steps)
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), grad_norm

    def _log_window(self, seconds: float, metrics: MetricsLog | None, log_line: bool) -> None:
        """Write the metrics of the steps since the last record (all ranks call it together)."""
        window = self._window
        loss_sum, n = self._all_sum([window["loss"], window["n"]])
        p = self.progress
        if metrics is None or n == 0:
            return
        rec: dict[str, Any] = {
            "kind": "train",
            "step": p.step,
            "epoch": p.position.epoch,
            "loss": loss_sum / n,
            "lr": self.schedule.lr_at(p.step - 1),
            "grad_norm": window["grad"] / max(window["n"], 1),
            "audio_hours": p.audio_seconds / 3600,
            "audio_s_per_s": window["audio"] / max(seconds, 1e-9),
            "train_hours": p.train_seconds / 3600,
            "skipped": sum(p.skipped.values()),
        }
        metrics.write(rec)
        if log_line:
            remaining = (self.cfg.optim.max_steps - p.step) * seconds / max(window["n"], 1)
            _log.info(
                "step",
                step=p.step,
                loss=round(rec["loss"], 4),
                lr=f"{rec['lr']:.2e}",
                grad_norm=round(rec["grad_norm"], 3),
                audio_h=round(rec["audio_hours"], 3),
                x_realtime=round(rec["audio_s_per_s"], 1),
                eta_min=round(remaining / 60, 1),
            )

    def _evaluate_and_export(self, metrics: MetricsLog | None) -> dict[str, float] | None:
        wers = self.dev_wer()
        if not self.env.is_main:
            return wers
        if wers is not None and metrics is not None:
            metrics.write(
                {
                    "kind": "dev",
                    "step": self.progress.step,
                    "wer_full": wers["full"],
                    "wer_stream": wers["stream"],
                    "utterances": int(wers["utterances"]),
                    "chunk_ms": self.cfg.run.dev_chunk_ms,
                }
            )
            _log.info(
                "dev", step=self.progress.step, wer_full=round(wers["full"], 4), wer_stream=round(wers["stream"], 4)
            )
        self._export(wers)
        if metrics is not None:
            plot_metrics(metrics.path, self.run_dir)
        return wers


def _weights_digest(model: torch.nn.Module) -> str:
    """Short SHA-256 of all parameters (identical on every rank of a healthy DDP run)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _worker_init(worker_id: int) -> None:
    """DataLoader workers: one torch thread each (the trainer owns the cores)."""
    torch.set_num_threads(1)


def _progress_bar(total: int, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.05)


def run_training(cfg: TrainConfig, *, require_resume: bool = False) -> TrainResult:
    """Train one rank of a run (the whole run without torchrun); SIGTERM/SIGINT save and stop."""
    env = init_distributed(cfg.run.device)
    configure_logging(LoggingConfig())  # JSON lines off a terminal, readable lines on one
    if env.distributed:
        structlog.contextvars.bind_contextvars(rank=env.rank)
    try:
        trainer = Trainer(cfg=cfg, env=env, require_resume=require_resume)
        previous = {s: signal.signal(s, trainer.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return trainer.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
