"""Word n-gram language model: Kneser-Ney estimates, normalization, cutoffs, ARPA through KenLM,
held-out exclusion, the lexicon and ``ambient data lm``."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ambient.cli.main import main
from ambient.train.ngram import (
    BOS,
    EOS,
    UNK,
    DevExclusion,
    Discounts,
    NgramModel,
    NgramOptions,
    estimate,
    kenlm_sentence_log10,
    read_corpus,
)

_WORDS = "the a cat dog sat on mat ran to house it's o'brien big small red green quickly slowly".split()  # noqa: SIM905


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Sentences of 1-9 words drawn from a Zipf-like distribution (many repeated n-grams, a long tail)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(_WORDS) + 1)
    weights /= weights.sum()
    out = []
    for _ in range(n):
        length = int(rng.integers(1, 10))
        out.append(" ".join(rng.choice(_WORDS, size=length, p=weights)))
    out += ["zebra quagga okapi"] * 2  # rare words for <unk>
    return out


CORPUS = _corpus()
EXAMPLES = [
    "the cat sat on the mat",
    "a big red dog ran quickly to the house",
    "it's o'brien",
    "zebra ran to an unseen place",
    "the",
    "slowly slowly slowly the green mat",
]


def _predictable(model: NgramModel) -> list[str]:
    return [w for w in model.vocab if w != BOS]


def _contexts(model: NgramModel) -> list[tuple[str, ...]]:
    """Every context the model can be asked about: up to ``order - 1`` words of the vocabulary
    (``<unk>`` included), alone or after ``<s>``."""
    inner = [w for w in model.vocab if w not in (BOS, EOS)]
    out: list[tuple[str, ...]] = []
    for k in range(model.order):
        out += itertools.product(inner, repeat=k)
        if k:
            out += [(BOS, *h) for h in itertools.product(inner, repeat=k - 1)]
    return out


def _max_normalization_error(model: NgramModel) -> float:
    words = _predictable(model)
    return max(abs(sum(10 ** model.log10_prob(w, h) for w in words) - 1.0) for h in _contexts(model))


def _arpa_ngrams(path: Path) -> dict[int, dict[tuple[str, ...], tuple[float, float]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    out: dict[int, dict[tuple[str, ...], tuple[float, float]]] = defaultdict(dict)
    header: dict[int, int] = {}
    order = 0
    for line in lines:
        if line.startswith("ngram "):
            n, c = line[6:].split("=")
            header[int(n)] = int(c)
        elif line.endswith("-grams:"):
            order = int(line[1 : line.index("-")])
        elif line and order and not line.startswith("\\"):
            parts = line.split("\t")
            out[order][tuple(parts[1].split())] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
    assert {n: len(g) for n, g in out.items()} == header
    return out


# --- estimation ---------------------------------------------------------------------------------


def test_discounts_follow_chen_goodman() -> None:
    counts = np.array([1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [9] * 7)
    d = Discounts.estimate(counts)
    y = 10 / (10 + 2 * 5)
    assert (d.d1, d.d2, d.d3) == pytest.approx((1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3))
    assert not d.fallback
    assert list(d.of(np.array([0, 1, 2, 3, 7]))) == pytest.approx([0, d.d1, d.d2, d.d3, d.d3])
    assert Discounts.estimate(np.array([1, 1, 2, 4])).fallback  # no count of exactly 3


def _reference(sentences: list[str], model: NgramModel) -> dict[tuple[tuple[str, ...], str], float]:
    """Interpolated modified Kneser-Ney written straight from the formulas, with plain dicts."""
    order = model.order
    known = set(model.words)
    seqs = [[BOS, *(w if w in known else UNK for w in s.split()), EOS] for s in sentences]
    raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for seq in seqs:
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                if seq[i : i + n] != [BOS]:
                    raw[n - 1][tuple(seq[i : i + n])] += 1
    adjusted = [Counter() for _ in range(order)]
    adjusted[-1] = raw[-1]
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in raw[n])
        adjusted[n - 1] = Counter({g: raw[n - 1][g] if g[0] == BOS else left[g] for g in raw[n - 1]})
    by_context: list[dict[tuple[str, ...], dict[str, int]]] = []
    for a in adjusted:
        groups: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
        for g, c in a.items():
            groups[g[:-1]][g[-1]] = c
        by_context.append(groups)
    words = _predictable(model)

    def discount(n: int, c: int) -> float:
        d = model.discounts[n - 1]
        return [0.0, d.d1, d.d2, d.d3][min(c, 3)]

    def p(w: str, h: tuple[str, ...]) -> float:
        n = len(h) + 1
        ext = by_context[n - 1].get(h, {})
        lower = 1 / len(words) if n == 1 else p(w, h[1:])
        if not ext:
            return lower
        total = sum(ext.values())
        gamma = sum(discount(n, c) for c in ext.values()) / total
        c = ext.get(w, 0)
        return (c - discount(n, c)) / total + gamma * lower

    return {(h, w): p(w, h) for h in _contexts(model) for w in words}


@pytest.mark.parametrize("order", [2, 3])
def test_unpruned_model_matches_the_formulas(order: int) -> None:
    model = estimate(CORPUS, NgramOptions(order=order, vocab_size=15, min_counts=(1,)))
    assert not model.discounts[-1].fallback  # estimated (unigrams of 15 words may need the fallback)
    ref = _reference(CORPUS, model)
    assert len(ref) >= 300
    for (h, w), p in ref.items():
        assert model.log10_prob(w, h) == pytest.approx(math.log10(p), abs=1e-9), (h, w)


@pytest.mark.parametrize(("order", "min_counts"), [(1, (1,)), (2, (1, 3)), (3, (1, 1, 1)), (3, (1, 2, 2)), (4, (1, 2))])
def test_every_context_sums_to_one(order: int, min_counts: tuple[int, ...]) -> None:
    model = estimate(CORPUS, NgramOptions(order=order, vocab_size=12, min_counts=min_counts))
    assert UNK in model.vocab and model.log10_prob(UNK) > -10
    assert _max_normalization_error(model) < 1e-6


def test_vocabulary_keeps_the_most_frequent_words() -> None:
    model = estimate(["b a", "a c", "a b", "d"], NgramOptions(order=2, vocab_size=2))
    assert model.words == ("a", "b")  # a: 3, b: 2, c and d: 1
    assert model.word_types == 4
    assert model.log10_prob("c", ["a"]) == model.log10_prob("d", ["a"]) == model.log10_prob(UNK, ["a"])
    assert model.log10_prob(BOS) == -99.0


@pytest.mark.parametrize("min_counts", [(1, 2, 3), (1, 3, 2)], ids=["rising", "falling"])
def test_cutoffs_shrink_the_model_and_keep_it_normalized(tmp_path: Path, min_counts: tuple[int, ...]) -> None:
    full = estimate(CORPUS, NgramOptions(order=3, vocab_size=15, min_counts=(1, 1, 1)))
    pruned = estimate(CORPUS, NgramOptions(order=3, vocab_size=15, min_counts=min_counts))
    assert pruned.ngram_counts[0] == full.ngram_counts[0]
    assert pruned.ngram_counts[1] < full.ngram_counts[1] and pruned.ngram_counts[2] < full.ngram_counts[2] / 2
    assert _max_normalization_error(pruned) < 1e-6

    pruned.write_arpa(tmp_path / "p.arpa")
    grams = _arpa_ngrams(tmp_path / "p.arpa")
    counts = Counter(g for s in CORPUS for g in itertools.pairwise([BOS, *s.split(), EOS]))
    singletons = [g for g, c in counts.items() if c == 1 and all(w in pruned.words or w in (BOS, EOS) for w in g)]
    assert singletons and not any(g in grams[2] for g in singletons)
    # Closed under prefixes and suffixes (with falling cutoffs too): KenLM finds n-grams through them.
    for n in (2, 3):
        for g in grams[n]:
            assert g[:-1] in grams[n - 1] and g[1:] in grams[n - 1], g
    # A pruned trigram backs off: its probability is its context's weight times the bigram's.
    dropped = [g for g, _, _ in full.ngrams(3) if g not in grams[3]]
    h, w = dropped[0][:2], dropped[0][2]
    expected = grams[2].get(h, (0.0, 0.0))[1] + pruned.log10_prob(w, h[1:])
    assert pruned.log10_prob(w, h) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_kenlm_reads_the_arpa_file_as_the_model_scores(tmp_path: Path, name: str) -> None:
    for min_counts in [(1, 1, 1), (1, 2, 2), (1, 3, 2)]:
        model = estimate(CORPUS, NgramOptions(order=3, vocab_size=15, min_counts=min_counts))
        path = tmp_path / name
        model.write_arpa(path)
        assert _arpa_ngrams(path)[1][(BOS,)][0] == -99.0
        ours = [model.sentence_log10(s.split()) for s in EXAMPLES]
        theirs = kenlm_sentence_log10(path, EXAMPLES)
        assert theirs == pytest.approx(ours, abs=1e-4)
        assert len({round(x, 3) for x in ours}) == len(ours)  # the sentences differ, so must their scores


def test_lexicon_spells_every_word(tmp_path: Path) -> None:
    model = estimate([*CORPUS, "caf\u00e9 x2"], NgramOptions(order=2, vocab_size=100))
    count = model.write_lexicon(tmp_path / "lexicon.txt")
    lines = (tmp_path / "lexicon.txt").read_text(encoding="utf-8").splitlines()
    assert count == len(lines) == len(model.words) - 2  # not "café" nor "x2"
    assert "it's\ti t ' s" in lines and "o'brien\to ' b r i e n" in lines and "cat\tc a t" in lines
    assert all(UNK not in line and BOS not in line for line in lines)
    assert lines == sorted(lines)
    for line in lines:
        word, spelling = line.split("\t")
        assert spelling.split(" ") == list(word)


# --- corpus and held-out exclusion ---------------------------------------------------------------

DEV = [
    "it was my reports from the north which chiefly induced people to buy",
    "the quick brown fox jumps over the lazy dog",
    "zero",
]


def test_dev_exclusion_drops_copies_and_shared_six_grams(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text(
        "It was my reports from the North, which chiefly induced people to buy!\n"  # a copy once normalized
        "Yesterday the quick brown fox jumps over the fence.\n"  # shares "the quick brown fox jumps over"
        "A quick brown fox jumps over a dog.\n"  # shares only five words in a row
        "\n"
        "Zero.\n"  # a copy of a one-word transcript
        "zero is a number\n",
        encoding="utf-8",
    )
    (text / "b.txt").write_text("...\nIt 's 5 o'clock & we 're late\n", encoding="utf-8")
    (text / "notes.md").write_text("the quick brown fox jumps over the lazy dog\n", encoding="utf-8")
    sentences, report = read_corpus(text, DevExclusion(DEV))
    assert sentences == [
        "a quick brown fox jumps over a dog",
        "zero is a number",
        "it's five o'clock and we're late",
    ]
    assert (report.files, report.lines, report.empty) == (2, 7, 1)
    assert (report.excluded_exact, report.excluded_overlap, report.used) == (2, 1, 3)
    assert DevExclusion(DEV).reason("buy the quick brown fox jumps over") == "overlap"
    assert DevExclusion(DEV).reason("the quick brown fox jumps") is None


# --- the command line ----------------------------------------------------------------------------


def _manifest(path: Path, texts: list[str]) -> Path:
    rows = [
        {"audio": f"a{i}.flac", "text": t, "duration": 1.0, "speaker": "s", "source": "dev"}
        for i, t in enumerate(texts)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_builds_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text"
    text.mkdir()
    (text / "corpus.txt").write_text("\n".join([*CORPUS, DEV[1].capitalize() + "."]) + "\n", encoding="utf-8")
    dev = _manifest(tmp_path / "dev.jsonl", DEV)
    extra = _manifest(tmp_path / "extra.jsonl", ["the cat sat on the mat"])
    out = tmp_path / "lm"
    argv = ["data", "lm", "--text", str(text), "--exclude", str(dev), "--exclude", str(extra), "--out", str(out)]
    assert main([*argv, "--order", "3", "--vocab", "14", "--min-count", "1,1,2"]) == 0
    copies = 1 + CORPUS.count("the cat sat on the mat")
    assert f"{copies} excluded as held-out copies" in capsys.readouterr().out
    stats = json.loads((out / "lm.json").read_text())
    assert stats["arpa"] == "lm.arpa.gz" and (out / "lm.arpa.gz").stat().st_size == stats["arpa_bytes"]
    assert stats["vocab_size"] == 14 and stats["min_counts"] == [1, 1, 2]
    assert stats["sentences"]["excluded_exact"] == copies
    assert stats["ngrams"] == [n for n in map(len, _arpa_ngrams(out / "lm.arpa.gz").values())]
    assert stats["dev"]["all"]["sentences"] == 4 and 0 < stats["dev"]["all"]["oov_rate"] < 1
    assert stats["dev"]["kenlm_check"]["max_abs_diff_log10"] < 1e-4
    assert len((out / "lexicon.txt").read_text().splitlines()) == 14

    assert main([*argv, "--plain"]) == 0
    assert (out / "lm.arpa").is_file() and not (out / "lm.arpa.gz").exists()
    stats = json.loads((out / "lm.json").read_text())  # the CLI's defaults are NgramOptions' defaults
    defaults = NgramOptions()
    assert (stats["order"], stats["max_vocab_size"], stats["min_counts"]) == (
        defaults.order,
        defaults.vocab_size,
        list(defaults.min_counts),
    )


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda d: None, ["--text", "{d}/missing"], "not a folder"),
        (lambda d: (d / "t.txt").write_text("\n...\n"), ["--text", "{d}"], "no usable sentences"),
        (lambda d: (d / "t.txt").write_text("hello\n"), ["--text", "{d}", "--exclude", "{d}/t.txt"], "not JSON"),
        (lambda d: (d / "t.txt").write_text("hello\n"), ["--text", "{d}", "--min-count", "2,2"], "first min count"),
        (lambda d: (d / "t.txt").write_text("hello\n"), ["--text", "{d}", "--min-count", "1,x"], "--min-count"),
        (lambda d: (d / "t.txt").write_text("hello\n"), ["--text", "{d}", "--order", "9"], "bits"),
    ],
    ids=["missing-folder", "empty-text", "bad-manifest", "unigram-cutoff", "bad-count", "order-too-high"],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], object], args: list[str], message: str
) -> None:
    make(tmp_path)
    argv = ["data", "lm", "--out", str(tmp_path / "out"), *(a.format(d=tmp_path) for a in args)]
    assert main(argv) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" not in line]
    assert len(err) == 1 and err[0].startswith("ambient: error:") and message in err[0], err
