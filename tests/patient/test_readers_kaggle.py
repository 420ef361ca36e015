"""Kaggle-layout patients (folder or zip) and the zip safety checks that every zipped input goes through."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from patient_files import dataset_patient, kaggle_zip

from lggdemo.data.imageio import encode_png
from lggdemo.data.kaggle import scan_dataset
from lggdemo.patient.readers import open_files, open_path
from lggdemo.patient.readers.safezip import read_zip
from lggdemo.patient.volume import VolumeError


def test_patient_folder_and_its_zip_match_the_dataset(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    pid = index.patient_ids[1]
    expected = dataset_patient(synthetic_root, 1)
    from_folder = open_path(synthetic_root / pid).volume()
    assert from_folder.name == pid and from_folder.spacing is None and not from_folder.grid.affine_known
    assert np.array_equal(from_folder.slices, expected.slices)
    assert np.array_equal(from_folder.truth, expected.truth)
    from_zip = open_files([(f"{pid}.zip", kaggle_zip(expected))], "ignored").volume()
    assert from_zip.name == pid
    assert np.array_equal(from_zip.slices, expected.slices) and np.array_equal(from_zip.truth, expected.truth)
    no_masks = open_files([("p.zip", kaggle_zip(expected, with_masks=False))], "p").volume()
    assert no_masks.truth is None
    assert any("no voxel size" in n for n in no_masks.provenance.notes)


def test_real_patient_zip(real_root: Path) -> None:
    vol = dataset_patient(real_root, 0)
    back = open_files([("r.zip", kaggle_zip(vol))], "r").volume()
    assert np.array_equal(back.slices, vol.slices) and np.array_equal(back.truth, vol.truth)


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    return buf.getvalue()


SLICE = encode_png(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("name", ["../evil_1.png", "/etc/evil_1.png", "a/../../evil_1.png", "C:/evil_1.png",
                                  "..\\evil_1.png"])
def test_zip_slip_is_refused_before_reading(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused from the central directory: not one member is decompressed, not even the harmless one listed first."""
    slip, fine = _zip({"p/p_1.png": SLICE, name: SLICE}), _zip({"p/p_1.png": SLICE})
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, member: str | zipfile.ZipInfo, *args: object, **kwargs: object) -> object:
        opened.append(getattr(member, "filename", member))
        return real_open(self, member, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(VolumeError, match="escapes the archive's folder"):
        read_zip(slip, "slip.zip")
    assert opened == []
    assert read_zip(fine, "fine.zip") == [("p/p_1.png", SLICE)] and opened == ["p/p_1.png"]


def test_zip_bomb_and_oversize_are_refused_from_the_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _zip({"p/p_1.png": b"\0" * (80 * 2**20)})  # 80 MiB of zeros in ~80 KB
    with pytest.raises(VolumeError, match="zip bomb"):
        read_zip(bomb, "bomb.zip")
    with pytest.raises(VolumeError, match="would decompress to"):
        read_zip(_zip({"a.bin": b"x" * 4096}, zipfile.ZIP_STORED), "big.zip", max_total=1024)
    with pytest.raises(VolumeError, match="not a readable zip"):
        read_zip(b"PK not really", "broken.zip")
    with pytest.raises(VolumeError, match="holds no files"):
        read_zip(_zip({"__MACOSX/._x": b"x"}), "empty.zip")


def test_bad_kaggle_inputs() -> None:
    with pytest.raises(VolumeError, match="not a volume"):
        open_files([("one.zip", _zip({"p/p_1.png": SLICE}))], "one").volume()
    many = {f"p/p_{i}.png": SLICE for i in range(1, 514)}
    with pytest.raises(VolumeError, match="more than 512"):
        open_files([("tall.zip", _zip(many))], "tall").volume()
    with pytest.raises(VolumeError, match="2 folders"):
        open_files([("two.zip", _zip({"a/a_1.png": SLICE, "a/a_2.png": SLICE, "b/b_1.png": SLICE}))], "two").volume()
    with pytest.raises(VolumeError, match="not a patient this app can read"):
        open_files([("text.zip", _zip({"notes.txt": b"hello"}))], "text")
    with pytest.raises(VolumeError, match="no such file"):
        open_path("/nonexistent/patient")
