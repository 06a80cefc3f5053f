"""Batch planning (buckets, weights, sharding, resume) and example loading (skips, padding, stats)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from ambient.audio.features import compute_fbank
from ambient.model.tokenizer import CharTokenizer
from ambient.train.batching import BucketBatchSampler, DataPosition, ItemKey
from ambient.train.dataset import Example, Skipped, SpeechDataset, collate, ctc_min_frames, feature_stats
from ambient.train.manifest import Utterance

torch.set_num_threads(1)


def _durations(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(d) for d in rng.uniform(0.5, 15.0, size=n)]


def _sampler(durs: list[float], **kw: object) -> BucketBatchSampler:
    args: dict[str, object] = {
        "durations": durs,
        "groups": [0] * len(durs),
        "weights": [1.0],
        "max_batch_seconds": 40.0,
        "seed": 3,
    }
    args.update(kw)
    return BucketBatchSampler(**args)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- batching


@settings(max_examples=40, deadline=None)
@given(
    durs=st.lists(st.floats(0.1, 30.0), min_size=1, max_size=200),
    max_s=st.floats(5.0, 200.0),
    buckets=st.integers(1, 8),
    cap=st.one_of(st.none(), st.integers(1, 16)),
)
def test_batches_respect_padded_seconds_and_cover_the_epoch(
    durs: list[float], max_s: float, buckets: int, cap: int | None
) -> None:
    s = _sampler(durs, max_batch_seconds=max_s, num_buckets=buckets, max_batch_size=cap)
    batches = s.global_batches(0)
    for b in batches:
        longest = max(durs[i] for i in b)
        # only an utterance longer than the bound may exceed it, alone in its batch
        assert len(b) * longest <= max_s or len(b) == 1
        assert cap is None or len(b) <= cap
    assert sorted(itertools.chain.from_iterable(batches)) == list(range(len(durs)))


def test_buckets_group_similar_lengths() -> None:
    durs = _durations(600)
    s = _sampler(durs, max_batch_seconds=60.0, num_buckets=6)
    edges = np.quantile(durs, np.linspace(0, 1, 7)[1:-1])
    for b in s.global_batches(0):  # every batch lies inside one duration sextile
        assert len({int(np.searchsorted(edges, durs[i], side="right")) for i in b}) == 1
    spread = [max(durs[i] for i in b) - min(durs[i] for i in b) for b in s.global_batches(0) if len(b) > 1]
    unbucketed = _sampler(durs, max_batch_seconds=60.0, num_buckets=1)
    assert np.mean(spread) < np.mean(
        [max(durs[i] for i in b) - min(durs[i] for i in b) for b in unbucketed.global_batches(0) if len(b) > 1]
    )


def test_weights_repeat_and_subsample_manifests() -> None:
    durs = _durations(300)
    groups = [0] * 100 + [1] * 100 + [2] * 100
    s = _sampler(durs, groups=groups, weights=[3.0, 0.5, 0.0])
    for epoch in (0, 1):
        seen = Counter(itertools.chain.from_iterable(s.global_batches(epoch)))
        assert all(seen[i] == 3 for i in range(100))
        half = [i for i in range(100, 200) if i in seen]
        assert len(half) == 50 and all(seen[i] == 1 for i in half)
        assert not any(i in seen for i in range(200, 300))
    first = {i for i in range(100, 200) if i in Counter(itertools.chain.from_iterable(s.global_batches(0)))}
    second = {i for i in range(100, 200) if i in Counter(itertools.chain.from_iterable(s.global_batches(1)))}
    assert first != second  # a fresh random half each epoch


def test_plan_is_a_function_of_seed_and_epoch() -> None:
    durs = _durations(200)
    a, b = _sampler(durs), _sampler(durs)
    assert a.global_batches(0) == b.global_batches(0)
    assert a.global_batches(0) != a.global_batches(1)
    assert _sampler(durs, seed=4).global_batches(0) != a.global_batches(0)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_rank_shards_are_disjoint_and_equally_long(world: int) -> None:
    durs = _durations(250)
    shards = [_sampler(durs, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 1):
        per_rank = [s.rank_batches(epoch) for s in shards]
        assert len({len(b) for b in per_rank}) == 1, "every rank must get the same number of batches"
        flat = [tuple(b) for batches in per_rank for b in batches]
        assert len(flat) == len(set(flat))
        items = [i for batches in per_rank for b in batches for i in b]
        assert len(items) == len(set(items)), "an utterance appears on two ranks"
        plan = shards[0].global_batches(epoch)
        assert len(flat) == len(plan) - len(plan) % world
        assert {tuple(b) for b in plan[: len(flat)]} == set(flat)


def test_too_few_batches_for_the_ranks_is_an_error() -> None:
    with pytest.raises(ValueError, match="fewer than the 4 ranks"):
        _sampler([1.0, 1.0], max_batch_seconds=10.0, world_size=4)


def test_iteration_resumes_exactly_at_a_position() -> None:
    durs = _durations(120)
    s = _sampler(durs, rank=1, world_size=2)
    per_epoch = s.batches_per_epoch(0)
    stream = list(itertools.islice(iter(s), 3 * per_epoch))
    assert stream[per_epoch - 1][0].epoch == 0 and stream[per_epoch][0].epoch == 1
    assert all(k.local == i for i, b in enumerate(stream[:per_epoch]) for k in b)
    assert all(k.batch == 1 + 2 * k.local for b in stream for k in b)  # global index of rank 1
    cut = per_epoch + 5
    resumed = _sampler(durs, rank=1, world_size=2)
    resumed.set_position(DataPosition(epoch=1, batch=5))
    assert list(itertools.islice(iter(resumed), len(stream) - cut)) == stream[cut:]
    end_of_epoch = _sampler(durs, rank=1, world_size=2)
    end_of_epoch.set_position(DataPosition(epoch=0, batch=per_epoch))
    assert next(iter(end_of_epoch)) == stream[per_epoch]


# ----------------------------------------------------------------------------- loading


def _write_tone(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")


def _encoder_frames(n: int) -> int:
    # 4x subsampling of two stride-2 3x3 convolutions, as in ambient.model.subsampling
    return max(((n - 3) // 2 + 1 - 3) // 2 + 1, 0)


@pytest.fixture
def corpus(tmp_path: Path) -> list[Utterance]:
    utts = []
    for i in range(4):
        p = tmp_path / f"ok{i}.flac"
        _write_tone(p, 1.0 + 0.5 * i, seed=i)
        utts.append(Utterance(audio=str(p), text="one two", duration=1.0 + 0.5 * i, speaker="s", source="tone"))
    (tmp_path / "garbage.flac").write_bytes(b"not audio at all" * 100)
    utts.append(Utterance(audio=str(tmp_path / "garbage.flac"), text="one", duration=1.0, speaker="s", source="bad"))
    utts.append(Utterance(audio=str(tmp_path / "missing.flac"), text="one", duration=1.0, speaker="s", source="bad"))
    # 0.5 s gives 12 encoder frames at 4x: far too few for 40 characters
    p = tmp_path / "short.flac"
    _write_tone(p, 0.5)
    utts.append(
        Utterance(audio=str(p), text="a much longer transcript than the audio", duration=0.5, speaker="s", source="bad")
    )
    return utts


def _dataset(utts: list[Utterance]) -> SpeechDataset:
    return SpeechDataset(utterances=utts, tokenizer=CharTokenizer(), output_frames=_encoder_frames, seed=0)


def test_ctc_min_frames_counts_blanks_between_repeats() -> None:
    assert ctc_min_frames([]) == 0
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8


def test_examples_are_raw_log_mel_and_token_ids(corpus: list[Utterance]) -> None:
    ds = _dataset(corpus)
    x = ds[ItemKey(utt=1, epoch=0, batch=0, local=0, slot=0)]
    assert isinstance(x, Example)
    import soundfile

    wave, _ = soundfile.read(corpus[1].audio, dtype="float32")
    assert torch.equal(x.feats, compute_fbank(torch.from_numpy(wave)))
    assert x.tokens.tolist() == CharTokenizer().encode("one two")
    assert x.seconds == pytest.approx(1.5)


def test_normalizes_transcripts_again(tmp_path: Path) -> None:
    p = tmp_path / "a.flac"
    _write_tone(p, 1.0)
    ds = _dataset([Utterance(audio=str(p), text="Hello, World 42!", duration=1.0, speaker="s", source="t")])
    assert CharTokenizer().decode(ds.tokens[0]) == "hello world forty two"


def test_bad_files_and_infeasible_targets_are_skipped_and_counted(corpus: list[Utterance]) -> None:
    ds = _dataset(corpus)
    assert [ds.feasible(i) for i in range(len(ds))] == [True] * 6 + [False]
    sampler = BucketBatchSampler(
        durations=[u.duration for u in corpus],
        groups=[0] * len(corpus),
        weights=[1.0],
        max_batch_seconds=100.0,
        num_buckets=1,
        seed=0,
    )
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=1)  # type: ignore[arg-type]
    batch = next(iter(loader))
    assert batch.skipped == {"unreadable": 2, "ctc_infeasible": 1}
    assert sorted(batch.utts) == [0, 1, 2, 3]
    assert batch.size == 4
    assert batch.audio_seconds == pytest.approx(1.0 + 1.5 + 2.0 + 2.5)


def test_collate_pads_and_keeps_lengths(corpus: list[Utterance]) -> None:
    ds = _dataset(corpus)
    keys = [ItemKey(utt=i, epoch=2, batch=7, local=3, slot=s) for s, i in enumerate([0, 3, 4])]
    items = [ds[k] for k in keys]
    assert isinstance(items[2], Skipped) and items[2].reason == "unreadable"
    b = collate(items)
    assert (b.epoch, b.local, b.size) == (2, 3, 2)
    assert b.feats.shape == (2, int(b.feat_lengths.max()), 80)
    assert b.feat_lengths.tolist() == [98, 248]  # 1 + (N - 400) // 160 for 1.0 s and 2.5 s
    assert b.feats[0, 98:].abs().sum() == 0
    assert b.targets.shape == (2, 7) and b.target_lengths.tolist() == [7, 7]
    empty = collate([items[2]])
    assert empty.size == 0 and empty.skipped == {"unreadable": 1}


def test_feature_stats_match_a_direct_computation(corpus: list[Utterance]) -> None:
    mean, std, frames = feature_stats(corpus, max_utterances=100)
    feats = []
    for u in corpus[:4] + corpus[6:]:
        wave, _ = sf.read(u.audio, dtype="float32")
        feats.append(compute_fbank(torch.from_numpy(wave)))
    allf = torch.cat(feats).double()
    assert frames == allf.size(0)
    assert torch.allclose(mean.double(), allf.mean(0), atol=1e-4)
    assert torch.allclose(std.double(), allf.std(0, unbiased=False), atol=1e-3)
