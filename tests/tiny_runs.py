"""The smallest real training run the suite makes, one recipe for every test that trains in-process.

32 px ResNet18 U-Net and 32 px grade crops, one epoch of 16 samples, one thread: seconds on the phantoms, and
every stage of the real pipeline (split, training, scoring, card) still runs.
"""

from __future__ import annotations

from pathlib import Path

from lggdemo.train import TrainConfig

TINY: dict[str, object] = dict(encoder="resnet18", image_size=32, grade_image_size=32, seg_epochs=1, grade_epochs=1,
                               seg_samples=16, grade_samples=16, batch_size=8, folds=0, threads=1)


def tiny_config(data: Path, out: Path, preset: str = "quick", **kw: object) -> TrainConfig:
    """The tiny recipe on ``preset``, with ``kw`` overriding any field (``task="seg"``, ``fold=(0, 2)``...)."""
    return TrainConfig.from_preset(preset, data=str(data), out=str(out), **{**TINY, **kw})
