"""Every command the documentation shows still parses: what a new user copies from README.md,
docs/*.md or a model card must not fail on a renamed subcommand, a dropped option or a moved script.

Shell blocks (```sh, ```bash, ```console) are split into simple commands. ``ambient …`` commands
go through the real argument parser (parsed, not run); ``python bench|scripts/*.py …`` commands
must name an existing script whose ``--help`` lists every option used; ``*.sh`` scripts must exist,
be executable and accept the options shown. Other programs (systemctl, apt-get, …) are not ours.
Optional parts written as ``[--chunk-ms 320]`` are checked as if given.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from ambient.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "models").glob("*/README.md"))]
_BLOCK = re.compile(r"^[ \t]*```(?:sh|bash|console|shell)\n(.*?)^[ \t]*```", re.M | re.S)
_SPLIT = re.compile(r"\s(?:&&|\|\||\||;|&)(?=\s|$)")
_PREFIXES = ("sudo", "nohup", "setsid", "time", "env")


def _commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` for every simple command in the documentation's shell blocks."""
    out: list[tuple[str, list[str]]] = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in _BLOCK.finditer(text):
            line_no = text.count("\n", 0, block.start()) + 2
            joined = re.sub(r"\\\n\s*", " ", block.group(1))
            for i, line in enumerate(joined.splitlines()):
                line = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ").replace("[", "").replace("]", "")
                for part in _SPLIT.split(f" {line} "):
                    try:
                        argv = shlex.split(part)
                    except ValueError:
                        continue
                    argv = _strip_prefixes(argv)
                    if argv:
                        out.append((f"{doc.relative_to(REPO)}:{line_no + i}", argv))
    return out


def _strip_prefixes(argv: list[str]) -> list[str]:
    while argv and (argv[0] in _PREFIXES or ("=" in argv[0] and not argv[0].startswith("-"))):
        skip = 3 if argv[0] == "sudo" and argv[1:2] == ["-u"] else 1  # sudo -u USER
        argv = argv[skip:]
    if argv:
        argv[0] = argv[0].removeprefix(".venv/bin/")
    if argv and argv[0] in ("python", "python3") and len(argv) > 1 and argv[1] == "-m" and argv[2:3] == ["ambient"]:
        argv = ["ambient", *argv[3:]]
    return argv


COMMANDS = _commands()
AMBIENT = [(w, a) for w, a in COMMANDS if a[0] == "ambient"]
SCRIPTS = [(w, a) for w, a in COMMANDS if a[0] in ("python", "python3") and len(a) > 1 and a[1].endswith(".py")]
SHELL = [(w, a) for w, a in COMMANDS if a[0].endswith(".sh") and "/" in a[0]]


def test_the_docs_show_commands_of_every_kind() -> None:
    assert len(AMBIENT) >= 15 and len(SCRIPTS) >= 10 and len(SHELL) >= 3, (len(AMBIENT), len(SCRIPTS), len(SHELL))


@pytest.mark.parametrize(("where", "argv"), AMBIENT, ids=[w for w, _ in AMBIENT])
def test_ambient_commands_in_the_docs_parse(where: str, argv: list[str]) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as e:
        pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse (exit {e.code})")
    assert hasattr(args, "func") or argv[1:] in ([], ["--help"]), f"{where}: `{shlex.join(argv)}` names no command"


@cache
def _script_help(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, f"{script} --help failed: {proc.stderr[-500:]}"
    return proc.stdout


@pytest.mark.parametrize(("where", "argv"), SCRIPTS, ids=[w for w, _ in SCRIPTS])
def test_python_scripts_in_the_docs_exist_and_take_the_options_shown(where: str, argv: list[str]) -> None:
    script = argv[1]
    assert (REPO / script).is_file(), f"{where}: {script} does not exist"
    if script.startswith("fuzz/"):
        return  # libFuzzer flags (-max_total_time=...), not argparse
    helptext = _script_help(script)
    for opt in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", helptext), f"{where}: {script} has no option {opt}"


@pytest.mark.parametrize(("where", "argv"), SHELL, ids=[w for w, _ in SHELL])
def test_shell_scripts_in_the_docs_exist_and_take_the_arguments_shown(where: str, argv: list[str]) -> None:
    script = REPO / argv[0]
    assert script.is_file() and os.access(script, os.X_OK), f"{where}: {argv[0]} is missing or not executable"
    text = script.read_text(encoding="utf-8")
    for arg in argv[1:]:
        word = re.escape(arg)
        assert re.search(rf"(?<![\w-]){word}(?![\w-])", text), f"{where}: {argv[0]} does not handle {arg}"
