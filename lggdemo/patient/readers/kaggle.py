"""Kaggle-layout patients: ``<ID>_<n>.tif`` slices with optional ``<ID>_<n>_mask.tif``, as a folder or zip.

The slice rules are the dataset's own (``imageio``: the ``_mask`` pairing, the natural number order
head to foot, the decoder with its notes), so a zipped patient folder and the indexed dataset give the
same arrays. The layout carries no geometry: the spacing is unknown (volumes are given in voxels) and the
NIfTI export gets a stand-in affine (identity, RAS+), said so in the notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lggdemo.data.imageio import (
    SLICE_SIZE,
    ImageDecodeError,
    decode_image,
    decode_mask,
    natural_key,
    resize_image,
    resize_mask,
    split_mask_name,
)
from lggdemo.data.kaggle import DatasetIndex, load_image, load_mask
from lggdemo.patient.volume import MAX_SLICES, Provenance, SourceGrid, Volume, VolumeError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
NO_GEOMETRY_NOTE = ("The Kaggle layout records no voxel spacing: volumes are given in voxels, and the NIfTI mask "
                    "has an identity affine (1 mm voxels, RAS+) rather than the scanner's geometry.")


def is_slice_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith(".")


def kaggle_grid(n_slices: int, plane: tuple[int, int], spacing: tuple[float, float, float] | None) -> SourceGrid:
    """The stand-in grid of a layout without geometry: the canonical RAS+ array of the display slices."""
    affine = np.eye(4)
    if spacing is not None:
        affine[:3, :3] = np.diag([spacing[2], spacing[1], spacing[0]])
    return SourceGrid(affine=affine, shape=(plane[1], plane[0], n_slices),
                      ornt=np.array([[0, 1], [1, 1], [2, 1]], float), plane_shape=plane, affine_known=spacing is not None)


def build_volume(name: str, slices: np.ndarray, truth: np.ndarray | None, plane: tuple[int, int], kind: str,
                 files: Sequence[str], notes: Sequence[str] = ()) -> Volume:
    if len(slices) < 2:
        raise VolumeError(f"{name}: {len(slices)} slice(s) is not a volume; use the 'Slices' mode for single slices.")
    if len(slices) > MAX_SLICES:
        raise VolumeError(f"{name}: {len(slices)} slices; more than {MAX_SLICES} are refused.")
    return Volume(slices=slices, spacing=None, grid=kaggle_grid(len(slices), plane, None),
                  provenance=Provenance(kind, tuple(files), (), (*notes, NO_GEOMETRY_NOTE)), name=name, truth=truth)


def kaggle_volume(files: Sequence[tuple[str, bytes]], name: str) -> Volume:
    """(member name, bytes) of one patient's slices (and masks) -> a Volume; truth only when every slice has one."""
    images: dict[str, tuple[str, bytes]] = {}
    masks: dict[str, tuple[str, bytes]] = {}
    for member, data in files:
        if not is_slice_name(member):
            continue
        key, is_mask = split_mask_name(member)
        (masks if is_mask else images)[key] = (member, data)
    if not images:
        raise VolumeError(f"{name}: no slice images (.tif, .png, .jpg) found.")
    folders = {str(Path(m).parent) for m, _ in images.values()}
    if len(folders) > 1:
        raise VolumeError(f"{name}: slices in {len(folders)} folders ({', '.join(sorted(folders)[:3])}…): give one "
                          "patient per input.")
    if len(images) > MAX_SLICES:
        raise VolumeError(f"{name}: {len(images)} slices; more than {MAX_SLICES} are refused.")
    order = sorted(images, key=natural_key)
    arrays, truths, notes = [], [], []
    plane: tuple[int, int] | None = None
    for key in order:
        member, data = images[key]
        try:
            decoded = decode_image(data, member)
        except ImageDecodeError as exc:
            raise VolumeError(f"{name}: {exc}") from exc
        shape = decoded.array.shape[:2]
        plane = plane or (int(shape[0]), int(shape[1]))
        if shape != plane:
            raise VolumeError(f"{name}: {member} is {shape[1]}×{shape[0]} px but the first slice is "
                              f"{plane[1]}×{plane[0]}: one patient's slices must share one size.")
        notes += [f"{member}: {n}" for n in decoded.notes]
        arrays.append(resize_image(decoded.array, SLICE_SIZE))
        if key in masks:
            try:
                truths.append(resize_mask(decode_mask(masks[key][1], masks[key][0]).array, SLICE_SIZE))
            except ImageDecodeError as exc:
                raise VolumeError(f"{name}: {exc}") from exc
    truth = np.stack(truths).astype(bool) if truths and len(truths) == len(arrays) else None
    if truths and truth is None:
        notes.append(f"Only {len(truths)} of {len(arrays)} slices have a mask: no Dice is computed.")
    assert plane is not None
    return build_volume(name, np.stack(arrays), truth, plane, "kaggle", [name], notes[:20])


def index_volume(index: DatasetIndex, patient_id: str) -> Volume:
    """A patient of an indexed dataset (the example button), with its masks as truth."""
    records = index.patients[patient_id]
    slices = np.stack([resize_image(load_image(r), SLICE_SIZE) for r in records])
    truth = np.stack([resize_mask(load_mask(r), SLICE_SIZE) for r in records]).astype(bool)
    return build_volume(patient_id, slices, truth, (SLICE_SIZE, SLICE_SIZE), "kaggle",
                        [str(index.root / patient_id)])
