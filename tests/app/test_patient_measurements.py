"""The whole-patient view's measurements under AppTest: the table, the volume as a range, the lessons, the PDF and
probability-map downloads; a NIfTI upload states millimetres, the phantoms (no spacing) pixels."""

from __future__ import annotations

from pathlib import Path

from patient_files import dataset_patient, write_nifti_4d
from streamlit.testing.v1 import AppTest

from lggdemo.ui.predict.measurements import MEAN_DIAMETER_LESSON, PRODUCT_LESSON, RANGE_LESSON


def _texts(at: AppTest) -> str:
    kinds = ("error", "warning", "info", "markdown", "caption", "success")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def _table(at: AppTest) -> dict[str, list[str]]:
    frame = at.table[0].value
    return {str(i): [str(v) for v in row] for i, row in zip(frame.index, frame.to_numpy())}


def test_nifti_patient_measurements_in_mm_with_a_range(predict_app: AppTest, synthetic_root: Path,
                                                       tmp_path: Path) -> None:
    app = predict_app
    app.radio(key="predict_input_mode").set_value("Whole patient").run()
    patient = dataset_patient(synthetic_root, 3)
    path = write_nifti_4d(tmp_path / "p.nii.gz", patient.slices)
    app.file_uploader(key="patient_files").set_value([(path.name, path.read_bytes(), "application/gzip")]).run()
    assert not app.exception, app.exception
    metrics = {m.label: m for m in app.metric}
    summary = metrics["Tumour volume"]
    assert summary.value.endswith("mL") and str(summary.delta).startswith("range ")  # never a bare number
    ranged = metrics["Tumour volume (with its range)"]
    assert ranged.value == summary.value and "range" in str(ranged.delta) and str(ranged.delta).endswith("mL")
    table = _table(app)
    assert table["Tumour volume"][0].endswith("mL") and table["Tumour volume"][1].startswith("range ")
    texts = _texts(app)
    assert PRODUCT_LESSON in texts and MEAN_DIAMETER_LESSON in texts and RANGE_LESSON in texts
    if "Longest axial diameter" in table:  # the tiny untrained model found a tumour: lengths in mm, a key slice
        assert table["Longest axial diameter"][0].endswith(" mm") and "No tumour found" not in texts
    else:
        assert "No tumour found" in texts
    labels = {b.label for b in app.get("download_button")}
    assert {"Download report (PDF)", "Download probability map (NIfTI)"} <= labels


def test_phantom_example_measures_in_pixels(predict_app: AppTest) -> None:
    app = predict_app
    app.radio(key="predict_input_mode").set_value("Whole patient").run()
    app.button(key="patient_example").click().run()
    assert not app.exception, app.exception
    table = _table(app)
    assert table["Tumour volume"][0].endswith("voxels") and "no voxel spacing" in table["Tumour volume"][1]
    if "Longest axial diameter" in table:
        assert table["Longest axial diameter"][0].endswith(" px")
        assert table["Measurable (RANO-LGG)"][0] == "unknown"
    assert "Dice vs reference" in table  # the example brings its expert mask: the agreement rows
