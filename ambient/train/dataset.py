"""Training examples: FLAC -> augmented waveform -> raw log-mel (+ SpecAugment) and token ids.

The dataset is map-style and keyed by :class:`~ambient.train.batching.ItemKey`, so a
``DataLoader`` with ``batch_sampler=BucketBatchSampler(...)`` loads whole planned batches in worker
processes. Augmentation randomness comes from a generator seeded by ``(seed, epoch, batch, slot)``:
an item looks the same whichever worker loads it and after a resume.

Utterances that cannot be used are skipped and counted, never fatal: an unreadable or non-audio
file (``unreadable``), and one whose tokens do not fit into its encoder frames, which CTC cannot
align (``ctc_infeasible``). :func:`collate` pads the rest into a :class:`Batch`.

Shapes: ``B`` utterances, ``T`` feature frames (10 ms), ``F = 80`` mel bins, ``S`` tokens.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import structlog
import torch
from torch.utils.data import Dataset

from ambient.audio.features import N_MELS, SAMPLE_RATE, compute_fbank, num_frames
from ambient.audio.io import read_audio
from ambient.errors import AudioError
from ambient.model.tokenizer import Tokenizer
from ambient.text.normalize import normalize_text
from ambient.train.batching import ItemKey
from ambient.train.manifest import Utterance

if TYPE_CHECKING:
    from ambient.train.augment import Augmenter

__all__ = [
    "Batch",
    "Example",
    "Skipped",
    "SpeechDataset",
    "collate",
    "ctc_min_frames",
    "feature_stats",
]

_log = structlog.get_logger(__name__)

#: Maps a number of feature frames to the number of encoder output frames.
FrameCounter = Callable[[int], int]


def ctc_min_frames(tokens: Sequence[int]) -> int:
    """Fewest output frames a CTC alignment of ``tokens`` needs: one per token plus a blank
    between each pair of equal neighbours."""
    return len(tokens) + sum(1 for a, b in itertools.pairwise(tokens) if a == b)


@dataclass(frozen=True)
class Example:
    """One loaded utterance: ``feats (T, F)`` raw log-mel, ``tokens (S,)`` int64."""

    key: ItemKey
    feats: torch.Tensor
    tokens: torch.Tensor
    seconds: float


@dataclass(frozen=True)
class Skipped:
    """An utterance that could not be used, and why (``unreadable`` or ``ctc_infeasible``)."""

    key: ItemKey
    reason: str


@dataclass
class Batch:
    """A padded batch and where it came from.

    ``feats (B, T, F)`` zero-padded raw log-mel, ``feat_lengths (B,)``, ``targets (B, S)``
    zero-padded token ids, ``target_lengths (B,)``. ``epoch``/``local`` locate the batch in this
    rank's data stream; ``skipped`` counts the utterances of the planned batch that were dropped.
    ``B`` may be 0 when every utterance was skipped.
    """

    feats: torch.Tensor
    feat_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    epoch: int
    local: int
    audio_seconds: float
    utts: list[int]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of utterances ``B``."""
        return int(self.feats.size(0))

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return dataclasses.replace(
            self,
            feats=fn(self.feats),
            feat_lengths=fn(self.feat_lengths),
            targets=fn(self.targets),
            target_lengths=fn(self.target_lengths),
        )

    def to(self, device: torch.device, *, non_blocking: bool = False) -> Batch:
        """The batch with its tensors on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-locked copy (called by ``DataLoader(pin_memory=True)`` for GPU training)."""
        return self._map(torch.Tensor.pin_memory)


class SpeechDataset(Dataset[Example | Skipped]):
    """Utterances with their token ids; ``dataset[ItemKey]`` loads, augments and featurizes one."""

    def __init__(
        self,
        *,
        utterances: Sequence[Utterance],
        tokenizer: Tokenizer,
        output_frames: FrameCounter,
        augmenter: Augmenter | None = None,
        seed: int = 0,
    ) -> None:
        """Tokenize every transcript once (normalized again, defensively).

        Args:
            utterances: the data, typically from ``read_manifest``.
            tokenizer: the model's tokenizer.
            output_frames: feature frames -> encoder frames (the model's subsampling).
            augmenter: on-the-fly augmentation, or ``None`` (dev data, tests).
            seed: base seed of the per-item augmentation generators.
        """
        self.utterances = list(utterances)
        self.tokens = [tokenizer.encode(normalize_text(u.text)) for u in self.utterances]
        self.output_frames = output_frames
        self.augmenter = augmenter
        self.seed = seed

    def __len__(self) -> int:
        return len(self.utterances)

    def subset(self, indices: Sequence[int]) -> SpeechDataset:
        """A dataset of the utterances at ``indices`` (tokens reused, same augmenter and seed)."""
        out = copy.copy(self)
        out.utterances = [self.utterances[i] for i in indices]
        out.tokens = [self.tokens[i] for i in indices]
        return out

    def feasible(self, index: int) -> bool:
        """Whether utterance ``index``, at its manifest duration, has enough encoder frames for its
        tokens (augmentation can shorten it: :meth:`__getitem__` checks again)."""
        n = num_frames(round(self.utterances[index].duration * SAMPLE_RATE))
        return self.output_frames(n) >= ctc_min_frames(self.tokens[index])

    def __getitem__(self, key: ItemKey) -> Example | Skipped:  # type: ignore[override]
        utt = self.utterances[key.utt]
        try:
            wave = read_audio(utt.audio)
        except AudioError as e:
            _log.warning("utterance skipped", reason="unreadable", error=str(e))
            return Skipped(key=key, reason="unreadable")
        warp = 1.0
        rng = np.random.default_rng([self.seed, key.epoch, key.batch, key.slot])
        if self.augmenter is not None:
            wave = self.augmenter.wave(wave, rng)
            warp = self.augmenter.warp_factor(rng)
        feats = compute_fbank(torch.from_numpy(wave), warp=warp)  # (T, F)
        if self.augmenter is not None:
            feats = self.augmenter.spec(feats, rng)
        tokens = self.tokens[key.utt]
        if self.output_frames(feats.size(0)) < ctc_min_frames(tokens):
            return Skipped(key=key, reason="ctc_infeasible")
        return Example(
            key=key,
            feats=feats,
            tokens=torch.tensor(tokens, dtype=torch.int64),
            seconds=len(wave) / SAMPLE_RATE,
        )


def collate(items: Sequence[Example | Skipped]) -> Batch:
    """Pad the examples of one planned batch into a :class:`Batch`, counting the skipped ones."""
    if not items:
        raise ValueError("collate needs at least one item (a planned batch is never empty)")
    examples = [x for x in items if isinstance(x, Example)]
    skipped = Counter(x.reason for x in items if isinstance(x, Skipped))
    b = len(examples)
    t = max((x.feats.size(0) for x in examples), default=0)
    s = max((x.tokens.numel() for x in examples), default=0)
    feats = torch.zeros(b, t, N_MELS)
    targets = torch.zeros(b, s, dtype=torch.int64)
    for i, x in enumerate(examples):
        feats[i, : x.feats.size(0)] = x.feats
        targets[i, : x.tokens.numel()] = x.tokens
    return Batch(
        feats=feats,
        feat_lengths=torch.tensor([x.feats.size(0) for x in examples], dtype=torch.int64),
        targets=targets,
        target_lengths=torch.tensor([x.tokens.numel() for x in examples], dtype=torch.int64),
        epoch=items[0].key.epoch,
        local=items[0].key.local,
        audio_seconds=sum(x.seconds for x in examples),
        utts=[x.key.utt for x in examples],
        skipped=dict(skipped),
    )


def feature_stats(
    utterances: Sequence[Utterance], *, max_utterances: int = 500, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Global log-mel ``mean (F,)`` and ``std (F,)`` over a random sample of utterances.

    Unreadable files are skipped. Returns ``(mean, std, frames counted)``; raises
    :class:`AudioError` if no sampled utterance could be read.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    n = min(max_utterances, len(utterances))
    picks = rng.choice(len(utterances), size=n, replace=False) if n else np.zeros(0, dtype=np.int64)
    total = torch.zeros(N_MELS, dtype=torch.float64)
    total_sq = torch.zeros(N_MELS, dtype=torch.float64)
    frames = 0
    for i in sorted(picks.tolist()):
        try:
            wave = read_audio(utterances[i].audio)
        except AudioError as e:
            _log.warning("utterance skipped for statistics", error=str(e))
            continue
        feats = compute_fbank(torch.from_numpy(wave)).double()  # (T, F)
        total += feats.sum(0)
        total_sq += feats.square().sum(0)
        frames += feats.size(0)
    if frames == 0:
        raise AudioError("no readable training audio to compute feature statistics from")
    mean = total / frames
    std = (total_sq / frames - mean.square()).clamp(min=1e-8).sqrt()
    return mean.float(), std.float(), frames
