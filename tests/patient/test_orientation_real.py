"""Direction on real patients: the skull base comes out inferior and the face anterior in every written file's
world coordinates, whatever the input; one patient stored in three orientations (each with its correct affine)
gives the same world-space mask; a wrong affine that lays the head on its side is found, and a turn undoes it.

Real data only (tests/conftest.py's ``real_root``: skipped where ../shared is absent): the phantoms have no face.
Anatomy, read from the head outline in world coordinates (RAS+ mm: +y anterior, +z superior):
- the head tapers to the vertex at the top, while the lowest slices still cut the face and neck: the head's
  cross-section over the lowest eighth of the slices is larger than over the highest eighth (84 of the 88
  dataset patients);
- the face and the skull base sit forward of the vertex: the head's centroid over the lower third of its large
  slices lies anterior to the centroid over the upper third (83 of 88).
Scores are averaged over the first three real patients, where each holds on its own too.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import SPACING, dicom_study_zip, fake_prediction, write_nifti_4d

from lggdemo.data.imageio import decode_mask
from lggdemo.data.kaggle import scan_dataset
from lggdemo.patient.exporters import mask_dicom_seg, mask_nifti, mask_png_zip
from lggdemo.patient.orientation import check_lie, head_outline, reorient
from lggdemo.patient.readers import open_files, open_path
from lggdemo.patient.readers.kaggle import index_volume, with_voxel_size
from lggdemo.patient.volume import PlaneTurn, Volume

N_PATIENTS = 3


@pytest.fixture(scope="module")
def real_patients(real_root: Path) -> list[Volume]:
    index = scan_dataset(real_root)
    return [index_volume(index, pid) for pid in index.patient_ids[:N_PATIENTS]]


def anatomy(slices: list[tuple[float, float, int]]) -> tuple[float, float]:
    """(inferior score, anterior score) from axial slices of a head mask, each (height z mm, centroid y mm,
    voxel count); both > 0 when the skull base is inferior and the face anterior."""
    z, y, counts = (np.array(v, float) for v in zip(*sorted(s for s in slices if s[2] > 0), strict=True))
    k = max(2, len(z) // 8)
    inferior = (counts[:k].mean() - counts[-k:].mean()) / counts.max()
    big = counts > 0.5 * counts.max()
    zb, yb, cb = z[big], y[big], counts[big]
    third = max(1, len(zb) // 3)
    low = np.average(yb[:third], weights=cb[:third])
    high = np.average(yb[-third:], weights=cb[-third:])
    return float(inferior), float((low - high) / 100.0)  # per 10 cm


def nifti_slices(data: bytes) -> list[tuple[float, float, int]]:
    """The axial slices of a written NIfTI mask, placed by its affine: (z, centroid y, count) per slice."""
    img = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    mask = np.asarray(img.dataobj) > 0
    affine = img.affine
    axis = int(np.argmax(np.abs(affine[2, :3])))  # the array axis that runs head-foot
    out = []
    for k in range(mask.shape[axis]):
        plane = np.take(mask, k, axis=axis)
        ij = np.argwhere(plane)
        if not len(ij):
            continue
        ijk = np.insert(ij.mean(axis=0), axis, k)
        centre = affine[:3, :3] @ ijk + affine[:3, 3]
        out.append((float(centre[2]), float(centre[1]), len(ij)))
    return out


def seg_slices(data: bytes, sources: list[object]) -> list[tuple[float, float, int]]:
    """The frames of a DICOM SEG placed through each source instance's own position and orientation (RAS)."""
    import highdicom as hd

    seg = hd.seg.segread(io.BytesIO(data))
    uids = [ds.SOPInstanceUID for ds in sources]  # type: ignore[attr-defined]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    out = []
    for ds, frame in zip(sources, frames, strict=True):
        rows, cols = np.nonzero(frame)
        if not len(rows):
            continue
        ori = np.asarray(ds.ImageOrientationPatient, float)  # type: ignore[attr-defined]
        dr, dc = (float(v) for v in ds.PixelSpacing)  # type: ignore[attr-defined]
        lps = np.asarray(ds.ImagePositionPatient, float) + cols.mean() * dc * ori[:3] + rows.mean() * dr * ori[3:]  # type: ignore[attr-defined]
        out.append((float(lps[2]), float(-lps[1]), len(rows)))
    return out


def head_prediction(vol: Volume):  # noqa: ANN201
    return fake_prediction(vol, head_outline(vol.slices, step=1).astype(np.uint8))


def test_skull_base_inferior_and_face_anterior_in_every_written_file(real_patients: list[Volume],
                                                                     tmp_path: Path) -> None:
    # the anatomy, on each patient's Kaggle-layout NIfTI (the stand-in affine; then with a voxel size given)
    scores = []
    for patient in real_patients:
        unknown = anatomy(nifti_slices(mask_nifti(patient, head_prediction(patient))))
        sized = with_voxel_size(patient, 0.9, 3.0)
        given = anatomy(nifti_slices(mask_nifti(sized, head_prediction(sized))))
        assert given[0] == pytest.approx(unknown[0])  # the same slices, placed at 3 mm instead of 1 mm
        scores.append(unknown)
    inferior, anterior = np.mean(scores, axis=0)
    assert inferior > 0.05, scores  # the cut through the face and neck is at the bottom, the vertex at the top
    assert anterior > 0.01, scores  # the face and skull base are in front of the vertex
    # every other route places the same patient the same way: NIfTI stored two ways, DICOM (its NIfTI and its SEG)
    first = real_patients[0]
    expected = anatomy(nifti_slices(mask_nifti(first, head_prediction(first))))
    routes = {
        "nifti LPS": open_path(write_nifti_4d(tmp_path / "lps.nii.gz", first.slices, axcodes=("L", "P", "S"))).volume(),
        "nifti ASL": open_path(write_nifti_4d(tmp_path / "asl.nii.gz", first.slices, axcodes=("A", "S", "L"))).volume(),
        "dicom": open_files([("study.zip", dicom_study_zip(first.slices, three=False))], "study").volume(),
    }
    for route, vol in routes.items():
        prediction = head_prediction(vol)
        found = anatomy(nifti_slices(mask_nifti(vol, prediction)))
        assert found[0] == pytest.approx(expected[0], abs=1e-6), route
        assert np.sign(found[1]) == np.sign(expected[1]), route
    seg = mask_dicom_seg(routes["dicom"], head_prediction(routes["dicom"]))
    found = anatomy(seg_slices(seg, routes["dicom"].extra["dicom_sources"]))
    assert found[0] == pytest.approx(expected[0], abs=1e-6) and found[1] > 0
    # PNG numbering is the dataset's whatever the input: mask 1 is the most inferior slice (here of a NIfTI stored
    # anterior-superior-left, whose own array order says nothing about slices)
    vol = routes["nifti ASL"]
    with zipfile.ZipFile(io.BytesIO(mask_png_zip(vol, head_prediction(vol)))) as zf:
        png = decode_mask(zf.read(f"{vol.name}/{vol.name}_1_mask.png"), "1").array.astype(bool)
    lowest = head_outline(first.slices[:1], step=1)[0]
    assert np.array_equal(png, lowest) and not np.array_equal(png, head_outline(first.slices[-1:], step=1)[0])


def _world_mask(vol: Volume, mask: np.ndarray) -> set[tuple[float, float, float]]:
    on_grid = vol.mask_on_source_grid(mask)
    ijk = np.argwhere(on_grid > 0)
    ras = ijk @ vol.grid.affine[:3, :3].T + vol.grid.affine[:3, 3]
    return {tuple(p) for p in np.round(ras, 2)}


@pytest.mark.slow
def test_three_orientations_give_one_world_mask_and_a_wrong_affine_is_found(real_patients: list[Volume],
                                                                            tiny_weights: Path, tmp_path: Path) -> None:
    from lggdemo.inference.predictor import Predictor
    from lggdemo.inference.wholepatient import predict_volume
    from lggdemo.models import weights

    directory = weights.BUNDLED_DIR if weights.is_complete(weights.BUNDLED_DIR) else tiny_weights
    predictor = Predictor.from_directory(directory, "cpu")
    patient = max(real_patients, key=lambda v: int(v.truth.sum()) if v.truth is not None else 0)
    worlds, volumes = [], []
    for axcodes in (("L", "P", "S"), ("R", "A", "S"), ("A", "S", "L")):
        vol = open_path(write_nifti_4d(tmp_path / f"{''.join(axcodes)}.nii.gz", patient.slices,
                                       axcodes=axcodes)).volume()
        result = predict_volume(predictor, vol, None)
        worlds.append(_world_mask(vol, result.mask))
        volumes.append(result.tumour_ml)
        assert not check_lie(vol).across
    assert worlds[0] == worlds[1] == worlds[2] and len(worlds[0]) > 0
    assert max(volumes) <= min(volumes) * 1.005  # type: ignore[operator]

    # the case: the array stored transposed under the untransposed affine -- the head lies on its side
    right = nib.load(str(tmp_path / "LPS.nii.gz"))
    wrong_path = tmp_path / "transposed.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.swapaxes(np.asarray(right.dataobj), 0, 1)), right.affine),
             str(wrong_path))
    wrong = open_path(wrong_path).volume()
    lie = check_lie(wrong)
    assert lie.across and "on its side" in lie.message
    transpose = next(t for t in (PlaneTurn(1, True), PlaneTurn(3, True))
                     if np.array_equal(t.apply(wrong.slices), patient.slices))
    fixed = reorient(wrong, transpose)
    assert not check_lie(fixed).across
    result = predict_volume(predictor, fixed, None)
    on_wrong_grid = fixed.mask_on_source_grid(result.mask)  # back onto the transposed file's own voxels
    right_vol = open_path(tmp_path / "LPS.nii.gz").volume()
    on_right_grid = right_vol.mask_on_source_grid(predict_volume(predictor, right_vol, None).mask)
    assert np.array_equal(on_wrong_grid, np.swapaxes(on_right_grid, 0, 1))
    assert result.tumour_voxels == pytest.approx(volumes[0] / np.prod(SPACING) * 1000, rel=1e-6)
