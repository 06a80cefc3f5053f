"""The model ambient ships: intact, within its budget, and recognizing speech out of the box.

These run the real ``models/ambient-base`` weights through the commands a user types, with no
``--model``: the default configuration must find them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jiwer
import pytest

from ambient.config import load_config
from ambient.model.checkpoint import load_model
from ambient.model.info import stored_params, virtual_params
from ambient.model.lexicon_lm import load_lm
from ambient.text.normalize import normalize_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "ambient-base"

#: In-distribution sentences (espeak-ng's en-us voice is among the training voices).
SENTENCES = (
    "turn on the kitchen light",
    "what is the weather like tomorrow",
    "set a timer for ten minutes",
    "play some music in the living room",
)
#: Character error rate the shipped model must stay under on them (fp32 and int8). Measured for the
#: stage-16 ambient-base (trained mostly on real speech of many speakers, 20k-word LM) with espeak-ng
#: 1.51: fp32 and int8 0.034 ("place some music", "set timer"; stage 15: 0.034 / 0.042); the bound
#: allows about three more character errors, so a regression shows. A model that recognizes nothing
#: scores about 1.0.
MAX_CER = 0.06


def _ambient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ambient", *args], capture_output=True, text=True, timeout=300)


def test_the_default_config_points_at_the_shipped_model() -> None:
    assert load_config(None).model.path.resolve() == (SHIPPED / "model.pt").resolve()


def test_shipped_files_verify_and_fit_the_budget() -> None:
    sums = (SHIPPED / "SHA256SUMS").read_text().split()
    assert sums[1::2] == ["model.pt", "model-int8.pt", "model.onnx", "model-int8.onnx"]
    fp32 = load_model(SHIPPED / "model.pt")  # verifies the SHA-256
    int8 = load_model(SHIPPED / "model-int8.pt")
    assert int8.meta["int8"] and not fp32.meta["int8"]
    # the mission's budget (issue 23): at most 5M stored, and reuse: every stored weight applied twice or more
    assert stored_params(fp32) <= 5_000_000 and virtual_params(fp32) >= 2 * stored_params(fp32)
    assert fp32.dims.n_layers >= 6 and fp32.dims.sharing.scheme == "residual"
    assert (SHIPPED / "model.pt").stat().st_size < 25 * 1024 * 1024
    assert "Measured" in (SHIPPED / "README.md").read_text()


def test_the_shipped_language_model_verifies_and_is_found_by_default() -> None:
    sums = (SHIPPED / "lm" / "SHA256SUMS").read_text().split()
    assert {"lm.bin", "lexicon.txt"} <= set(sums[1::2])
    model = load_model(SHIPPED / "model.pt")
    lm = load_lm(load_config(None).recognizer.lm, model_path=SHIPPED / "model.pt", tokenizer=model.tokenizer)
    assert lm is not None and lm.arpa == SHIPPED / "lm" / "lm.bin"  # SHA-256s verified on load
    assert len(lm.words) > 10_000
    # The folder holds the model four times (torch and ONNX, fp32 and int8) beside the LM; a device
    # needs one of them (docs/deployment.md), and each file stays within 25 MiB.
    total = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert total < 40 * 1024 * 1024, total
    assert all(f.stat().st_size < 25 * 1024 * 1024 for f in SHIPPED.rglob("*") if f.is_file())


#: ``ambient transcribe`` options: the default (model-int8.onnx on onnxruntime), fp32 ONNX, and the
#: torch backends on the fp32 and int8 checkpoints.
PRECISIONS = {
    "default": [],
    "onnx-fp32": ["--fp32"],
    "torch-fp32": ["--backend", "torch"],
    "torch-int8": ["--backend", "torch", "--model", str(SHIPPED / "model-int8.pt")],
}


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_transcribe_recognizes_synthesized_speech_with_the_default_model(
    synth: Callable[..., Path], precision: str
) -> None:
    files = [synth(s) for s in SENTENCES]
    args = ["transcribe", "--json", *PRECISIONS[precision], *map(str, files)]
    proc = _ambient(*args)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in results] == [str(f) for f in files]
    for r in results:
        assert r["words"], r
        for w in r["words"]:
            assert 0 <= w["start"] < w["end"] <= r["duration"] + 0.05 and 0 <= w["confidence"] <= 1
    cer = jiwer.cer([normalize_text(s) for s in SENTENCES], [normalize_text(r["text"]) for r in results])
    assert cer < MAX_CER, [r["text"] for r in results]


def test_the_language_model_turns_spellings_into_words(synth: Callable[..., Path]) -> None:
    """Decoding with the shipped LM (the default) makes fewer word errors than greedy CTC, and
    every word it outputs is a word of its lexicon."""
    files = [str(synth(s)) for s in SENTENCES]
    refs = [normalize_text(s) for s in SENTENCES]
    texts: dict[str, list[str]] = {}
    for lm in ("auto", "off"):
        proc = _ambient("transcribe", "--json", "--lm", lm, *files)
        assert proc.returncode == 0, proc.stderr
        texts[lm] = [normalize_text(json.loads(line)["text"]) for line in proc.stdout.splitlines()]
    lexicon = {line.split("\t")[0] for line in (SHIPPED / "lm" / "lexicon.txt").read_text().splitlines()}
    assert all(w in lexicon for t in texts["auto"] for w in t.split()), texts["auto"]
    assert jiwer.wer(refs, texts["auto"]) < jiwer.wer(refs, texts["off"]), texts


def test_the_daemon_drops_a_speculative_final_when_speech_resumes(
    synth: Callable[..., Path], compose: Callable[..., Path], tmp_path: Path
) -> None:
    """Two sentences 0.2 s apart are one utterance (a 1.2 s hangover). The full final pass starts
    speculatively in the pause, must be dropped when the second sentence begins, and the final must
    hold both sentences; the one after the last word is kept (nothing resumes)."""
    from ambient.devtools.daemon import daemon_config, read_log, write_config

    first, second = "turn on the kitchen light", "set a timer for ten minutes"
    wav = compose(tmp_path / "two.wav", [0.8, synth(first), 0.2, synth(second), 2.0])
    cfg = daemon_config(
        tmp_path,
        SHIPPED / "model.pt",
        recognizer={"final_pass": "full", "final_pass_silence_ms": 120},
        vad={"hangover_ms": 1200},  # espeak-ng pads each sentence with silence of its own
        event_log={"fsync": "never"},
    )
    proc = _ambient("run", "--config", str(write_config(tmp_path / "c.yaml", cfg)), "--file", str(wav), "--fast")
    assert proc.returncode == 0, proc.stderr
    finals = [r for r in read_log(tmp_path / "events.jsonl") if r["type"] == "final"]
    assert len(finals) == 1, finals
    words = set(normalize_text(finals[0]["text"]).split())
    assert len(words & set(first.split())) >= 2 and len(words & set(second.split())) >= 2, finals[0]["text"]
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    utt = [r for r in logs if r.get("event") == "utterance"]
    assert len(utt) == 1 and utt[0]["speculations_dropped"] >= 1, utt
