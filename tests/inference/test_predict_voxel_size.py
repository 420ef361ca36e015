"""``lggdemo-predict --pixel-size MM --slice-spacing MM``: the Predict page's voxel-size fields on the command line.

A Kaggle-layout input records no voxel size; with the two values its volume is in mL (its voxels times the voxel's
volume) and its NIfTI mask's affine carries the spacing. An input that records its own (NIfTI) keeps it, with a
note; half a voxel size or an impossible one is refused before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import SPACING, dataset_patient, write_nifti_4d

from lggdemo.data.kaggle import scan_dataset
from lggdemo.predict import main

PIXEL_MM, SLICE_MM = 0.8, 3.5


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_kaggle_input_gets_the_given_voxel_size(synthetic_root: Path, tiny_weights: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    kaggle = synthetic_root / scan_dataset(synthetic_root).patient_ids[1]
    patient = dataset_patient(synthetic_root, 0)
    nifti = write_nifti_4d(tmp_path / "alpha.nii.gz", patient.slices)  # records its own spacing (SPACING)
    out = tmp_path / "out"
    code = main([str(kaggle), str(nifti), "--out", str(out), "--weights", str(tiny_weights), "--device", "cpu",
                 "--no-grade", "--pixel-size", str(PIXEL_MM), "--slice-spacing", str(SLICE_MM)])
    err = capsys.readouterr().err
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    rows = {Path(r["input"]).name: r for r in doc["patients"]}
    row = rows[kaggle.name]
    assert row["spacing_mm"] == pytest.approx([SLICE_MM, PIXEL_MM, PIXEL_MM])  # the phantom's slices are 256²
    voxel_ml = PIXEL_MM * PIXEL_MM * SLICE_MM / 1000.0
    assert row["tumour_voxels"] > 0 and row["tumour_ml"] == pytest.approx(row["tumour_voxels"] * voxel_ml, abs=1e-3)
    assert row["longest_mm"] is not None  # diameters in mm, as with a file's own spacing
    assert any("Voxel size given by the user" in n for n in doc["notes"][str(kaggle)])

    mask = nib.load(str(out / f"{kaggle.name}_mask.nii.gz"))
    zooms = np.array(mask.header.get_zooms()[:3], float)
    slice_axis = mask.shape.index(row["slices"])
    assert zooms[slice_axis] == pytest.approx(SLICE_MM)
    assert np.delete(zooms, slice_axis) == pytest.approx([PIXEL_MM, PIXEL_MM])
    assert np.linalg.norm(mask.affine[:3, :3], axis=0) == pytest.approx(zooms)  # the affine, not just the header
    assert int(mask.get_fdata().sum()) == row["tumour_voxels"]

    # the NIfTI keeps the spacing its header records; the given size is named as not applied
    own = rows["alpha.nii.gz"]
    assert own["spacing_mm"] == pytest.approx(list(SPACING), abs=1e-4)
    assert f"note: {nifti}: The voxel size given ({PIXEL_MM:g} mm in-plane" in err and "which is kept" in err
    assert any("was not applied" in n for n in doc["notes"][str(nifti)])


def test_half_or_impossible_voxel_size_is_refused(synthetic_root: Path, tiny_weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    kaggle = synthetic_root / scan_dataset(synthetic_root).patient_ids[1]
    base = [str(kaggle), "--out", str(tmp_path / "out"), "--weights", str(tiny_weights), "--device", "cpu"]
    with pytest.raises(SystemExit) as exited:
        main([*base, "--pixel-size", "0.8"])
    assert exited.value.code == 2 and "give both --pixel-size and --slice-spacing" in capsys.readouterr().err
    assert main([*base, "--pixel-size", "0.8", "--slice-spacing", "80"]) == 1
    assert "slice spacing of 80.0 mm is not a brain MRI voxel" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written
