"""Smoke tests of the benchmark scripts: each runs for real (daemon subprocess, PulseAudio virtual
microphone, fresh worker processes) with tiny durations and the tiny random checkpoint, prints its
table and writes a results document whose figures are consistent; the report renders them.

Nothing here asserts on speed: only on what must hold whatever the machine (events arrive after the
speech that caused them, silence never opens the gate, shared weights are stored once, ...).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ambient.devtools.missing import missing_part
from ambient.devtools.pulse import pulse_missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
#: Guards against hangs only.
TIMEOUT_S = 300


def _run(script: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert r.returncode == 0, f"{script} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _doc(path: Path, benchmark: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["benchmark"] == benchmark and doc["format"] == 1
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["torch"]
    assert len(machine["loadavg_start"]) == 3 and len(machine["loadavg_end"]) == 3
    assert isinstance(machine["under_load"], bool)
    return doc


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the scripts of this module write their JSON (shared with the report test)."""
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture(scope="module")
def latency(results: Path, tiny_checkpoint: Path) -> tuple[str, dict[str, Any]]:
    if why := pulse_missing():
        missing_part(why)
    out = _run(
        "daemon_latency.py",
        "--model",
        str(tiny_checkpoint),
        "--utterances",
        "1",
        "--lead-s",
        "1.5",
        "--gap-s",
        "1.5",
        "--json",
        str(results / "daemon_latency.json"),
    )
    return out, _doc(results / "daemon_latency.json", "daemon_latency")


def test_daemon_latency_measures_both_sources(latency: tuple[str, dict[str, Any]]) -> None:
    out, doc = latency
    assert "final med" in out and "\nmic " in out and "\nfile " in out
    assert doc["settings"]["hangover_ms"] == 600
    by_run = {f"{r['source']}/{r['final_pass']}": r for r in doc["results"]}
    assert set(by_run) == {"mic/full", "mic/streaming", "file/full", "file/streaming"}
    for run, r in by_run.items():
        assert r["recognized"] == 1 and r["false_starts"] == 0, (run, r)
        (utt,) = doc["utterances"][run]
        assert utt["located"] and utt["final_reason"] == "silence"
        # Causality: the reference clock and the client's clock agree on the order of things.
        assert utt["speech_start_ms"] > 0
        if utt["first_partial_ms"] is not None:
            assert utt["speech_start_ms"] <= utt["first_partial_ms"]
        # The final waits for the gate's hangover after the last voiced frame.
        assert utt["final_ms"] > 600 - 200
        assert r["final_target_ms"] == 750
        assert utt["vad_tail_ms"] is not None and utt["gate_to_final_ms"] is not None
    # The file source feeds the daemon's gate exactly the samples the offline gate saw, so no event
    # can arrive before the gate's decision (the microphone's frame phase differs by up to a frame).
    for final_pass in ("full", "streaming"):
        (utt,) = doc["utterances"][f"file/{final_pass}"]
        assert utt["gate_to_speech_start_ms"] > 0 and utt["gate_to_final_ms"] > 0


@pytest.fixture(scope="module")
def idle(results: Path, tiny_checkpoint: Path) -> tuple[str, dict[str, Any]]:
    if why := pulse_missing():
        missing_part(why)
    out = _run(
        "idle.py",
        "--model",
        str(tiny_checkpoint),
        "--seconds",
        "1",
        "--windows",
        "1",
        "--block-ms",
        "30",
        "--conditions",
        "silence,white",
        "--settle-s",
        "0.5",
        "--json",
        str(results / "idle.json"),
    )
    return out, _doc(results / "idle.json", "idle")


def test_idle_measures_cpu_and_wakeups_without_waking_the_encoder(idle: tuple[str, dict[str, Any]]) -> None:
    out, doc = idle
    assert "wake/s" in out
    rows = {r["condition"]: r for r in doc["results"]}
    assert set(rows) == {"silence", "white"}
    for r in rows.values():
        assert r["block_ms"] == 30 and r["seconds"] > 0
        assert r["cpu_pct"] >= 0 and r["wakeups_per_s"] > 0  # the capture path is alive
        assert r["threads"] >= 2 and r["busiest_threads"]
    assert rows["silence"]["false_starts"] == 0 and rows["silence"]["finals"] == 0
    assert rows["silence"]["awake_pct"] == 0
    for r in rows.values():
        assert 0 <= r["awake_pct"] <= 100 and (r["awake_pct"] > 0) == (r["false_starts"] > 0)


@pytest.fixture(scope="module")
def gate(results: Path) -> tuple[str, dict[str, Any]]:
    out = _run(
        "gate.py",
        "--seconds",
        "8",
        "--utterances",
        "2",
        "--aggressiveness",
        "2",
        "--backgrounds",
        "silence,hum",
        "--json",
        str(results / "gate.json"),
    )
    return out, _doc(results / "gate.json", "gate")


def test_gate_keeps_hum_out_with_the_noise_floor_and_still_hears_speech(gate: tuple[str, dict[str, Any]]) -> None:
    out, doc = gate
    assert "open % (noise alone)" in out
    rows = {(r["background"], r["noise_margin_db"]): r for r in doc["results"]}
    assert set(rows) == {("silence", None), ("silence", 8.0), ("hum", None), ("hum", 8.0)}
    assert rows[("silence", None)]["open_pct"] == 0 == rows[("silence", 8.0)]["open_pct"]
    assert rows[("hum", None)]["open_pct"] > 50, "webrtcvad alone takes mains hum for speech"
    assert rows[("hum", 8.0)]["open_pct"] == 0
    for r in rows.values():
        assert r["sentences"] == 2 and r["caught"] == 2


@pytest.fixture(scope="module")
def memory(results: Path, tiny_checkpoint: Path) -> tuple[str, dict[str, Any]]:
    out = _run(
        "memory.py",
        "--model",
        str(tiny_checkpoint),
        "--hours",
        "0.003",
        "--variants",
        "fp32",
        "--engines",
        "flite",
        "--samples",
        "3",
        "--settle-s",
        "0.5",
        "--json",
        str(results / "memory.json"),
    )
    return out, _doc(results / "memory.json", "memory")


def test_memory_after_load_and_after_use(memory: tuple[str, dict[str, Any]], tiny_checkpoint: Path) -> None:
    out, doc = memory
    assert "RSS load" in out
    (row,) = doc["results"]
    assert row["variant"] == "fp32" and row["exit_status"] == 0
    assert row["load_rss_mb"] > row["load_uss_mb"] > 0
    assert row["use_peak_mb"] >= row["use_rss_mb"] > 0
    assert row["finals"] >= 1 and row["audio_h"] >= 0.003
    assert len(row["rss_timeline"]) >= 3
    assert row["info"]["file_size"] == tiny_checkpoint.stat().st_size
    assert row["info"]["virtual_params"] >= row["info"]["stored_params"] > 0


@pytest.fixture(scope="module")
def scaling(results: Path) -> tuple[str, dict[str, Any]]:
    out = _run(
        "scaling.py",
        "--sweeps",
        "layers",
        "--layers",
        "4",
        "--schemes",
        "none,repeat",
        "--seconds",
        "1",
        "--repeats",
        "1",
        "--json",
        str(results / "scaling.json"),
        "--png",
        str(results / "scaling.png"),
    )
    return out, _doc(results / "scaling.json", "scaling")


def test_scaling_shares_weights_and_draws_the_chart(scaling: tuple[str, dict[str, Any]], results: Path) -> None:
    out, doc = scaling
    assert "none-4L" in out and "repeat-4L" in out
    rows = {r["scheme"]: r for r in doc["results"]}
    # Same virtual network, half the stored weights (2 stored blocks for 4 layers).
    assert rows["repeat"]["virtual_params"] == rows["none"]["virtual_params"]
    assert rows["repeat"]["stored_params"] < rows["none"]["stored_params"]
    for r in rows.values():
        assert r["rtf"] > 0 and r["lat_p95_ms"] >= r["lat_p50_ms"] > 0
        assert r["rss_peak_mb"] >= r["rss_model_mb"] > r["rss_base_mb"] > 0
    assert (results / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_renders_every_result(
    latency: Any, idle: Any, gate: Any, memory: Any, scaling: Any, results: Path, tmp_path: Path
) -> None:
    doc = tmp_path / "benchmarks.md"
    shutil.copy(ROOT / "docs" / "benchmarks.md", doc)
    check = [sys.executable, str(BENCH / "report.py"), "--results", str(results), "--doc", str(doc), "--check"]
    assert subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 1  # stale
    _run("report.py", "--results", str(results), "--doc", str(doc))
    text = doc.read_text()
    assert "| source | final pass | recognized |" in text and "| mic | full | 1/1 |" in text
    assert "| file | streaming | 1/1 |" in text
    assert "| block ms | VAD | condition |" in text and "| 30 | 2 | silence |" in text
    assert "| fp32 |" in text and "RSS after load" in text
    assert "none-4L" in text and "![scaling charts](" in text
    assert "| hum | 2 | 8 | 0.0 |" in text
    assert "| daemon_latency |" in text  # the machine table
    assert text.count("_Not measured yet") == 2  # stream_speed and peers were not run here
    assert subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 0


def test_committed_benchmark_document_is_current() -> None:
    if not any((BENCH / "results").glob("*.json")):
        pytest.skip("no results in bench/results: nothing to check docs/benchmarks.md against")
    r = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
