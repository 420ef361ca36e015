"""The whole-patient input checks under AppTest: unused files named, the Kaggle voxel size, the head's lie and the
turn that stands it up, the slider named from the data."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import dataset_patient, kaggle_zip, write_nifti_4d
from streamlit.testing.v1 import AppTest


@pytest.fixture()
def app(predict_app: AppTest) -> AppTest:
    predict_app.radio(key="predict_input_mode").set_value("Whole patient").run()
    assert not predict_app.exception, predict_app.exception
    return predict_app


def _upload(app: AppTest, files: list[tuple[str, bytes]]) -> None:
    app.file_uploader(key="patient_files").set_value([(n, d, "application/octet-stream") for n, d in files]).run()
    assert not app.exception, app.exception


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_a_kaggle_zip_gets_a_voxel_size_and_then_gives_millilitres(app: AppTest, synthetic_root: Path) -> None:
    patient = dataset_patient(synthetic_root, 2)
    _upload(app, [(f"{patient.name}.zip", kaggle_zip(patient))])
    assert app.metric[0].label == "Tumour volume" and app.metric[0].value.endswith("voxels")
    assert app.slider[0].label == "Slice (inferior → superior)"
    boxes = {n.label: n for n in app.number_input}
    boxes["Pixel size in-plane (mm)"].set_value(0.9)
    boxes["Slice spacing (mm)"].set_value(3.0).run()
    assert not app.exception, app.exception
    volume = app.metric[0]
    assert volume.label == "Tumour volume" and volume.value.endswith("mL")
    assert any("Voxel size given by the user: 0.9 mm in-plane" in str(i.value) for i in app.info)


def test_files_not_used_are_named(app: AppTest, synthetic_root: Path, tmp_path: Path) -> None:
    patient = dataset_patient(synthetic_root, 1)
    nifti = write_nifti_4d(tmp_path / "case07.nii.gz", patient.slices)
    _upload(app, [(nifti.name, nifti.read_bytes()), ("second_patient.zip", kaggle_zip(patient))])
    warning = next(str(w.value) for w in app.warning if "not used" in str(w.value))
    assert "second_patient.zip" in warning and "zip beside other files" in warning
    assert any("case07: nifti upload" in str(m.value) for m in app.markdown)  # named after the study, not "patient"


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_a_head_on_its_side_is_said_and_the_turn_stands_it_up(app: AppTest, request: pytest.FixtureRequest,
                                                              synthetic_root: Path, tmp_path: Path) -> None:
    patient = dataset_patient(synthetic_root, 0)
    right = write_nifti_4d(tmp_path / "right.nii.gz", patient.slices)
    img = nib.load(str(right))  # the mistake: the array transposed, the affine left as it was
    wrong = tmp_path / "transposed.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.swapaxes(np.asarray(img.dataobj), 0, 1)), img.affine), str(wrong))
    _upload(app, [(wrong.name, wrong.read_bytes())])
    assert any("on its side" in str(w.value) for w in app.warning)
    radio = next(r for r in app.radio if r.label.startswith("Turn the slices before predicting (suggested"))
    radio.set_value("swap rows and columns").run()
    assert not app.exception, app.exception
    assert any("now runs front to back" in str(s.value) for s in app.success)
    assert any("turned in-plane by the user" in str(i.value) for i in app.info)
