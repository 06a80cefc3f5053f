"""Ship a trained model: fp32 and int8 files, SHA256SUMS, under models/<name>/.

Usage: python scripts/ship_model.py RUN_DIR/best.pt --name ambient-base [--out models]
The model card (models/<name>/README.md) is written by hand from measured figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ambient.model.checkpoint import file_sha256, load_model, save_model
from ambient.model.info import stored_params, virtual_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", default="ambient-base")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = ap.parse_args()
    model = load_model(args.checkpoint)
    folder = args.out / args.name
    folder.mkdir(parents=True, exist_ok=True)
    meta = {**model.meta, "name": args.name}
    meta.pop("path", None)
    meta.pop("int8", None)
    model.meta = meta
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
