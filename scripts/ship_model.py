"""Ship a trained model: fp32 and int8 files (torch and ONNX), SHA256SUMS, under models/<name>/.

Usage: python scripts/ship_model.py RUN_DIR/best.pt --name ambient-base [--out models] [--lm LM_DIR]
       python scripts/ship_model.py --lm LM_DIR --name ambient-base      # the language model only
       python scripts/ship_model.py --onnx-only --name ambient-base      # (re)export the shipped model.pt

Every shipped model gets ``model.onnx`` and ``model-int8.onnx`` (``ambient model export``), exported
from the ``model.pt`` written here, so the daemon runs without torch (``recognizer.backend: auto``).

``--lm`` copies a folder made by ``ambient data lm`` (``lm.bin``, ``lm.arpa.gz`` or ``lm.arpa``, ``lexicon.txt``,
``lm.json``) to ``models/<name>/lm/`` with its own ``SHA256SUMS``; the daemon then decodes with it
(``recognizer.lm: auto``). The model card (models/<name>/README.md) is written by hand from
measured figures.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ambient.model.checkpoint import file_sha256, load_model, save_model, verify_sha256
from ambient.model.export.onnx_graph import export_onnx
from ambient.model.info import stored_params, virtual_params
from ambient.model.lexicon_lm import find_lm
from ambient.runtime.onnx_model import load_onnx_model

#: The files of a shipped model folder, all listed in its SHA256SUMS.
MODEL_FILES = ("model.pt", "model-int8.pt", "model.onnx", "model-int8.onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, nargs="?", default=None)
    ap.add_argument("--name", default="ambient-base")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    ap.add_argument("--lm", type=Path, default=None, help="language model folder to ship beside the model")
    ap.add_argument("--onnx-only", action="store_true", help="only (re)export the ONNX files of the shipped model.pt")
    args = ap.parse_args()
    folder = args.out / args.name
    if args.onnx_only:
        ship_onnx(folder)
        return
    if args.checkpoint is None and args.lm is None:
        ap.error("give a checkpoint, --lm, or both")
    if args.lm is not None:
        ship_lm(args.lm, folder / "lm")
    if args.checkpoint is not None:
        ship_model(args.checkpoint, folder, args.name)


def ship_lm(src: Path, dest: Path) -> None:
    """Copy an LM folder (replacing what was there) and record its SHA-256s."""
    found = find_lm(src)
    if found is None:
        raise SystemExit(f"{src}: no lm.bin or lm.arpa[.gz] + lexicon.txt")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    names = [found[0].name, found[1].name] + (["lm.json"] if (src / "lm.json").is_file() else [])
    for name in names:
        shutil.copy2(src / name, dest / name)
    (dest / "SHA256SUMS").write_text("".join(f"{file_sha256(dest / n)}  {n}\n" for n in names))
    for name in names:
        verify_sha256(dest / name)
    print(f"shipped {dest}: " + ", ".join(f"{n} {(dest / n).stat().st_size / 1e6:.1f} MB" for n in names))


def ship_model(checkpoint: Path, folder: Path, name: str) -> None:
    """fp32 and int8 files of ``checkpoint`` in ``folder`` with their SHA256SUMS."""
    model = load_model(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    model.meta["name"] = name
    save_model(model, folder / "model.pt")
    save_model(model, folder / "model-int8.pt", int8=True)
    export_onnx(folder / "model.pt", folder / "model.onnx")  # and model-int8.onnx
    lines = _write_sums(folder)
    for f in ("model.pt", "model-int8.pt"):
        load_model(folder / f)  # verifies against SHA256SUMS
    print(f"shipped {folder}: stored {stored_params(model):,} / virtual {virtual_params(model):,} params")
    for line in lines:
        print(" ", line)


def ship_onnx(folder: Path) -> None:
    """Export the shipped ``folder/model.pt`` (verified) to ``model.onnx`` and ``model-int8.onnx`` and
    rewrite SHA256SUMS; the torch files are left as they are."""
    export_onnx(folder / "model.pt", folder / "model.onnx")
    for line in _write_sums(folder):
        print(" ", line)


def _write_sums(folder: Path) -> list[str]:
    """SHA256SUMS of every model file in ``folder`` (side ``.sha256`` files removed), each checked by
    loading it."""
    lines = []
    for f in MODEL_FILES:
        (folder / f"{f}.sha256").unlink(missing_ok=True)  # one checksum file per folder
        lines.append(f"{file_sha256(folder / f)}  {f}")
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    for f in ("model.onnx", "model-int8.onnx"):
        load_onnx_model(folder / f)  # verifies against SHA256SUMS
    return lines


if __name__ == "__main__":
    main()
