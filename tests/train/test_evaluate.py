"""WER counting, batched dev decoding versus the streaming recognizer, and ``ambient eval``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ambient.model.testing import build_tiny_model, write_tiny_checkpoint
from ambient.stream.recognizer import StreamingRecognizer
from ambient.train.batching import ItemKey
from ambient.train.dataset import SpeechDataset, collate
from ambient.train.evaluate import ErrorCounts, decode_batch, evaluate_batches, evaluate_streaming
from ambient.train.manifest import Utterance, write_manifest

torch.set_num_threads(1)


def test_error_counts() -> None:
    c = ErrorCounts.of(["a b c d", "x y"], ["a c d e", "x y"])
    assert (c.substitutions, c.deletions, c.insertions, c.ref_words, c.utterances) == (0, 1, 1, 6, 2)
    assert c.wer == pytest.approx(2 / 6)
    assert ErrorCounts.of(["one two"], ["one three four"]).to_dict()["errors"] == 2
    total = c + ErrorCounts.of(["p q r"], ["p q r"])
    assert (total.ref_words, total.utterances) == (9, 3) and total.wer == pytest.approx(2 / 9)
    assert ErrorCounts.from_list(total.as_list()) == total
    assert ErrorCounts.of([""], [""]).wer == 0.0
    assert ErrorCounts.of([""], ["noise"]).wer == 1.0  # insertions against silence count as errors
    assert ErrorCounts.of([], []).utterances == 0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        ErrorCounts.of(["a", "b"], ["a"])


def _noise_files(folder: Path, n: int) -> list[Utterance]:
    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        seconds = 0.7 + 0.45 * i
        path = folder / f"u{i}.flac"
        sf.write(path, (0.2 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        utts.append(
            Utterance(
                audio=str(path),
                text="one two" if i % 2 else "three",
                duration=seconds,
                speaker=f"spk{i % 3}",
                source="even" if i % 2 == 0 else "odd",
            )
        )
    return utts


@pytest.mark.parametrize("chunk_ms", [160, 640])
def test_batched_dev_decoding_matches_the_streaming_recognizer(tmp_path: Path, chunk_ms: int) -> None:
    """The dev WER the trainer logs must be what the daemon would get: same chunking, same text."""
    model = build_tiny_model("repeat", seed=3)
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(-1.0, 1.0, model.head.bias.numel()))  # fewer all-blank outputs
    utts = _noise_files(tmp_path, 6)
    ds = SpeechDataset(
        utterances=utts,
        tokenizer=model.tokenizer,
        output_frames=lambda n: int(model.encoder.subsampling.output_lengths(torch.tensor([n]))[0]),
    )
    batch = collate([ds[ItemKey(utt=i, epoch=0, batch=0, local=0, slot=i)] for i in range(len(utts))])
    rec = StreamingRecognizer(model, chunk_ms=chunk_ms)
    batched = decode_batch(model, batch, chunk_frames=rec.chunk_frames, left_chunks=rec.left_chunks)
    report = evaluate_streaming(model, utts, chunk_ms=chunk_ms, block_samples=1234)
    streamed = [r.hypothesis for r in report.results]
    assert any(streamed), "the random model should emit something for the comparison to mean anything"
    assert [batched[batch.utts.index(i)] for i in range(len(utts))] == streamed
    counts = evaluate_batches(
        model,
        [batch],
        [u.text for u in utts],
        settings={"stream": (rec.chunk_frames, rec.left_chunks), "full": (0, -1)},
    )
    assert counts["stream"] == report.overall
    assert counts["full"].utterances == len(utts)
    # two-pass finals: the recognizer's full-context pass is the batched full-context decoding
    full = evaluate_streaming(model, utts, chunk_ms=chunk_ms, block_samples=777, final_pass="full")
    assert full.final_pass == "full" and counts["full"] == full.overall
    full_batched = decode_batch(model, batch, chunk_frames=0, left_chunks=-1)
    assert [full_batched[batch.utts.index(i)] for i in range(len(utts))] == [r.hypothesis for r in full.results]
    assert [r.hypothesis for r in full.results] != streamed, "full and chunked context should differ here"


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ambient", "eval", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_eval_command_reports_overall_per_source_and_per_speaker(tmp_path: Path) -> None:
    model = write_tiny_checkpoint(tmp_path / "tiny" / "model.pt")
    utts = _noise_files(tmp_path, 5)
    missing = Utterance(audio=str(tmp_path / "gone.flac"), text="x", duration=1.0, speaker="s", source="odd")
    manifest = tmp_path / "dev.jsonl"
    write_manifest(manifest, [*utts, missing])

    out = _eval("--model", str(model), str(manifest), "--chunk-ms", "320", "--json", "--per-speaker", "--utterances")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["utterances"] == 5 and report["chunk_ms"] == 320
    assert report["ref_words"] == 2 * 2 + 3 * 1
    assert set(report["by_source"]) == {"even", "odd"}
    assert report["by_source"]["even"]["utterances"] == 3 and report["by_source"]["odd"]["utterances"] == 2
    assert sum(v["utterances"] for v in report["by_speaker"].values()) == 5
    assert len(report["skipped"]) == 1 and "gone.flac" in report["skipped"][0]
    assert "gone.flac" in out.stderr
    errors = sum(v["errors"] for v in report["by_source"].values())
    assert report["errors"] == errors and report["wer"] == pytest.approx(errors / 7)
    assert [u["reference"] for u in report["utterances_detail"]] == [u.text for u in utts]

    text = _eval("--model", str(model), str(manifest), "--limit", "2")
    assert text.returncode == 0, text.stderr
    assert "WER" in text.stdout and "chunk 640 ms" in text.stdout and "(2 utterances" in text.stdout


def test_eval_command_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    model = write_tiny_checkpoint(tmp_path / "m.pt")
    out = _eval("--model", str(model), str(empty))
    assert out.returncode == 1 and out.stderr.strip() == f"ambient: error: {empty}: no utterances"
    gone = tmp_path / "gone.jsonl"
    write_manifest(gone, [Utterance(audio=str(tmp_path / "x.flac"), text="a", duration=1.0, speaker="s", source="t")])
    out = _eval("--model", str(model), str(gone), "--json")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines()[-1] == f"ambient: error: {gone}: none of the 1 utterances could be read"
    manifest = tmp_path / "one.jsonl"
    write_manifest(manifest, _noise_files(tmp_path, 1))
    out = _eval("--model", str(tmp_path / "nope.pt"), str(manifest))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "model file not found" in out.stderr


def test_eval_command_reports_each_named_set_apart(tmp_path: Path) -> None:
    model = write_tiny_checkpoint(tmp_path / "tiny" / "model.pt")
    utts = _noise_files(tmp_path, 4)
    seen, unseen = tmp_path / "seen.jsonl", tmp_path / "unseen.jsonl"
    write_manifest(seen, utts[:1])
    write_manifest(unseen, utts[1:])
    out = _eval("--model", str(model), f"seen={seen}", f"unseen={unseen}", "--json")
    assert out.returncode == 0, out.stderr
    reports = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["set"], r["manifest"], r["utterances"]) for r in reports] == [
        ("seen", str(seen), 1),
        ("unseen", str(unseen), 3),
    ]
    text = _eval("--model", str(model), f"seen={seen}", str(unseen))
    assert text.returncode == 0, text.stderr
    assert f"manifest  seen: {seen} (1 utterances" in text.stdout
    assert f"manifest  {unseen} (3 utterances" in text.stdout
