"""The benchmark's whole-patient row (``python -m lggdemo.bench --infer``): both timings measured, targets compared."""

from __future__ import annotations

from pathlib import Path

from lggdemo.bench.infer import bench_whole_patient
from lggdemo.inference.predictor import Predictor


def test_whole_patient_row(tiny_weights: Path, synthetic_root: Path) -> None:
    predictor = Predictor.from_directory(tiny_weights, "cpu")
    row = bench_whole_patient(predictor, synthetic_root, lambda: None, n_slices=30, repeats=1)
    assert row["whole_patient_30_slices_mask_grade_3d_ms"] > 0 and row["view3d_30_slices_ms"] > 0
    assert row["whole_patient_30_slices_mask_grade_3d_ms_vs_target"].split()[0] in ("meets", "misses")
    parts = [k for k in row if k.startswith("whole_patient_30_part_")]
    assert len(parts) == 3 and all(row[k] >= 0 for k in parts)  # segment, 3D post-processing, grade
    assert "tiled" in row["whole_patient_source"]  # phantoms have at most 24 slices
