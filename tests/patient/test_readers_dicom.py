"""DICOM studies written by the test (shuffled files, scrambled InstanceNumbers, exact geometry) read back exactly."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from patient_files import SPACING, dataset_patient, dicom_series, dicom_study_zip, real_or_phantom_root

from lggdemo.patient.readers import open_files
from lggdemo.patient.readers.dicom import scan_dicom_files
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def patient(request: pytest.FixtureRequest, synthetic_root: Path):  # noqa: ANN201
    """A real patient when ../shared has them, else a phantom."""
    return dataset_patient(real_or_phantom_root(request, synthetic_root))


def test_three_series_read_back_exactly(patient) -> None:  # noqa: ANN001
    data = dicom_study_zip(patient.slices)
    source = open_files([("study.zip", data)], "study")
    assert source.kind == "dicom" and len(source.options) == 3
    assert [source.options[source.guess[r]].split(" — ")[0] for r in ("pre-contrast", "FLAIR", "post-contrast")] == \
        ["T1 pre", "FLAIR", "T1 post contrast"]
    vol = source.volume()
    assert vol.name == "study" and vol.provenance.kind == "dicom"
    assert np.array_equal(vol.slices, patient.slices)
    assert vol.spacing == pytest.approx(SPACING, abs=1e-6)
    assert len(vol.provenance.series_uids) == 3 and all(vol.provenance.series_uids)
    assert any("not DICOM were ignored" in n for n in vol.provenance.notes)  # the README.txt
    # the mask on the source grid is (columns, rows, slices ascending = inferior to superior, the display order)
    grid = vol.mask_on_source_grid(patient.truth)
    assert grid.shape == (256, 256, patient.n_slices)
    assert np.array_equal(np.transpose(grid, (2, 1, 0)), patient.truth)
    positions = [float(ds.ImagePositionPatient[2]) for ds in vol.extra["dicom_sources"]]
    assert positions == sorted(positions)


def test_one_series_is_flair_and_fills_the_others(patient) -> None:  # noqa: ANN001
    vol = open_files([("flair.zip", dicom_study_zip(patient.slices, three=False))], "flair").volume()
    assert np.array_equal(vol.slices[..., 0], patient.slices[..., 1])


def test_explicit_assignment_swaps_channels(patient) -> None:  # noqa: ANN001
    source = open_files([("study.zip", dicom_study_zip(patient.slices))], "study")
    g = source.guess
    vol = source.volume({"pre-contrast": g["post-contrast"], "FLAIR": g["FLAIR"], "post-contrast": g["pre-contrast"]})
    assert np.array_equal(vol.slices[..., 0], patient.slices[..., 2])


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in files:
            zf.writestr(n, d)
    return buf.getvalue()


def test_non_axial_series_is_refused(patient) -> None:  # noqa: ANN001
    from pydicom.uid import generate_uid

    files = dicom_series(patient.slices[:4, :, :, 1], "FLAIR", study_uid=generate_uid(), for_uid=generate_uid(),
                         orientation=(0, 1, 0, 0, 0, -1))
    with pytest.raises(VolumeError, match="sagittal.*only axial series are read"):
        open_files([("sag.zip", _zip(files))], "sag").volume()


def test_no_image_series_is_refused() -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # a basic text SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "SR", generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(VolumeError, match="no DICOM image series"):
        open_files([("report.zip", _zip([("sr.dcm", buf.getvalue())]))], "report").volume()


def test_series_on_different_grids_are_resampled_onto_flair(patient) -> None:  # noqa: ANN001
    """Issue 22: a T1 with 5 mm slices is resampled onto FLAIR's 3 mm grid (geometry: test_readers_geometry.py)."""
    from pydicom.uid import generate_uid

    study, frame = generate_uid(), generate_uid()
    flair = dicom_series(patient.slices[:6, :, :, 1], "FLAIR", study_uid=study, for_uid=frame)
    t1 = dicom_series(patient.slices[:6, :, :, 0], "T1 pre", study_uid=study, for_uid=frame, spacing=(5.0, 0.8, 0.75))
    study_obj = scan_dicom_files(flair + t1, "mixed")
    assert len(study_obj.infos) == 2
    vol = open_files(flair + t1, "mixed").volume()
    assert vol.n_slices == 6 and vol.spacing == pytest.approx(SPACING, abs=1e-6)
    assert np.array_equal(vol.slices[..., 1], patient.slices[:6, :, :, 1])  # FLAIR as it was
    assert any("series 'T1 pre' was on its own grid (256×256×6 at 0.75×0.80×5.00 mm)" in n for n in vol.provenance.notes)


def test_duplicate_positions_and_single_images_are_refused(patient) -> None:  # noqa: ANN001
    from pydicom.uid import generate_uid

    one = dicom_series(patient.slices[:1, :, :, 1], "FLAIR", study_uid=generate_uid(), for_uid=generate_uid())
    with pytest.raises(VolumeError, match="2D slice"):
        open_files(one, "one").volume()
    two = dicom_series(patient.slices[:2, :, :, 1], "FLAIR", study_uid=generate_uid(), for_uid=generate_uid(),
                       spacing=(0.0, 0.8, 0.75))
    with pytest.raises(VolumeError, match="share one slice position"):
        open_files(two, "dup").volume()


def test_more_than_512_slices_are_refused() -> None:
    from pydicom.uid import generate_uid

    tiny = np.zeros((513, 4, 4), np.uint8)
    files = dicom_series(tiny, "FLAIR", study_uid=generate_uid(), for_uid=generate_uid())
    with pytest.raises(VolumeError, match="more than 512"):
        open_files(files, "tall").volume()
