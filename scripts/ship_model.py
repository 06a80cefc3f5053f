"""Ship a trained model: fp32 and int8 files, SHA256SUMS, under models/<name>/.

Usage: python scripts/ship_model.py RUN_DIR/best.pt --name ambient-base [--out models] [--lm LM_DIR]
       python scripts/ship_model.py --lm LM_DIR --name ambient-base      # the language model only

``--lm`` copies a folder made by ``ambient data lm`` (``lm.arpa.gz`` or ``lm.arpa``, ``lexicon.txt``,
``lm.json``) to ``models/<name>/lm/`` with its own ``SHA256SUMS``; the daemon then decodes with it
(``recognizer.lm: auto``). The model card (models/<name>/README.md) is written by hand from
measured figures.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ambient.model.checkpoint import file_sha256, load_model, save_model, verify_sha256
from ambient.model.info import stored_params, virtual_params
from ambient.model.lexicon_lm import find_lm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, nargs="?", default=None)
    ap.add_argument("--name", default="ambient-base")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    ap.add_argument("--lm", type=Path, default=None, help="language model folder to ship beside the model")
    args = ap.parse_args()
    if args.checkpoint is None and args.lm is None:
        ap.error("give a checkpoint, --lm, or both")
    folder = args.out / args.name
    if args.lm is not None:
        ship_lm(args.lm, folder / "lm")
    if args.checkpoint is not None:
        ship_model(args.checkpoint, folder, args.name)


def ship_lm(src: Path, dest: Path) -> None:
    """Copy an LM folder (replacing what was there) and record its SHA-256s."""
    found = find_lm(src)
    if found is None:
        raise SystemExit(f"{src}: no lm.arpa[.gz] + lexicon.txt")
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
    lines = []
    for f in ("model.pt", "model-int8.pt"):
        (folder / f"{f}.sha256").unlink(missing_ok=True)  # one checksum file per folder
        lines.append(f"{file_sha256(folder / f)}  {f}")
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    for f in ("model.pt", "model-int8.pt"):
        load_model(folder / f)  # verifies against SHA256SUMS
    print(f"shipped {folder}: stored {stored_params(model):,} / virtual {virtual_params(model):,} params")
    for line in lines:
        print(" ", line)


if __name__ == "__main__":
    main()
