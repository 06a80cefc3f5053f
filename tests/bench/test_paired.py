"""The paired bootstrap that tells "ambient is better" from "ambient is better on these sentences"
(``bench/paired.py``), and ``bench/peers.py`` running it over real systems: the shipped model with
and without its LM on synthesized sentences."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SHIPPED = ROOT / "models" / "ambient-base" / "model.pt"
sys.path.insert(0, str(BENCH))

from paired import paired_bootstrap, utterance_errors  # noqa: E402


def test_utterance_errors_count_words_after_normalization() -> None:
    refs = ["Turn on 2 lights.", "", "hello world"]
    hyps = ["turn on two light", "anything", "hello there world again"]
    table = utterance_errors(refs, hyps)
    # the empty reference is left out; "2" is spelled "two" on both sides; 1 sub; 1 sub... 2 ins
    assert table.tolist() == [[1, 4], [2, 2]]
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        utterance_errors(["a", "b"], ["a"])


def test_identical_systems_differ_by_nothing() -> None:
    a = np.array([[1, 5], [0, 3], [2, 4]])
    r = paired_bootstrap(a, a.copy(), resamples=500)
    assert r.delta_pts == 0 and r.ci95 == (0.0, 0.0) and r.p_better == 0.0
    assert r.utterances == 3 and r.resamples == 500


def test_a_consistently_better_system_has_an_interval_above_zero() -> None:
    rng = np.random.default_rng(1)
    words = rng.integers(3, 12, size=150)
    a = np.stack([rng.binomial(words, 0.1), words], axis=1)
    b = np.stack([a[:, 0] + rng.integers(0, 3, size=150), words], axis=1)  # never fewer errors than a
    r = paired_bootstrap(a, b, resamples=2000, seed=3)
    assert r.delta_pts == pytest.approx(100 * (b[:, 0].sum() - a[:, 0].sum()) / words.sum())
    assert 0 < r.ci95[0] < r.delta_pts < r.ci95[1]
    assert r.p_better == 1.0
    # swapped, the interval is mirrored below zero and a is never the better one
    s = paired_bootstrap(b, a, resamples=2000, seed=3)
    assert s.delta_pts == pytest.approx(-r.delta_pts) and s.ci95[1] < 0 and s.p_better == 0.0
    assert paired_bootstrap(a, b, resamples=2000, seed=3) == r  # deterministic for a seed


def test_a_noisy_difference_has_an_interval_across_zero() -> None:
    rng = np.random.default_rng(2)
    words = rng.integers(3, 12, size=40)
    a = np.stack([rng.binomial(words, 0.3), words], axis=1)
    b = np.stack([rng.binomial(words, 0.3), words], axis=1)  # the same error rate, drawn independently
    r = paired_bootstrap(a, b, resamples=2000)
    assert r.ci95[0] < 0 < r.ci95[1] and 0.02 < r.p_better < 0.98


def test_mismatched_tables_are_refused() -> None:
    a = np.array([[1, 5], [0, 3]])
    with pytest.raises(ValueError, match="different references"):
        paired_bootstrap(a, np.array([[1, 5], [0, 4]]))
    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap(a, np.array([[1, 5]]))
    with pytest.raises(ValueError, match="no reference words"):
        paired_bootstrap(np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64))


@pytest.mark.slow
def test_peers_compares_every_system_with_ambient(synth: Callable[..., Path], tmp_path: Path) -> None:
    sentences = [
        "the weather will be cold and windy tomorrow morning",
        "please remind me to call my sister at six",
        "she opened the window and looked at the garden",
    ]
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"audio": str(synth(t, "flite")), "text": t, "duration": 3.0, "speaker": "kal", "source": "flite"}
        for t in sentences
    ]
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "peers.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), "--model", str(SHIPPED), "--manifest", f"few={manifest}",
         "--systems", "ambient,ambient-greedy", "--resamples", "300", "--json", str(out),
         "--summary-json", str(tmp_path / "summary.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {row["system"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"ambient", "ambient-greedy"} and "vs_ambient" not in rows["ambient"]
    v = rows["ambient-greedy"]["vs_ambient"]
    assert v["utterances"] == 3 and v["resamples"] == 300
    assert v["delta_pts"] == pytest.approx(100 * (rows["ambient-greedy"]["wer"] - rows["ambient"]["wer"]), abs=0.01)
    assert v["ci95"][0] <= v["delta_pts"] + 0.01 and v["delta_pts"] - 0.01 <= v["ci95"][1]
    assert 0.0 <= v["p_better"] <= 1.0
    assert "few            ambient-greedy   minus ambient:" in r.stdout
    # the committable summary holds the figures but none of the corpora's text
    summary = {row["system"]: row for row in json.loads((tmp_path / "summary.json").read_text())}
    assert summary["ambient-greedy"]["vs_ambient"] == v and summary["ambient"]["wer"] == rows["ambient"]["wer"]
    assert all("refs" not in row and "hyps" not in row for row in summary.values())
    assert rows["ambient"]["refs"] == sentences and "row_sources" in rows["ambient"]


def test_peers_splits_a_set_by_corpus_and_reuses_earlier_peer_rows() -> None:
    from peers import reused_row, split_by_source

    ref = np.array([[0, 2], [1, 2], [0, 1], [0, 1]])  # ambient: 1 error on "a", none on "b"
    other = np.array([[2, 2], [2, 2], [0, 1], [1, 1]])
    sources = ["a", "a", "b", "b"]
    rows = [{"system": "ambient", "row_sources": sources}, {"system": "peer", "row_sources": sources}]
    out = split_by_source(rows, {"ambient": ref, "peer": other}, resamples=200)
    assert sorted(out) == ["a", "b"]
    wers = {src: {e["system"]: e["wer"] for e in entries} for src, entries in out.items()}
    assert wers == {"a": {"ambient": 0.25, "peer": 1.0}, "b": {"ambient": 0.0, "peer": 0.5}}
    peer_a = next(e for e in out["a"] if e["system"] == "peer")
    assert peer_a["utterances"] == 2 and peer_a["vs_ambient"]["delta_pts"] == pytest.approx(75.0)
    assert "vs_ambient" not in next(e for e in out["a"] if e["system"] == "ambient")

    old = [
        {"system": "peer", "set": "s", "manifest": "m.jsonl", "refs": ["x"], "hyps": ["x"]},
        {"system": "broken", "set": "s", "manifest": "m.jsonl", "error": "failed"},
    ]
    assert reused_row("peer", "s", Path("m.jsonl"), old) == old[0]
    assert reused_row("peer", "s", Path("other.jsonl"), old) is None
    assert reused_row("peer", "t", Path("m.jsonl"), old) is None
    assert reused_row("broken", "s", Path("m.jsonl"), old) is None


def _eval_file(path: Path, name: str, hyps: list[str], refs: list[str], sources: list[str]) -> Path:
    detail = [
        {"audio": f"/x/{i}.wav", "source": s, "speaker": f"s{i}", "reference": r, "hypothesis": h}
        for i, (r, h, s) in enumerate(zip(refs, hyps, sources, strict=True))
    ]
    path.write_text(json.dumps({"set": name, "wer": 0.0, "utterances_detail": detail}) + "\n")
    return path


def test_compare_models_reports_new_minus_old_per_corpus(tmp_path: Path) -> None:
    refs = ["turn on the kitchen light" if i % 2 else f"sentence {chr(97 + i % 26)} is read" for i in range(60)]
    sources = ["commands" if i % 2 else "sentences" for i in range(60)]
    old_hyps = ["turn on a light" if i % 2 else r for i, r in enumerate(refs)]  # commands: 2 errors in 5 words
    old = _eval_file(tmp_path / "old.json", "unseen", old_hyps, refs, sources)
    new = _eval_file(tmp_path / "new.json", "unseen", refs, refs, sources)  # all right
    out = tmp_path / "cmp.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "compare_models.py"), str(old), str(new), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = {row["corpus"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"all", "commands", "sentences"}
    assert rows["commands"]["old_wer"] == 40.0 and rows["commands"]["new_wer"] == 0.0
    assert rows["commands"]["delta"] == -40.0 and rows["commands"]["ci95"][1] < 0  # new is better
    assert rows["sentences"]["delta"] == 0.0 and rows["sentences"]["ci95"] == [0.0, 0.0]
    assert rows["all"]["utterances"] == 60 and "unseen" in r.stdout
    # a file without per-utterance results is refused in one line
    (tmp_path / "bare.json").write_text(json.dumps({"set": "unseen", "wer": 0.5}) + "\n")
    bad = subprocess.run(
        [sys.executable, str(BENCH / "compare_models.py"), str(tmp_path / "bare.json"), str(new)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--utterances" in bad.stderr and bad.stderr.strip().count("\n") == 0
