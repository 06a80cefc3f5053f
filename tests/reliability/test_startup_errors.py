"""A daemon that cannot start says why in one line and exits non-zero, never with a traceback:
corrupt, truncated, foreign or unverifiable model files, and configuration files that cannot be
read. Under systemd such a failure repeats at every start; the unit's start limit stops the loop
(checked against docs/reliability.md)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ambient.devtools.units import read_unit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUARD_S = 180


_NO_SIDECAR = b"<none>"


def _model_dir(root: Path, name: str, payload: bytes, *, sidecar: bytes | None = None) -> Path:
    """``root/name/model.pt`` holding ``payload``. ``sidecar``: the SHA-256 file's exact bytes;
    None writes the checksum of ``payload``; ``_NO_SIDECAR`` writes none."""
    d = root / name
    d.mkdir()
    model = d / "model.pt"
    model.write_bytes(payload)
    if sidecar is None:
        sidecar = _checksum_line(payload)
    if sidecar != _NO_SIDECAR:
        model.with_name("model.pt.sha256").write_bytes(sidecar)
    return model


def _checksum_line(data: bytes) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  model.pt\n".encode()


def _config(root: Path, name: str, model: Path) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"path": str(model)},
                "audio": {"source": "stdin"},
                "socket": {"path": str(root / f"{name}.sock")},
                "event_log": {"path": None},
            }
        )
    )
    return path


def _run_batch(commands: list[list[str]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "cli_batch.py")],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def _assert_one_line(result: dict[str, Any], code: int, expected: str) -> None:
    where = " ".join(result["argv"])
    assert result["exception"] is None, f"{where}: escaped main():\n{result['exception']}"
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ambient: error: "), f"{where}: {result['stderr']!r}"
    assert expected in lines[0], f"{where}: {lines[0]}"
    assert result["code"] == code, f"{where}: exit {result['code']}, expected {code}: {lines[0]}"


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model file, the words its one-line error must contain)."""
    import torch

    root = tmp_path_factory.mktemp("models")
    good = tiny_checkpoint.read_bytes()
    half = good[: len(good) // 2]
    flipped = bytearray(good)
    for i in range(len(good) // 2, len(good) // 2 + 64):
        flipped[i] ^= 0xFF
    out: dict[str, tuple[Path, str]] = {
        "wrong sha": (_model_dir(root, "wrongsha", good, sidecar=b"0" * 64 + b"  model.pt\n"), "SHA-256 mismatch"),
        "truncated": (_model_dir(root, "trunc", half, sidecar=_checksum_line(good)), "SHA-256 mismatch"),
        "flipped bytes": (_model_dir(root, "flip", bytes(flipped), sidecar=_checksum_line(good)), "SHA-256 mismatch"),
        "truncated, checksum of the truncated file": (_model_dir(root, "trunc2", half), "not a readable ambient model"),
        "empty": (_model_dir(root, "empty", b""), "not a readable ambient model"),
        "random bytes": (_model_dir(root, "random", os.urandom(4096)), "not a readable ambient model"),
        "no checksum": (_model_dir(root, "nosum", good, sidecar=_NO_SIDECAR), "no SHA-256 recorded"),
    }
    foreign = root / "foreign"
    foreign.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(3)}}, foreign / "model.pt")
    (foreign / "model.pt.sha256").write_bytes(_checksum_line((foreign / "model.pt").read_bytes()))
    out["foreign checkpoint"] = (foreign / "model.pt", "not an ambient model file")

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    inconsistent = root / "inconsistent"
    inconsistent.mkdir()
    torch.save(payload, inconsistent / "model.pt")
    (inconsistent / "model.pt.sha256").write_bytes(_checksum_line((inconsistent / "model.pt").read_bytes()))
    out["missing weights"] = (inconsistent / "model.pt", "inconsistent model file")
    return out


def test_broken_model_files_are_one_line_errors(broken_models: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    names = list(broken_models)
    commands = [["run", "--config", str(_config(tmp_path, f"c{i}", broken_models[n][0]))] for i, n in enumerate(names)]
    model, _ = broken_models["wrong sha"]
    commands.append(["transcribe", str(tmp_path / "absent.wav"), "--model", str(model)])
    commands.append(["run", "--config", str(_config(tmp_path, "dir", tmp_path))])  # a directory
    results = _run_batch(commands)
    for name, result in zip(names, results, strict=False):
        _, expected = broken_models[name]
        _assert_one_line(result, 1, expected)
        assert str(broken_models[name][0]) in result["stderr"], name
    _assert_one_line(results[len(names)], 1, "SHA-256 mismatch")
    _assert_one_line(results[len(names) + 1], 2, "'model.path'")


def test_a_damaged_language_model_is_a_one_line_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The LM beside a model is verified like the model: a corrupt or incomplete one stops the
    daemon with one line (it does not quietly fall back to greedy decoding)."""
    from ambient.devtools.lm import write_toy_lm

    commands = []
    for name in ("corrupt", "incomplete", "garbage"):
        model = _model_dir(tmp_path, name, tiny_checkpoint.read_bytes())
        lm = write_toy_lm(model.parent / "lm")
        if name == "corrupt":
            sums = "".join(
                f"{hashlib.sha256((lm / f).read_bytes()).hexdigest()}  {f}\n" for f in ("lm.arpa", "lexicon.txt")
            )
            (lm / "SHA256SUMS").write_text(sums)
            with (lm / "lm.arpa").open("ab") as f:
                f.write(b"\n")
        elif name == "incomplete":
            (lm / "lexicon.txt").unlink()
        else:
            (lm / "lm.arpa").write_text("not an ARPA file\n")
        commands.append(["run", "--config", str(_config(tmp_path, name, model))])
    results = _run_batch(commands)
    _assert_one_line(results[0], 1, "SHA-256 mismatch")
    _assert_one_line(results[1], 1, "incomplete language model")
    _assert_one_line(results[2], 1, "cannot load the language model")


@pytest.mark.parametrize("sidecar", [b"", b"\xff\xfe\x00garbage"], ids=["empty", "binary"])
def test_a_damaged_checksum_file_is_a_one_line_error(tiny_checkpoint: Path, tmp_path: Path, sidecar: bytes) -> None:
    model = _model_dir(tmp_path, "m", tiny_checkpoint.read_bytes(), sidecar=sidecar)
    from ambient.errors import CheckpointError
    from ambient.model.checkpoint import verify_sha256

    with pytest.raises(CheckpointError):
        verify_sha256(model)


def test_unreadable_configuration_files_are_one_line_errors(tmp_path: Path) -> None:
    not_utf8 = tmp_path / "latin1.yaml"
    not_utf8.write_bytes("audio:\n  device: Mikrofon f\xfcr USB\n".encode("latin-1"))
    a_socket = tmp_path / "config.sock"  # root reads any file; open() of a socket fails even for root
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(a_socket))
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "nowhere.yaml")
    nul = tmp_path / "nul.yaml"
    nul.write_text('event_log:\n  path: "/var/lib/ambient/ev\\0ents.jsonl"\n')
    deep = tmp_path / "deep.yaml"
    deep.write_text("audio: " + "[" * 3000 + "]" * 3000 + "\n")
    cases = [
        (tmp_path, "cannot read config file"),
        (not_utf8, "cannot read config file"),
        (a_socket, "cannot read config file"),
        (dangling, "config file not found"),
        (nul, "must not contain a NUL byte"),
        (deep, "nested too deeply"),
    ]
    try:
        results = _run_batch([["run", "--config", str(path)] for path, _ in cases])
    finally:
        s.close()
    for (path, expected), result in zip(cases, results, strict=True):
        _assert_one_line(result, 2, expected)
        assert str(path) in result["stderr"]


def test_the_real_process_exit_status_and_stderr(broken_models: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    model, _ = broken_models["flipped bytes"]
    proc = subprocess.run(
        [sys.executable, "-m", "ambient", "run", "--config", str(_config(tmp_path, "real", model))],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("ambient: error: ") and "SHA-256 mismatch" in proc.stderr
    assert not (tmp_path / "real.sock").exists()  # it stopped before creating the socket


# --------------------------------------------------------------------------- systemd start limit


@pytest.mark.parametrize("unit", ["systemd/ambient.service", "systemd/user/ambient.service"])
def test_start_limit_and_restart_policy_match_the_documentation(unit: str) -> None:
    u = read_unit(REPO / unit)
    interval = u["Unit.StartLimitIntervalSec"][-1]
    burst = u["Unit.StartLimitBurst"][-1]
    assert u["Service.Restart"] == ["on-failure"]
    restart_sec = u["Service.RestartSec"][-1]
    assert int(burst) >= 2 and int(interval) > int(burst) * int(restart_sec.rstrip("s"))  # the limit can trip
    doc = (REPO / "docs" / "reliability.md").read_text()
    assert f"StartLimitIntervalSec={interval}" in doc and f"StartLimitBurst={burst}" in doc
    assert f"RestartSec={restart_sec}" in doc
