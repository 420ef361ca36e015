"""The kaggle_3m reader: slice order, mask pairing, code decoding, blank clinical rows, malformed trees, caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lggdemo._fs import cache_dir
from lggdemo.data.arrays import patient_table, slice_table
from lggdemo.data.kaggle import (
    GRADE_CODES,
    SEX_CODES,
    Clinical,
    DatasetError,
    case_id,
    decode_clinical,
    load_mask,
    looks_like_dataset,
    resolve_root,
    scan_dataset,
)


def _first_patient(root: Path) -> str:
    return sorted(p.name for p in root.iterdir() if p.is_dir())[0]


def _problems(index) -> str:
    return "\n".join(str(p) for p in index.problems)


# --- order and pairing --------------------------------------------------------------------------


def test_slices_sort_numerically_not_as_text(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    for pid, records in index.patients.items():
        numbers = [r.number for r in records]
        on_disk = sorted(int(f.name.split("_")[-1][:-4]) for f in (synthetic_root / pid).glob("*.tif")
                         if not f.name.endswith("_mask.tif"))
        assert numbers == on_disk == list(range(1, len(records) + 1))
        assert len(records) >= 10, "phantoms have at least 16 slices, so 9 -> 10 is exercised"
        names = [r.image_path.name for r in records]
        assert names.index(f"{pid}_10.tif") == names.index(f"{pid}_9.tif") + 1
        assert names != sorted(names), "text order would differ; the test would not catch a text sort"


def test_each_image_is_paired_with_its_own_mask(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    for rec in index.slices():
        assert rec.mask_path.name == rec.image_path.name[:-4] + "_mask.tif"
        assert rec.mask_path.parent == rec.image_path.parent
    # The mask loaded for a slice is that file's content, as 0/1.
    rec = max(index.slices(), key=lambda r: (np.asarray(Image.open(r.mask_path)) > 0).sum())
    expected = (np.asarray(Image.open(rec.mask_path)) > 127).astype(np.uint8)
    got = load_mask(rec)
    assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got, expected)
    assert got.sum() > 0


def test_root_may_be_the_folder_that_contains_kaggle_3m(synthetic_root: Path) -> None:
    assert resolve_root(synthetic_root.parent) == synthetic_root
    assert looks_like_dataset(synthetic_root.parent)
    assert scan_dataset(synthetic_root.parent).root == synthetic_root


# --- clinical codes -----------------------------------------------------------------------------


def test_clinical_codes_are_decoded() -> None:
    raw = pd.DataFrame(
        {
            "Patient": ["TCGA_AA_0001", "TCGA_AA_0002", "TCGA_AA_0003", "TCGA_AA_0004"],
            "neoplasm_histologic_grade": [1, 2, None, 7],
            "gender": [2, 1, None, 3],
            "age_at_initial_pathologic": [34, 61, None, 50],
        }
    )
    out = decode_clinical(raw)
    assert list(out.index) == list(raw["Patient"])
    assert list(out["grade"]) == ["G2", "G3", None, None]
    assert list(out["sex"]) == ["male", "female", None, None]
    assert out.loc["TCGA_AA_0002", "age"] == 61.0 and np.isnan(out.loc["TCGA_AA_0003", "age"])
    # The coded columns are kept next to the decoded ones.
    assert list(out["neoplasm_histologic_grade"][:2]) == [1, 2]
    assert GRADE_CODES == {1: "G2", 2: "G3"} and SEX_CODES == {1: "female", 2: "male"}


def test_clinical_for_matches_data_csv(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    raw = pd.read_csv(synthetic_root / "data.csv").set_index("Patient")
    checked = 0
    for pid in index.patient_ids:
        row = raw.loc[case_id(pid)]
        if pd.isna(row["neoplasm_histologic_grade"]):
            continue
        clin = index.clinical_for(pid)
        assert clin.grade == GRADE_CODES[int(row["neoplasm_histologic_grade"])]
        assert clin.sex == SEX_CODES[int(row["gender"])]
        assert clin.age == float(row["age_at_initial_pathologic"])
        checked += 1
    assert checked == len(index.patients) - 1


def test_patient_with_blank_clinical_fields_still_loads(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    last = index.patient_ids[-1]
    assert index.clinical_for(last) == Clinical()
    assert len(index.patients[last]) >= 16
    row = patient_table(index).set_index("patient_id").loc[last]
    assert pd.isna(row["grade"]) and pd.isna(row["sex"]) and pd.isna(row["age"])
    assert row["slices"] == len(index.patients[last])
    assert index.clinical_for("TCGA_ZZ_9999_20000101") == Clinical(), "a folder without any csv row is unknown"


@pytest.mark.real_data
def test_real_subset_reads_cleanly(real_root: Path) -> None:
    index = scan_dataset(real_root)
    assert not index.problems, _problems(index)
    assert len(index.patients) == 5
    raw = pd.read_csv(real_root / "data.csv").set_index("Patient")
    for pid, records in index.patients.items():
        assert [r.number for r in records] == list(range(1, len(records) + 1))
        code = raw.loc[case_id(pid), "neoplasm_histologic_grade"]
        assert index.clinical_for(pid).grade == (GRADE_CODES[int(code)] if pd.notna(code) else None)
    table = slice_table(index)
    assert len(table) == index.n_slices and (table.tumour_area_px >= 0).all()
    per = table.groupby("patient_id").tumour_area_px.apply(lambda a: (a > 0).sum())
    assert (per > 0).all(), "every real patient has at least one tumour slice"


# --- malformed trees ----------------------------------------------------------------------------


def test_missing_folder_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nowhere")


def test_file_instead_of_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("Patient\n")
    with pytest.raises(DatasetError, match="Not a folder"):
        scan_dataset(tmp_path / "data.csv")


def test_empty_folder_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="No patient folders"):
        scan_dataset(tmp_path)


def test_folder_of_unusable_patients_raises_and_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "TCGA_AA_0001_20000101").mkdir()
    with pytest.raises(DatasetError, match="TCGA_AA_0001_20000101: no usable slices"):
        scan_dataset(tmp_path)


def test_missing_data_csv_is_a_problem_not_a_failure(synthetic_copy: Path) -> None:
    (synthetic_copy / "data.csv").unlink()
    assert not looks_like_dataset(synthetic_copy)
    index = scan_dataset(synthetic_copy)
    assert len(index.patients) == 12
    assert any(p.where == "data.csv" and "missing" in p.message for p in index.problems)
    assert index.clinical_for(index.patient_ids[0]) == Clinical()
    assert patient_table(index)["grade"].isna().all()


def test_unparseable_data_csv_is_listed(synthetic_copy: Path) -> None:
    (synthetic_copy / "data.csv").write_text("Patient,a\nX,1\nY,1,2,3\n")
    index = scan_dataset(synthetic_copy)
    assert any(p.where == "data.csv" and "cannot be parsed" in p.message for p in index.problems)
    assert len(index.patients) == 12


def test_bad_files_are_listed_and_good_patients_still_load(synthetic_copy: Path) -> None:
    pids = sorted(p.name for p in synthetic_copy.iterdir() if p.is_dir())
    n_before = {pid: len(list((synthetic_copy / pid).glob("*_mask.tif"))) for pid in pids}
    a, b, c, d = pids[:4]
    (synthetic_copy / a / f"{a}_3_mask.tif").unlink()  # image without mask
    Image.new("RGB", (128, 128)).save(synthetic_copy / b / f"{b}_2.tif")  # wrong size
    (synthetic_copy / c / f"{c}_5.tif").write_bytes(b"this is not a tiff at all")  # corrupt
    for f in (synthetic_copy / d).iterdir():  # a patient with nothing usable
        f.unlink()
    (synthetic_copy / "notes.txt").write_text("stray files at the top level are ignored")

    index = scan_dataset(synthetic_copy)
    text = _problems(index)
    assert f"{a}/{a}_3.tif: image without mask" in text
    assert f"{b}/{b}_2.tif: wrong image size 128×128" in text
    assert f"{c}/{c}_5.tif: unreadable file" in text
    assert f"{d}: no usable slices" in text
    assert len(index.problems) == 4, text
    assert d not in index.patients
    assert len(index.patients[a]) == n_before[a] - 1 and 3 not in [r.number for r in index.patients[a]]
    assert len(index.patients[b]) == n_before[b] - 1
    assert len(index.patients[c]) == n_before[c] - 1
    assert all(len(index.patients[p]) == n_before[p] for p in pids[4:])
    assert len(slice_table(index)) == index.n_slices


def test_file_from_another_patient_is_skipped(synthetic_copy: Path) -> None:
    a, b = sorted(p.name for p in synthetic_copy.iterdir() if p.is_dir())[:2]
    shutil.copy(synthetic_copy / b / f"{b}_1.tif", synthetic_copy / a / f"{b}_1.tif")
    index = scan_dataset(synthetic_copy)
    assert f"{a}/{b}_1.tif: file name does not match its folder" in _problems(index)


# --- on-disk area cache -------------------------------------------------------------------------


def test_area_cache_is_reused_then_invalidated_when_a_mask_changes(synthetic_copy: Path) -> None:
    pid = _first_patient(synthetic_copy)
    index = scan_dataset(synthetic_copy)
    fingerprint = index.fingerprint()
    first = slice_table(index)
    cached = sorted(cache_dir().glob("areas-*.csv"))
    assert any(fingerprint in p.name for p in cached)
    pd.testing.assert_frame_equal(slice_table(scan_dataset(synthetic_copy)), first)

    row = first[(first.patient_id == pid) & (first.slice == 1)].index[0]
    mask_path = synthetic_copy / pid / f"{pid}_1_mask.tif"
    old = os.stat(mask_path)
    Image.fromarray(np.full((256, 256), 255, np.uint8)).save(mask_path)  # the whole slice is now "tumour"
    os.utime(mask_path, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))  # a coarse clock must not hide the change

    rescanned = scan_dataset(synthetic_copy)
    assert rescanned.fingerprint() != fingerprint
    second = slice_table(rescanned)
    assert second.loc[row, "tumour_area_px"] == 256 * 256 != first.loc[row, "tumour_area_px"]
    others = second.drop(index=row)
    pd.testing.assert_frame_equal(others, first.drop(index=row))


def test_corrupt_area_cache_is_recomputed(synthetic_copy: Path) -> None:
    index = scan_dataset(synthetic_copy)
    good = slice_table(index)
    (cache_dir() / f"areas-{index.fingerprint()}.csv").write_text("patient_id,slice\nx,1\n")
    pd.testing.assert_frame_equal(slice_table(index), good)


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own (the session's is shared by every test)."""
    monkeypatch.setenv("LGG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _touch_later(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_areas_of_a_tree_that_changed_meanwhile_are_not_cached(synthetic_copy: Path, own_cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A mask rewritten while the areas are measured: the result is returned but never stored under the old key."""
    import lggdemo.data.arrays as data

    index = scan_dataset(synthetic_copy)
    victim = index.slices()[-1].mask_path
    real_load_mask = data.load_mask
    calls = []

    def load_mask_while_the_tree_changes(rec):
        calls.append(rec)
        if len(calls) == 1:
            _touch_later(victim)  # as a regeneration or a copy finishing under a running scan would
        return real_load_mask(rec)

    monkeypatch.setattr(data, "load_mask", load_mask_while_the_tree_changes)
    assert len(slice_table(index)) == index.n_slices
    assert list(cache_dir().glob("areas-*.csv")) == []


def test_areas_with_unreadable_masks_are_not_cached(synthetic_copy: Path, own_cache: Path) -> None:
    """An unreadable mask gives -1 for this run only: a ``-1`` row must never outlive it in the cache."""
    index = scan_dataset(synthetic_copy)
    victim = index.slices()[0].mask_path
    victim.write_bytes(victim.read_bytes()[:200])  # truncated after the scan checked its header
    table = slice_table(index)
    assert (table.tumour_area_px == -1).sum() == 1
    assert list(cache_dir().glob("areas-*.csv")) == []
    assert patient_table(index).tumour_slices.notna().all()


def test_arrays_of_a_tree_that_changed_meanwhile_are_not_cached(synthetic_copy: Path, own_cache: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import lggdemo.data.arrays as data

    index = scan_dataset(synthetic_copy)
    victim = index.slices()[-1].image_path
    real_load_image = data.load_image
    calls = []

    def load_image_while_the_tree_changes(rec):
        calls.append(rec)
        if len(calls) == 1:
            _touch_later(victim)
        return real_load_image(rec)

    monkeypatch.setattr(data, "load_image", load_image_while_the_tree_changes)
    arrays = data.slice_arrays(index, 32)
    assert arrays.images.shape == (index.n_slices, 32, 32, 3)
    assert list(own_cache.glob("arrays-*.npz")) == []
    monkeypatch.setattr(data, "load_image", real_load_image)  # not undo(): that would also drop own_cache's setenv
    data.slice_arrays(scan_dataset(synthetic_copy), 32)  # an unchanged tree is cached as before
    assert len(list(own_cache.glob("arrays-*-32.npz"))) == 1


def test_a_patient_folder_removed_during_the_scan_is_a_problem(synthetic_copy: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    gone = _first_patient(synthetic_copy)
    real_iterdir = Path.iterdir

    def iterdir_racing_a_delete(self: Path):
        if self.name == gone:
            shutil.rmtree(self)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir_racing_a_delete)
    index = scan_dataset(synthetic_copy)
    assert gone not in index.patients and f"{gone}: cannot be listed (FileNotFoundError)" in _problems(index)


def test_a_cache_poisoned_with_unreadable_rows_is_measured_again(synthetic_copy: Path, own_cache: Path) -> None:
    """Caches written by earlier versions during a first-start race hold -1 rows; they must not be served."""
    index = scan_dataset(synthetic_copy)
    good = slice_table(index)
    path = cache_dir() / f"areas-{index.fingerprint()}.csv"
    poisoned = good.copy()
    poisoned.loc[poisoned.index[:5], "tumour_area_px"] = -1
    path.write_text(poisoned.to_csv(index=False))
    pd.testing.assert_frame_equal(slice_table(index), good)
    pd.testing.assert_frame_equal(pd.read_csv(path), good)  # and the file is healed
