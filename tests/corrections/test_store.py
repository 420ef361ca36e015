"""Saved corrections: provenance, the kaggle_3m reader, concurrent saves, an unwritable folder, a lost image."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest

from lggdemo import corrections as corr
from lggdemo.corrections import store
from lggdemo.data.kaggle import Clinical, case_id, load_image, load_mask, scan_dataset


def slice_and_masks(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    model = np.zeros((256, 256), np.uint8)
    model[100:140, 100:140] = 1  # 1600 px
    truth = np.zeros((256, 256), np.uint8)
    truth[100:140, 100:160] = 1  # 2400 px
    fixed = corr.paint(model, [(140, 120), (158, 120)], 19)
    return image, model, fixed, truth


def save(root: Path, pid: str | None = "PHANTOM_0001_20200101", **kw: object) -> corr.Correction:
    image, model, fixed, truth = slice_and_masks()
    args = dict(weights_version="tiny-test-1", source=f"{pid}_7.tif", patient_id=pid, source_slice=7, truth=truth,
                clinical=Clinical(age=51.0, sex="female", grade="G3"), edits=1, root=root)
    return corr.save_correction(image, fixed, model, **{**args, **kw})  # type: ignore[arg-type]


def test_saved_correction_is_a_kaggle_3m_dataset_with_provenance(tmp_path: Path) -> None:
    root = tmp_path / "corrections"
    saved = save(root)
    image, model, fixed, truth = slice_and_masks()
    assert saved.id == "PHANTOM_0001_20200101_1" and saved.usable
    index = scan_dataset(root)  # the dataset's own reader
    assert index.patient_ids == ["PHANTOM_0001_20200101"] and index.problems == []
    rec = index.slices()[0]
    assert np.array_equal(load_image(rec), image) and np.array_equal(load_mask(rec), fixed)
    assert index.clinical_for("PHANTOM_0001_20200101") == Clinical(age=51.0, sex="female", grade="G3")
    prov = json.loads(rec.image_path.with_suffix(".json").read_text())
    assert prov["weights_version"] == "tiny-test-1" and prov["source_slice"] == 7 and prov["mode"] == "slice"
    assert prov["original_area_px"] == 1600 and prov["corrected_area_px"] == int(fixed.sum())
    assert prov["truth_area_px"] == 2400 and prov["dice_original"] == pytest.approx(0.8)
    assert prov["dice_corrected"] > prov["dice_original"]
    assert prov["saved_at"].endswith("+00:00") and prov["edits"] == 1
    listed = corr.list_corrections(root)
    assert [c.id for c in listed] == [saved.id] and listed[0].provenance == saved.provenance


def test_without_truth_or_patient_the_provenance_says_so(tmp_path: Path) -> None:
    saved = save(tmp_path, pid=None, truth=None, clinical=None)
    assert saved.patient_id.startswith("upload_") and saved.provenance.dice_original is None
    assert saved.provenance.truth_area_px is None and saved.provenance.clinical == {}
    assert scan_dataset(tmp_path).patient_ids == [saved.patient_id]


def test_each_save_is_a_new_example_and_delete_removes_only_its_files(tmp_path: Path) -> None:
    a, b = save(tmp_path), save(tmp_path)
    c = save(tmp_path, pid="PHANTOM_0002_20200102")
    assert (a.number, b.number) == (1, 2)
    assert scan_dataset(tmp_path).n_slices == 3
    corr.delete_correction(a.id, root=tmp_path)
    assert {x.id for x in corr.list_corrections(tmp_path)} == {b.id, c.id}
    corr.delete_correction(c.id, root=tmp_path)
    assert not (tmp_path / "PHANTOM_0002_20200102").exists()  # its folder went with its last correction
    index = scan_dataset(tmp_path)
    assert index.n_slices == 1 and list(index.clinical.index) == [case_id("PHANTOM_0001_20200101")]
    with pytest.raises(corr.CorrectionError, match="already deleted"):
        corr.delete_correction(c.id, root=tmp_path)
    with pytest.raises(corr.CorrectionError, match="not a correction"):
        corr.delete_correction("../../etc_1", root=tmp_path)


def test_two_tabs_saving_at_once_both_land(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait()
            save(tmp_path)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(c.number for c in corr.list_corrections(tmp_path)) == list(range(1, 9))
    assert scan_dataset(tmp_path).n_slices == 8


def _save_in_process(root: str) -> None:
    save(Path(root))


def test_two_processes_saving_at_once_both_land(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # the children only write files: no torch, no threads
    procs = [ctx.Process(target=_save_in_process, args=(str(tmp_path),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(c.number for c in corr.list_corrections(tmp_path)) == [1, 2, 3]


def test_an_unwritable_folder_is_a_clean_error_and_nothing_is_lost(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(corr.CorrectionError, match="cannot be written"):
        save(blocked / "corrections")
    root = tmp_path / "corrections"
    kept = save(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    real = store.atomic_write_bytes
    calls = {"n": 0}

    def disk_full_on_the_image(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # mask and provenance written, then the disk fills
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", disk_full_on_the_image)
    with pytest.raises(corr.CorrectionError, match="No space left on device"):
        save(root)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # no half example, the earlier one untouched
    assert [c.id for c in corr.list_corrections(root)] == [kept.id]


def test_never_written_into_the_dataset(tmp_path: Path, synthetic_copy: Path) -> None:
    with pytest.raises(corr.CorrectionError, match="never written into the source dataset"):
        save(synthetic_copy / "corrections", protect=[synthetic_copy])
    assert not (synthetic_copy / "corrections").exists()


def test_mismatched_arrays_are_refused(tmp_path: Path) -> None:
    image, model, fixed, truth = slice_and_masks()
    with pytest.raises(corr.CorrectionError, match="another slice"):
        corr.save_correction(image, fixed[:128], model, weights_version="v", source="x", root=tmp_path)
    with pytest.raises(corr.CorrectionError, match="RGB uint8"):
        corr.save_correction(image[:, :, 0], fixed, model, weights_version="v", source="x", root=tmp_path)
    assert not tmp_path.joinpath("upload").exists() and corr.list_corrections(tmp_path) == []


def test_a_correction_whose_image_is_gone_is_reported_not_a_crash(tmp_path: Path) -> None:
    gone, fine = save(tmp_path), save(tmp_path)
    gone.image_path.unlink()
    (fine.image_path.with_suffix(".json")).write_text("{broken")
    listed = {c.id: c for c in corr.list_corrections(tmp_path)}
    assert "no longer there" in listed[gone.id].problem and not listed[gone.id].usable
    assert listed[fine.id].usable and listed[fine.id].provenance is None  # unreadable provenance: still a slice
    assert "provenance file cannot be read" in listed[fine.id].note
    assert [c.id for c in corr.usable_corrections(tmp_path)] == [fine.id]
    with pytest.raises(corr.CorrectionError, match="no longer there"):
        corr.load_correction(listed[gone.id])
    image, mask = corr.load_correction(listed[fine.id])
    assert image.shape == (256, 256, 3) and mask.max() == 1
    corr.delete_correction(gone.id, root=tmp_path)  # a broken one can still be deleted
    assert [c.id for c in corr.list_corrections(tmp_path)] == [fine.id]
    assert scan_dataset(tmp_path).n_slices == 1


def test_default_folder_is_under_the_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))
    assert corr.corrections_dir() == tmp_path / "runs" / "corrections"
    assert corr.list_corrections() == []  # no folder yet: nothing, not an error
