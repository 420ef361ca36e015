"""Kaggle-layout patients: ``<ID>_<n>.tif`` slices with optional ``<ID>_<n>_mask.tif``, as a folder or zip.

The slice rules are the dataset's own (``imageio``: the ``_mask`` pairing, the natural number order
from inferior to superior, the decoder with its notes), so a zipped patient folder and the indexed dataset
give the same arrays. The layout's directions are known (slice 1 at the skull base, rows anterior ->
posterior, columns from the patient's right to left) but not its voxel size: :func:`kaggle_grid` gives a
stand-in affine with those true directions and the voxel size the user gives (:func:`with_voxel_size`), or
1 mm voxels flagged unknown (volumes are then given in voxels), said so in the notes.
"""

from __future__ import annotations

import dataclasses
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
NO_GEOMETRY_NOTE = ("The Kaggle layout records no voxel size: volumes are given in voxels unless you give one, and "
                    "the NIfTI mask has a stand-in affine with the layout's true directions (slice 1 inferior, rows "
                    "anterior → posterior, columns from the patient's right to left) and 1 mm voxels, marked unknown.")
#: Refused outside these (mm): not a brain MRI voxel, and most likely a typing slip.
VOXEL_MM_RANGE = (0.05, 20.0)


def is_slice_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith(".")


def kaggle_affine(n_slices: int, plane: tuple[int, int], spacing: tuple[float, float, float] | None) -> np.ndarray:
    """RAS+ affine of the slices stacked as (column, row, slice): the layout's true directions.

    Columns run from the patient's right to left (-x), rows from anterior to posterior (-y), slices from
    inferior to superior (+z) -- an axial DICOM image's own geometry. ``spacing`` is (slice, row, column) mm
    of the slices at their own size (1 mm when None); the grid's centre is placed at the origin.
    """
    ds, dr, dc = spacing if spacing is not None else (1.0, 1.0, 1.0)
    affine = np.diag([-dc, -dr, ds, 1.0])
    centre = (np.array([plane[1], plane[0], n_slices], float) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


def kaggle_grid(n_slices: int, plane: tuple[int, int], spacing: tuple[float, float, float] | None) -> SourceGrid:
    """The grid of a layout without recorded geometry: the slices stacked as (column, row, slice) under
    :func:`kaggle_affine`; ``affine_known`` only when the user gave the voxel size."""
    from nibabel.orientations import io_orientation

    affine = kaggle_affine(n_slices, plane, spacing)
    return SourceGrid(affine=affine, shape=(plane[1], plane[0], n_slices), ornt=io_orientation(affine),
                      plane_shape=plane, affine_known=spacing is not None)


def with_voxel_size(volume: Volume, in_plane_mm: float | None, slice_mm: float | None) -> Volume:
    """A Kaggle-layout volume with the voxel size the user gives (mm: square pixels of the slices as they were
    uploaded, and the slice spacing), so volumes come in mL; both None: the volume unchanged (voxels).

    VolumeError for a value outside ``VOXEL_MM_RANGE``, only one of the two, or a volume that carries its own
    geometry (NIfTI, DICOM: their spacing is the file's).
    """
    if in_plane_mm is None and slice_mm is None:
        return volume
    if volume.provenance.kind != "kaggle":
        raise VolumeError(f"{volume.name}: a {volume.provenance.kind} input carries its own voxel size; it is not "
                          "replaced.")
    if in_plane_mm is None or slice_mm is None:
        raise VolumeError(f"{volume.name}: give both the in-plane pixel size and the slice spacing (mm), or neither.")
    lo, hi = VOXEL_MM_RANGE
    for what, value in (("in-plane pixel size", in_plane_mm), ("slice spacing", slice_mm)):
        if not lo <= float(value) <= hi:
            raise VolumeError(f"{volume.name}: a {what} of {value} mm is not a brain MRI voxel ({lo}–{hi} mm).")
    plane = volume.grid.plane_shape
    source = (float(slice_mm), float(in_plane_mm), float(in_plane_mm))
    grid = dataclasses.replace(kaggle_grid(volume.n_slices, plane, source), turn=volume.grid.turn)
    spacing = (source[0], source[1] * plane[0] / SLICE_SIZE, source[2] * plane[1] / SLICE_SIZE)
    if volume.grid.turn.swaps_axes:  # a turn the user chose earlier: its rows are the slices' columns
        spacing = (spacing[0], spacing[2], spacing[1])
    note = (f"Voxel size given by the user: {in_plane_mm:g} mm in-plane, {slice_mm:g} mm between slices (the NIfTI "
            "mask's affine carries it, with the layout's directions).")
    notes = tuple(n for n in volume.provenance.notes if n != NO_GEOMETRY_NOTE) + (note,)
    return dataclasses.replace(volume, spacing=spacing, grid=grid,
                               provenance=dataclasses.replace(volume.provenance, notes=notes))


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
