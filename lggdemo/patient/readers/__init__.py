"""Whole-patient readers: whatever a person holds (Kaggle folder or zip, NIfTI files, a DICOM zip) -> a Volume.

Two steps, so that a page can ask which file is which sequence before anything heavy happens::

    source = open_files([("flair.nii.gz", data), ("t1.nii.gz", data2)], "patient7")
    source.options, source.guess          # the files / series a role can be given to, and a proposal
    volume = source.volume({"FLAIR": 0, "pre-contrast": 1, "post-contrast": None})

``open_path`` does the same for a path (the CLI): a folder, a ``.zip``, a ``.nii``/``.nii.gz`` file. Every
refusal is a :class:`~lggdemo.patient.volume.VolumeError` whose message names the input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lggdemo.patient.readers.dicom import dicom_volume, guess_series_roles, has_dicom_prefix, scan_dicom_files
from lggdemo.patient.readers.kaggle import is_slice_name, kaggle_volume
from lggdemo.patient.readers.nifti import MASK_ROLE, guess_roles, is_nifti_name, load_nifti, nifti_volume, stem
from lggdemo.patient.readers.safezip import read_zip
from lggdemo.patient.volume import MAX_VOXEL_BYTES, ROLES, Volume, VolumeError

__all__ = ["PatientSource", "open_files", "open_path", "MASK_ROLE", "ROLES"]


@dataclass(frozen=True)
class PatientSource:
    """An opened input: what kind it is, what can be assigned to a channel, and how to build the volume."""

    name: str
    kind: str  # "kaggle" | "nifti" | "dicom"
    options: tuple[str, ...]  # files or series a role can point to (empty: nothing to assign)
    roles: tuple[str, ...]  # the roles the caller may assign
    guess: dict[str, int | None]
    _build: Callable[[Mapping[str, int | None] | None], Volume]

    @property
    def needs_assignment(self) -> bool:
        return len(self.options) > 0

    def volume(self, assignment: Mapping[str, int | None] | None = None) -> Volume:
        """The Volume; ``assignment`` maps roles to indices into ``options`` (default: ``guess``)."""
        return self._build(assignment if assignment is not None else self.guess)


def open_files(files: Sequence[tuple[str, bytes]], name: str) -> PatientSource:
    """(name, bytes) uploads of ONE patient: one or more NIfTI files, a zip, or slices/DICOM files."""
    if not files:
        raise VolumeError(f"{name}: no file was given.")
    if len(files) == 1 and files[0][0].lower().endswith(".zip"):
        return open_files(read_zip(files[0][1], files[0][0]), stem(files[0][0]))
    nifti = [(n, d) for n, d in files if is_nifti_name(n)]
    if nifti:
        inputs = [load_nifti(d, Path(n).name) for n, d in nifti]
        if len(inputs) == 1 and len(inputs[0].shape) == 4 and inputs[0].shape[3] == 3:
            return PatientSource(name, "nifti", (), (), {}, lambda _a: nifti_volume(inputs, None, name))
        names = tuple(i.name for i in inputs)
        return PatientSource(name, "nifti", names, (*ROLES, MASK_ROLE), guess_roles(names),
                             lambda a: nifti_volume(inputs, a, name))
    slices = [(n, d) for n, d in files if is_slice_name(n)]
    if slices:
        return PatientSource(name, "kaggle", (), (), {}, lambda _a: kaggle_volume(slices, name))
    if any(has_dicom_prefix(d) or n.lower().endswith(".dcm") for n, d in files):
        study = scan_dicom_files(files, name)
        return PatientSource(name, "dicom", tuple(i.label for i in study.infos), ROLES, guess_series_roles(study),
                             lambda a: dicom_volume(study, a))
    shown = ", ".join(n for n, _ in files[:3])
    raise VolumeError(f"{name}: not a patient this app can read ({shown}{'…' if len(files) > 3 else ''}): expected "
                      "NIfTI (.nii, .nii.gz), a DICOM series, or Kaggle-layout slices (.tif/.png) — as files or one .zip. "
                      "A DICOM zip without any image series lands here too.")


def _read_folder(folder: Path) -> list[tuple[str, bytes]]:
    files, total = [], 0
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            total += p.stat().st_size
            if total > MAX_VOXEL_BYTES:
                raise VolumeError(f"{folder.name}: more than {MAX_VOXEL_BYTES / 2**20:.0f} MiB of files; refused.")
            files.append((str(p.relative_to(folder)), p.read_bytes()))
    return files


def open_path(path: str | Path) -> PatientSource:
    """One patient from a path: a folder (Kaggle slices, NIfTI files or DICOM files), a .zip, or a NIfTI file."""
    p = Path(path)
    if not p.exists():
        raise VolumeError(f"{p}: no such file or folder.")
    try:
        if p.is_dir():
            return open_files(_read_folder(p), p.name)
        if p.suffix.lower() == ".zip":
            return open_files(read_zip(p), stem(p.name))
        if is_nifti_name(p.name):
            if p.stat().st_size > MAX_VOXEL_BYTES:
                raise VolumeError(f"{p}: larger than {MAX_VOXEL_BYTES / 2**20:.0f} MiB; refused.")
            return open_files([(p.name, p.read_bytes())], stem(p.name))
    except OSError as exc:
        raise VolumeError(f"{p}: cannot be read ({exc.strerror or exc}).") from exc
    raise VolumeError(f"{p}: expected a folder, a .zip or a NIfTI file (.nii, .nii.gz).")
