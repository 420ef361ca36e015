"""Enhanced (multi-frame) MR: read frame by frame through the functional groups, exactly like the classic series it
was made from, and its SEG references the object frame by frame; a multi-frame object without functional groups is
refused with its SOP class named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from patient_files import (
    T1_COARSE,
    blob_mask,
    channel_structure,
    enhanced_object,
    fake_prediction,
    make_study,
    tilted_axial,
)

from lggdemo.patient.exporters import mask_dicom_seg
from lggdemo.patient.readers import open_files
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def study():  # noqa: ANN201
    return make_study(flair_orientation=tilted_axial(10.0), t1=T1_COARSE)


def test_enhanced_flair_reads_like_its_classic_series(study) -> None:  # noqa: ANN001
    import highdicom as hd

    classic = open_files(study.files, "classic").volume()
    others = [(n, d) for n, d in study.files if not n.startswith("series_FLAIR/")]
    files = [enhanced_object(study.files, "FLAIR"), *others]
    vol = open_files(files, "enhanced").volume()
    assert np.array_equal(vol.slices, classic.slices)
    assert np.allclose(vol.grid.affine, study.flair_affine, atol=1e-4) and vol.grid.shape == study.flair_shape
    assert any("Legacy Converted Enhanced MR Image Storage" in n and "read frame by frame" in n
               for n in vol.provenance.notes)
    # the SEG references the one object, frame by frame, with each frame's mask where the frame lies
    mask = blob_mask(vol.slices.shape[:3])
    seg = hd.seg.segread(io.BytesIO(mask_dicom_seg(vol, fake_prediction(vol, mask))))
    parent = vol.extra["dicom_sources"][0].lgg_frame_source[0]
    refs = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [parent.SOPInstanceUID]
    grid = vol.mask_on_source_grid(mask)  # (columns, rows, slices by position)
    for k, view in enumerate(vol.extra["dicom_sources"]):
        frame_number = view.lgg_frame_source[1] + 1
        got = seg.get_pixels_by_source_frame(source_sop_instance_uid=parent.SOPInstanceUID,
                                             source_frame_numbers=[frame_number], segment_numbers=[1])[0, ..., 0]
        assert np.array_equal(got.astype(bool), grid[:, :, k].T.astype(bool)), frame_number


def test_enhanced_t1_is_resampled_onto_flair(study) -> None:  # noqa: ANN001
    others = [(n, d) for n, d in study.files if not n.startswith("series_T1 pre/")]
    vol = open_files([*others, enhanced_object(study.files, "T1 pre")], "t1enh").volume()
    assert any("(128×128×20 at 1.80×1.80×1.80 mm)" in n for n in vol.provenance.notes)
    found = channel_structure(vol, 0)
    classic = channel_structure(open_files(study.files, "classic").volume(), 0)
    assert np.array_equal(found, classic)


def test_multiframe_without_functional_groups_is_refused_by_sop_class(study) -> None:  # noqa: ANN001
    import pydicom

    name, data = enhanced_object(study.files, "FLAIR", shuffle=False)
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PerFrameFunctionalGroupsSequence
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(VolumeError, match=r"multi-frame objects without per-frame functional groups .* "
                                          r"enhanced_FLAIR\.dcm \(Legacy Converted Enhanced MR Image Storage, "
                                          r"1\.2\.840\.10008\.5\.1\.4\.1\.1\.4\.4\)"):
        open_files([(name, buf.getvalue())], "mf")
