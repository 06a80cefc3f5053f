"""Duration-bucketed, weighted, rank-sharded and resumable batch plan for training.

An *epoch* is one pass over the weighted training set: each manifest ``g`` has a repeat factor
``w_g`` (2.0 = every utterance twice per epoch, 0.5 = a random half), so scarce real speech can be
upweighted against plentiful synthetic speech. Utterances fall into a few length buckets (duration
quantiles); within a bucket they are shuffled and packed greedily so that a batch's *padded* audio,
``len(batch) * longest``, stays within ``max_batch_seconds`` (so the total audio does too). The
batches of all buckets are then shuffled together.

Every rank computes the same global plan from ``(seed, epoch)``, trims it to a multiple of the world
size and takes batches ``rank, rank + W, ...``: the ranks see disjoint data and the same number of
batches, so DistributedDataParallel never waits on a rank that ran out. The plan is a pure function
of ``(seed, epoch)``, so a position ``(epoch, batch)`` is all a checkpoint needs to resume exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BucketBatchSampler", "DataPosition", "ItemKey"]


@dataclass(frozen=True)
class ItemKey:
    """One utterance slot in a batch: what the dataset loads and how its augmentation is seeded.

    ``batch`` is the index of the batch in the epoch's *global* plan (before sharding), so the
    augmentation of an item does not depend on the rank count, the worker that loads it or resumes;
    ``local`` is its index among this rank's batches of the epoch (the resume position).
    """

    utt: int
    epoch: int
    batch: int
    local: int
    slot: int


@dataclass(frozen=True)
class DataPosition:
    """Where a rank is in the data stream: the next batch is ``batch`` (rank-local) of ``epoch``.

    ``batch`` may equal the epoch's batch count, which means "start of the next epoch".
    """

    epoch: int = 0
    batch: int = 0


class BucketBatchSampler:
    """Infinite iterator of batches (lists of :class:`ItemKey`) for one rank, starting at a position.

    Use it as a ``DataLoader`` ``batch_sampler``. Iteration starts at :attr:`position` and walks
    through the epochs forever; the trainer decides when to stop.
    """

    def __init__(
        self,
        *,
        durations: Sequence[float],
        groups: Sequence[int],
        weights: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        num_buckets: int = 6,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        """Plan batches over utterances ``i`` of duration ``durations[i]`` from manifest ``groups[i]``.

        Args:
            durations: seconds per utterance.
            groups: manifest index per utterance, into ``weights``.
            weights: repeat factor per manifest per epoch (>= 0).
            max_batch_seconds: bound on ``len(batch) * longest duration in the batch``; an utterance
                longer than this forms a batch of its own.
            max_batch_size: optional bound on utterances per batch.
            num_buckets: number of duration buckets (quantiles of the durations).
            seed: shuffling seed; the plan of epoch ``e`` is a function of ``(seed, e)``.
            rank, world_size: this process's shard of the batches.
            shuffle: ``False`` gives a fixed, sorted plan (evaluation).
        """
        if len(durations) != len(groups):
            raise ValueError(f"{len(durations)} durations but {len(groups)} group indices")
        if any(w < 0 or not math.isfinite(w) for w in weights):
            raise ValueError(f"manifest weights must be finite and >= 0, got {list(weights)}")
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        self._dur = np.asarray(durations, dtype=np.float64)
        self._groups = np.asarray(groups, dtype=np.int64)
        if len(self._groups) and (self._groups.min() < 0 or self._groups.max() >= len(weights)):
            raise ValueError("group index outside the list of manifest weights")
        self._weights = np.asarray(weights, dtype=np.float64)
        self.max_batch_seconds = float(max_batch_seconds)
        self.max_batch_size = max_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        inner = np.linspace(0, 1, num_buckets + 1)[1:-1]
        qs = np.quantile(self._dur, inner) if len(self._dur) else np.zeros(0)
        self._edges = np.unique(np.asarray(qs, dtype=np.float64))  # bucket b: edges[b-1] <= d < edges[b]
        self.position = DataPosition()
        if len(self._dur) and not self.rank_batches(0):
            raise ValueError(
                f"the data gives {len(self.global_batches(0))} batches per epoch, fewer than the {world_size} ranks"
            )

    def _epoch_items(self, rng: np.random.Generator) -> np.ndarray:
        """Utterance indices of one epoch with per-manifest repeat factors applied."""
        parts: list[np.ndarray] = []
        for g, w in enumerate(self._weights):
            members = np.flatnonzero(self._groups == g)
            if w == 0 or len(members) == 0:
                continue
            whole, frac = divmod(float(w), 1.0)
            parts.extend([members] * int(whole))
            extra = round(frac * len(members))
            if extra:
                parts.append(rng.choice(members, size=extra, replace=False) if self.shuffle else members[:extra])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The plan of ``epoch`` for all ranks (utterance indices per batch), before trimming."""
        rng = np.random.default_rng([self.seed, epoch])
        items = self._epoch_items(rng)
        bucket_of = np.searchsorted(self._edges, self._dur[items], side="right")
        batches: list[list[int]] = []
        for b in range(len(self._edges) + 1):
            members = items[bucket_of == b]
            if self.shuffle:
                members = members[rng.permutation(len(members))]
            else:
                members = members[np.argsort(self._dur[members], kind="stable")]
            batches.extend(self._pack(members))
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def _pack(self, members: np.ndarray) -> list[list[int]]:
        """Greedy packing in order: close a batch when the next item would break a bound."""
        out: list[list[int]] = []
        cur: list[int] = []
        longest = 0.0
        for i in members.tolist():
            d = float(self._dur[i])
            new_longest = max(longest, d)
            full = self.max_batch_size is not None and len(cur) >= self.max_batch_size
            if cur and (full or (len(cur) + 1) * new_longest > self.max_batch_seconds):
                out.append(cur)
                cur, new_longest = [], d
            cur.append(i)
            longest = new_longest
        if cur:
            out.append(cur)
        return out

    def rank_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: a disjoint, equally long slice of the global plan."""
        batches = self.global_batches(epoch)
        usable = len(batches) - len(batches) % self.world_size
        return batches[self.rank : usable : self.world_size]

    def batches_per_epoch(self, epoch: int = 0) -> int:
        """Number of batches this rank gets in ``epoch`` (the same on every rank)."""
        return len(self.rank_batches(epoch))

    def set_position(self, position: DataPosition) -> None:
        """Start the next iteration at ``position`` (resuming from a checkpoint)."""
        self.position = position

    def __iter__(self) -> Iterator[list[ItemKey]]:
        epoch, start = self.position.epoch, self.position.batch
        while True:
            batches = self.rank_batches(epoch)
            for local in range(start, len(batches)):
                global_index = self.rank + local * self.world_size
                yield [
                    ItemKey(utt=u, epoch=epoch, batch=global_index, local=local, slot=s)
                    for s, u in enumerate(batches[local])
                ]
            epoch, start = epoch + 1, 0
