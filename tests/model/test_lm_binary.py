"""KenLM's binary trie (``lm.bin``): written by KenLM's own build_binary, preferred by the loader,
decoding as the ARPA model it came from, and a broken file is a one-line error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ambient.devtools.lm import write_toy_lm
from ambient.devtools.missing import missing_part
from ambient.errors import AmbientError, CheckpointError
from ambient.model.lexicon_lm import LexiconLm, LmOptions, find_lm
from ambient.model.tokenizer import CharTokenizer
from ambient.train.kenlm_binary import find_build_binary, write_kenlm_binary
from tests.model.test_lexicon_lm import decode, emissions

TOK = CharTokenizer()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a toy LM folder with lm.arpa, the same with lm.bin only)."""
    try:
        find_build_binary()
    except AmbientError as e:
        missing_part(str(e))
    arpa_dir = write_toy_lm(tmp_path_factory.mktemp("arpa") / "lm")
    bin_dir = tmp_path_factory.mktemp("bin") / "lm"
    bin_dir.mkdir()
    shutil.copy2(arpa_dir / "lexicon.txt", bin_dir / "lexicon.txt")
    size = write_kenlm_binary(arpa_dir / "lm.arpa", bin_dir / "lm.bin")
    assert size == (bin_dir / "lm.bin").stat().st_size > 0
    assert not list(bin_dir.glob("*.partial"))
    return arpa_dir, bin_dir


def test_the_binary_model_decodes_as_the_arpa_it_came_from(folders: tuple[Path, Path]) -> None:
    arpa_dir, bin_dir = folders
    assert find_lm(bin_dir) == (bin_dir / "lm.bin", bin_dir / "lexicon.txt")
    opts = LmOptions(word_score=0.0)
    from_arpa = LexiconLm(arpa_dir / "lm.arpa", arpa_dir / "lexicon.txt", TOK, opts)
    from_bin = LexiconLm(bin_dir / "lm.bin", bin_dir / "lexicon.txt", TOK, opts)
    assert _scores(from_bin) == pytest.approx(_scores(from_arpa), abs=0.05)  # up to 8-bit quantization
    cases = [
        emissions("tarn on tha kitchan light", second="turn on the kitchen light"),
        emissions("turn off the kitchen lights", noise=2.0, seed=3),
        emissions("turn on the kitten light", noise=1.0, seed=5),
    ]
    assert [decode(from_bin, lp) for lp in cases] == [decode(from_arpa, lp) for lp in cases]
    assert decode(from_bin, cases[0]) == "turn on the kitchen light"


def _scores(model: LexiconLm) -> list[float]:
    """The n-gram scores of "turn on the kitchen light", word by word."""
    state, out = model.kenlm.start(False), []
    for word in ("turn", "on", "the", "kitchen", "light"):
        state, score = model.kenlm.score(state, model.words.index(word))
        out.append(score)
    return out


def test_a_folder_with_both_loads_the_binary(folders: tuple[Path, Path], tmp_path: Path) -> None:
    arpa_dir, bin_dir = folders
    both = tmp_path / "both"
    shutil.copytree(arpa_dir, both)
    shutil.copy2(bin_dir / "lm.bin", both / "lm.bin")
    assert find_lm(both) == (both / "lm.bin", both / "lexicon.txt")


def test_a_truncated_binary_is_a_one_line_error(folders: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = folders
    bad = tmp_path / "bad"
    shutil.copytree(bin_dir, bad)
    data = (bad / "lm.bin").read_bytes()
    (bad / "lm.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load the language model") as e:
        LexiconLm(bad / "lm.bin", bad / "lexicon.txt", TOK)
    assert "\n" not in str(e.value)


def test_the_cli_converts_a_folder_and_refuses_one_without_arpa(folders: tuple[Path, Path], tmp_path: Path) -> None:
    arpa_dir, _ = folders
    work = tmp_path / "lm"
    shutil.copytree(arpa_dir, work)
    (work / "lm.json").write_text(json.dumps({"arpa": "lm.arpa"}))  # as `ambient data lm` leaves it
    cmd = [sys.executable, "-m", "ambient", "data", "lm-binary"]
    r = subprocess.run([*cmd, str(work), "--drop-arpa"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (work / "lm.bin").is_file() and not (work / "lm.arpa").exists()
    binary = json.loads((work / "lm.json").read_text())["binary"]
    assert binary == {
        "file": "lm.bin",
        "bytes": (work / "lm.bin").stat().st_size,
        "from": "lm.arpa",
        "kenlm": "trie -q 8 -b 8",
    }
    assert find_lm(work) == (work / "lm.bin", work / "lexicon.txt")
    again = subprocess.run([*cmd, str(work)], capture_output=True, text=True, timeout=120)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == [f"ambient: error: {work}: no lm.arpa or lm.arpa.gz to convert"]
