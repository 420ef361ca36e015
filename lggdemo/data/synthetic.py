"""A deterministic phantom dataset in the exact ``kaggle_3m`` layout.

It lets a newcomer see every page work before downloading anything, and gives the tests a fixture
that exercises the same reader as the real data. The phantoms are built so that the models have
something real to learn: the tumour is FLAIR-bright, and grade III phantoms are larger, more
irregular, enhance on post-contrast and belong to older patients -- as in the real cohort, only
clearer. Nothing here is patient data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lggdemo._fs import cache_dir, exclusive_lock
from lggdemo.data.imageio import SLICE_SIZE

#: Bump when the generator's output changes, so cached copies are regenerated.
GENERATOR_VERSION = 1
CSV_COLUMNS = (
    "Patient,RNASeqCluster,MethylationCluster,miRNACluster,CNCluster,RPPACluster,OncosignCluster,COCCluster,"
    "histological_type,neoplasm_histologic_grade,tumor_tissue_site,laterality,tumor_location,gender,"
    "age_at_initial_pathologic,race,ethnicity,death01"
)
#: Every generated case id starts with this, so a phantom set stays recognisable wherever it is copied to.
CASE_PREFIX = "PHANTOM_"


def is_phantom(patient_id: str) -> bool:
    """True for a patient made by :func:`generate` (pages must never present phantoms as real data)."""
    return patient_id.startswith(CASE_PREFIX)


@dataclass(frozen=True)
class PhantomConfig:
    seed: int = 0
    n_patients: int = 12
    min_slices: int = 16
    max_slices: int = 24


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Low-frequency texture: random cells upsampled bicubically, range about [-1, 1]."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((SLICE_SIZE, SLICE_SIZE), Image.BICUBIC)
    return np.asarray(img) / 2.0


def _patient_volume(rng: np.random.Generator, n_slices: int, grade: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:SLICE_SIZE, 0:SLICE_SIZE].astype(np.float32)
    c = SLICE_SIZE / 2
    brain_a, brain_b = rng.uniform(82, 96), rng.uniform(96, 112)
    # Tumour: an ellipsoid with angular harmonics (irregular for grade III) centred off the midline.
    t_slice = rng.uniform(0.35, 0.65) * n_slices
    t_half = rng.uniform(0.15, 0.3) * n_slices * (1.3 if grade == 2 else 1.0)
    t_r = rng.uniform(14, 24) * (1.35 if grade == 2 else 1.0)
    t_cx = c + rng.choice([-1, 1]) * rng.uniform(20, 45)
    t_cy = c + rng.uniform(-30, 30)
    harmonics = rng.uniform(0.05, 0.1 if grade == 1 else 0.3, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    images = np.zeros((n_slices, SLICE_SIZE, SLICE_SIZE, 3), np.uint8)
    masks = np.zeros((n_slices, SLICE_SIZE, SLICE_SIZE), np.uint8)
    for k in range(n_slices):
        z = (k + 0.5) / n_slices * 2 - 1  # -1 (top) .. 1 (bottom)
        scale = np.sqrt(max(0.0, 1 - (z * 0.95) ** 2)) * 0.85 + 0.15
        a, b = brain_a * scale, brain_b * scale
        r = np.sqrt(((xx - c) / a) ** 2 + ((yy - c) / b) ** 2)
        brain = r < 1.0
        skull = (r >= 1.02) & (r < 1.12)
        texture = _smooth_noise(rng, 24) * 0.5 + _smooth_noise(rng, 64) * 0.25
        ventricles = (((xx - c) / (a * 0.18)) ** 2 + ((yy - c) / (b * 0.3)) ** 2 < 1) & (abs(z) < 0.5)
        dz = (k - t_slice) / t_half
        tumour = np.zeros_like(brain)
        if abs(dz) < 1:
            rad = t_r * np.sqrt(1 - dz**2)
            theta = np.arctan2(yy - t_cy, xx - t_cx)
            wobble = 1 + sum(h * np.sin((i + 2) * theta + p) for i, (h, p) in enumerate(zip(harmonics, phases)))
            tumour = (np.hypot(xx - t_cx, yy - t_cy) < rad * wobble) & brain
        rim = tumour & ~(np.hypot(xx - t_cx, yy - t_cy) < 0.7 * t_r * np.sqrt(max(0.0, 1 - dz**2)))
        pre = np.where(brain, 95 + 18 * texture, 0) + np.where(skull, 150, 0) - np.where(ventricles, 45, 0)
        flair = np.where(brain, 85 + 20 * texture, 0) + np.where(skull, 60, 0) - np.where(ventricles, 55, 0)
        post = np.where(brain, 90 + 16 * texture, 0) + np.where(skull, 140, 0) - np.where(ventricles, 40, 0)
        flair = flair + np.where(tumour, 85 + 20 * _smooth_noise(rng, 16), 0)
        pre = pre - np.where(tumour, 20, 0)
        if grade == 2:
            post = post + np.where(rim, 70, 0)
        noise = rng.normal(0, 4, size=(3, SLICE_SIZE, SLICE_SIZE)) * brain
        stack = np.stack([pre, flair, post]) + noise
        images[k] = np.clip(stack, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        masks[k] = tumour.astype(np.uint8)
    return images, masks


def generate(dest: str | os.PathLike[str], config: PhantomConfig = PhantomConfig()) -> Path:
    """Write ``dest/kaggle_3m`` (replacing any previous copy atomically) and return its path."""
    rng = np.random.default_rng(config.seed)
    out = Path(dest) / "kaggle_3m"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".kaggle_3m-", dir=out.parent))
    try:
        rows = [CSV_COLUMNS]
        for i in range(config.n_patients):
            grade = 1 + (i % 2)  # alternate G2 / G3
            case = f"{CASE_PREFIX}SY_{i + 1:04d}"
            pid = f"{case}_{20200101 + i}"
            n_slices = int(rng.integers(config.min_slices, config.max_slices + 1))
            images, masks = _patient_volume(rng, n_slices, grade)
            folder = tmp / pid
            folder.mkdir()
            for k in range(n_slices):
                Image.fromarray(images[k], "RGB").save(folder / f"{pid}_{k + 1}.tif")
                Image.fromarray(masks[k] * 255, "L").save(folder / f"{pid}_{k + 1}_mask.tif")
            age = int(np.clip(rng.normal(36 if grade == 1 else 50, 9), 20, 75))
            sex = int(rng.integers(1, 3))
            clusters = [int(rng.integers(1, 5)) for _ in range(7)]
            if i == config.n_patients - 1:
                # Like TCGA_HT_A61B in the real set: images, but a blank clinical row.
                rows.append(case + "," * 17)
                continue
            fields = [case, *map(str, clusters), str(1 + (grade == 2)), str(grade), "1", str(int(rng.integers(1, 4))),
                      str(int(rng.integers(1, 4))), str(sex), str(age), "3", "2", str(int(rng.random() < 0.2 * grade))]
            rows.append(",".join(fields))
        (tmp / "data.csv").write_text("\n".join(rows) + "\n")
        old = None
        if out.exists():  # set the old copy aside in one rename: ``out`` is never seen half deleted
            old = Path(tempfile.mkdtemp(prefix=".kaggle_3m-old-", dir=out.parent))
            os.replace(out, old / "kaggle_3m")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def default_root(config: PhantomConfig = PhantomConfig()) -> Path:
    """The app's embedded dataset: generated once into the cache folder, reused afterwards.

    A fresh server's first pages (and its sidebar) all ask for it at the same moment, from threads and
    sometimes from several processes: exactly one generates, under a file lock, while the others wait and
    then read the finished set. A complete set is never regenerated, so nobody's folder vanishes mid-read;
    ``generate`` writes ``data.csv`` last and renames the whole folder into place, so ``data.csv``
    present means complete.
    """

    base = cache_dir() / f"phantom-v{GENERATOR_VERSION}-s{config.seed}-n{config.n_patients}"
    out = base / "kaggle_3m"
    if (out / "data.csv").is_file():
        return out
    with exclusive_lock(base.parent / f".{base.name}.lock"):
        if not (out / "data.csv").is_file():
            if base.is_dir():  # what a generator killed midway left behind (nobody else can be writing now)
                for leftover in base.glob(".kaggle_3m-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
            generate(base, config)
    return out
