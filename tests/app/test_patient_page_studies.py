"""The whole-patient page with studies as scanners make them (AppTest): the resampled sequences named with their
grids, a cut upload and a SEG that cannot be made shown as errors, the page still working."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from patient_files import T1_COARSE, dataset_patient, make_study, write_nifti_4d, zipped
from streamlit.testing.v1 import AppTest


@pytest.fixture()
def app(predict_app: AppTest) -> AppTest:
    """The Predict page (tests/app/conftest.py) switched to whole-patient mode."""
    predict_app.radio(key="predict_input_mode").set_value("Whole patient").run()
    assert not predict_app.exception, predict_app.exception
    return predict_app


def _upload(app: AppTest, name: str, data: bytes) -> None:
    app.file_uploader(key="patient_files").set_value([(name, data, "application/octet-stream")]).run()
    assert not app.exception, app.exception


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_resampled_sequences_are_named_with_their_grids(app: AppTest) -> None:
    import pydicom

    study = make_study(t1=T1_COARSE)
    files = []
    for name, data in study.files:  # and no StudyInstanceUID: the SEG cannot be made, the NIfTI can
        ds = pydicom.dcmread(io.BytesIO(data))
        del ds.StudyInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append((name, buf.getvalue()))
    _upload(app, "study.zip", zipped(files))
    infos = [str(i.value) for i in app.info]
    resampled = [i for i in infos if "was on its own grid" in i]
    assert len(resampled) == 2 and all("(128×128×20 at 1.80×1.80×1.80 mm)" in i and
                                       "onto FLAIR's (256×256×40 at 0.90×0.90×0.90 mm)" in i for i in resampled)
    assert "Tumour volume" in [m.label for m in app.metric]
    errors = [str(e.value) for e in app.error]
    assert any(e.startswith("Download mask (DICOM SEG): could not be made") and "StudyInstanceUID" in e for e in errors)
    assert "Download mask (NIfTI)" in {b.label for b in app.get("download_button")}
    app.slider(key=next(s.key for s in app.slider if s.label == "Slice (inferior → superior)")).set_value(1).run()
    assert not app.exception and any("could not be made" in str(e.value) for e in app.error)  # still said on rerun


def test_a_cut_upload_is_an_error_and_the_page_stays(app: AppTest, synthetic_root: Path, tmp_path: Path) -> None:
    patient = dataset_patient(synthetic_root, 0)
    whole = write_nifti_4d(tmp_path / "p.nii.gz", patient.slices).read_bytes()
    _upload(app, "p.nii.gz", whole[: len(whole) // 2])
    assert any("p.nii.gz: the gzip stream stops before its end" in str(e.value) for e in app.error)
    raw = gzip.decompress(whole)
    _upload(app, "q.nii", raw[: len(raw) // 2])  # uncompressed: caught from the header's size, before any voxel
    assert any("q.nii: holds" in str(e.value) and "cut short" in str(e.value) for e in app.error)
    app.button(key="patient_example").click().run()  # still alive
    assert not app.exception and "Tumour volume" in [m.label for m in app.metric]
