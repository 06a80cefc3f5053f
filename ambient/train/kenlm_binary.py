"""Write an LM folder's ARPA model as KenLM's binary trie (``lm.bin``), with KenLM's own tool.

The ARPA form is what ``ambient data lm`` estimates; loading it makes KenLM build a probing hash
table in memory (18 MiB for the 64k-word model, rebuilt at every start). KenLM's ``build_binary``
writes the same model as a quantized trie (8-bit probabilities and back-offs, ``-q 8 -b 8``): a third
of the memory, mapped from the file, and loaded without parsing. The tool ships with KenLM's
sources, not with its Python wheels; ``scripts/build_kenlm.sh`` compiles it from the ``kenlm`` sdist
(no Boost needed for this tool) into ``.venv/bin/build_binary``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ambient.errors import AmbientError

__all__ = ["find_build_binary", "write_kenlm_binary"]

#: Quantization bits of probabilities and back-offs (KenLM ``-q``/``-b``).
QUANT_BITS = 8


def find_build_binary() -> Path:
    """KenLM's ``build_binary``: ``$AMBIENT_KENLM_BUILD_BINARY``, beside this Python, or on PATH."""
    env = os.environ.get("AMBIENT_KENLM_BUILD_BINARY")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.executable).parent / "build_binary")
    found = shutil.which("build_binary")
    candidates += [Path(found)] if found else []
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise AmbientError("KenLM's build_binary not found (set AMBIENT_KENLM_BUILD_BINARY, or run scripts/build_kenlm.sh)")


def write_kenlm_binary(arpa: Path, out: Path, *, tool: Path | None = None) -> int:
    """Convert ``arpa`` (plain or ``.gz``) to KenLM's quantized binary trie ``out``; returns its size.

    Raises:
        AmbientError: the tool is missing or fails (its last line in the message); ``out`` is then absent.
    """
    exe = tool or find_build_binary()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="ambient-kenlm-") as tmp:
        src = arpa
        if arpa.suffix == ".gz":  # a build_binary without zlib cannot read it
            src = Path(tmp) / "lm.arpa"
            with gzip.open(arpa, "rb") as fin, src.open("wb") as fout:
                shutil.copyfileobj(fin, fout)
        q = str(QUANT_BITS)
        cmd = [str(exe), "-s", "-q", q, "-b", q, "trie", str(src), str(partial)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise AmbientError(f"{arpa}: build_binary failed: {lines[-1][:200] if lines else r.returncode}")
    partial.replace(out)
    return out.stat().st_size
