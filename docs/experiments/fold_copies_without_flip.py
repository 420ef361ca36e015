"""Copies of C1's fold models whose segmentation header says flip_tta = false: the shipped config since the flip was
dropped (flip-tta-oof.md). The tensors stay identical; only the config in the safetensors header changes, since the
engine reads its config from there. Written to /work/folds-noflip, then scored as measurements-oof.md says.

    python docs/experiments/fold_copies_without_flip.py [FOLDS_DIR] [OUT_DIR]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def copy_without_flip(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    path = dst / "segmentation.safetensors"
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    config = json.loads(meta["config"])
    config["flip_tta"] = False
    meta["config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=meta)


def main(argv: list[str]) -> int:
    folds = Path(argv[0]) if argv else Path("/work/folds")
    out = Path(argv[1]) if len(argv) > 1 else Path("/work/folds-noflip")
    for i in range(3):
        copy_without_flip(folds / f"C1-f{i}-refine", out / f"C1-f{i}-refine")
        print(f"fold {i}: {out / f'C1-f{i}-refine'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
