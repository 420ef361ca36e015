"""Whole-patient readers: whatever a person holds (Kaggle folder or zip, NIfTI files, a DICOM zip) -> a Volume.

Two steps, so that a page can ask which file is which sequence before anything heavy happens::

    source = open_files([("flair.nii.gz", data), ("t1.nii.gz", data2)], "patient7")
    source.options, source.guess          # the files / series a role can be given to, and a proposal
    volume = source.volume({"FLAIR": 0, "pre-contrast": 1, "post-contrast": None})

``open_path`` does the same for a path (the CLI): a folder, a ``.zip``, a ``.nii``/``.nii.gz`` file. Every
refusal is a :class:`~lggdemo.patient.volume.VolumeError` whose message names the input.

Nothing is ignored in silence: a file that is not used (a zip beside NIfTI files, a 3-channel NIfTI beside
per-sequence files, a text file among slices, a file no role was given...) is listed by
:meth:`PatientSource.unused` with the reason. Without a name from the caller, the study is named after its
files (:func:`study_name`: the folder, the common stem of per-sequence files, or the DICOM PatientID).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lggdemo.data.imageio import split_mask_name
from lggdemo.patient.readers.dicom import dicom_volume, guess_series_roles, has_dicom_prefix, scan_dicom_files
from lggdemo.patient.readers.kaggle import is_slice_name, kaggle_volume
from lggdemo.patient.readers.nifti import MASK_ROLE, guess_roles, is_nifti_name, load_nifti, nifti_volume, stem
from lggdemo.patient.readers.safezip import read_zip
from lggdemo.patient.volume import MAX_VOXEL_BYTES, ROLES, Volume, VolumeError

__all__ = ["PatientSource", "Unused", "open_files", "open_path", "study_name", "MASK_ROLE", "ROLES"]


@dataclass(frozen=True)
class Unused:
    """A file of the upload that was not used, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class PatientSource:
    """An opened input: what kind it is, what can be assigned to a channel, and how to build the volume."""

    name: str
    kind: str  # "kaggle" | "nifti" | "dicom"
    options: tuple[str, ...]  # files or series a role can point to (empty: nothing to assign)
    roles: tuple[str, ...]  # the roles the caller may assign
    guess: dict[str, int | None]
    _build: Callable[[Mapping[str, int | None] | None], Volume]
    ignored: tuple[Unused, ...] = ()  # files left out while opening, whatever the assignment

    @property
    def needs_assignment(self) -> bool:
        return len(self.options) > 0

    def unused(self, assignment: Mapping[str, int | None] | None = None) -> list[Unused]:
        """Every file or series of the upload that the volume does not use, with the reason (default: ``guess``)."""
        roles = assignment if assignment is not None else self.guess
        taken = {i for i in roles.values() if i is not None}
        what = "series" if self.kind == "dicom" else "file"
        left = [Unused(option, f"this {what} was given no role (pick one for it above to use it)")
                for i, option in enumerate(self.options) if i not in taken]
        return [*self.ignored, *left]

    def volume(self, assignment: Mapping[str, int | None] | None = None) -> Volume:
        """The Volume; ``assignment`` maps roles to indices into ``options`` (default: ``guess``)."""
        return self._build(assignment if assignment is not None else self.guess)


_ROLE_WORDS = re.compile(r"[._-]*(flair|t1ce|t1c|t1gd|t1|t2|pre|post|contrast|gad|mask|seg|label|truth)?$", re.I)


def study_name(files: Sequence[tuple[str, bytes]] | Sequence[str]) -> str:
    """What a study's outputs are named after, from its file names: the one file's stem, the folder the files
    share, or the stem the files share (``TCGA_X_flair.nii.gz`` + ``TCGA_X_t1.nii.gz`` -> ``TCGA_X``; Kaggle
    slices ``TCGA_X_1.tif``... -> ``TCGA_X``); the stems joined with "+" when they share nothing."""
    names = [f if isinstance(f, str) else f[0] for f in files]
    if not names:
        return "study"
    if len(names) == 1:
        return stem(names[0])
    parts = [PurePosixPath(n.replace("\\", "/")).parts for n in names]
    if all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
        return parts[0][0]
    stems = [split_mask_name(stem(n))[0] for n in names]  # a Kaggle mask is named after its slice
    numbered = [re.fullmatch(r"(.+?)_\d+", s) for s in stems]  # Kaggle slices: <ID>_<n>
    if all(numbered):
        stems = [m.group(1) for m in numbered if m]
    common = os.path.commonprefix(stems).rstrip("._- ")
    if len(common) >= 3:
        return common
    short = sorted({_ROLE_WORDS.sub("", s) or s for s in stems})
    return "+".join(short)[:60] or "study"


def _ignored(names: Sequence[str], reason: str) -> list[Unused]:
    return [Unused(n, reason) for n in names]


def open_files(files: Sequence[tuple[str, bytes]], name: str | None = None) -> PatientSource:
    """(name, bytes) uploads of ONE patient: one or more NIfTI files, a zip, or slices/DICOM files.

    ``name`` (what outputs are named after) defaults to :func:`study_name`; for loose DICOM files, to the
    study's PatientID; a zip is always named after itself (its stem). Files that cannot be part of the patient
    are listed in the source's ``ignored``.
    """
    if not files:
        raise VolumeError(f"{name or 'upload'}: no file was given.")
    zips = [(n, d) for n, d in files if n.lower().endswith(".zip")]
    if len(zips) == len(files):  # one zip (or several: the first is read, the others named), named after itself
        skipped: list[str] = []
        source = open_files(read_zip(zips[0][1], zips[0][0], skipped=skipped), stem(zips[0][0]))
        extra = _ignored([n for n, _ in zips[1:]], f"one patient per upload: only {zips[0][0]} was read")
        extra += _ignored(skipped, "hidden or macOS metadata file inside the zip")
        return _with_ignored(source, extra)
    ignored = _ignored([n for n, _ in zips], "a zip beside other files is not opened: upload one patient per "
                       "upload, either the zip alone or the files alone")
    rest = [(n, d) for n, d in files if not n.lower().endswith(".zip")]
    label = name or study_name(rest)
    nifti = [(n, d) for n, d in rest if is_nifti_name(n)]
    if nifti:
        ignored += _ignored([n for n, _ in rest if not is_nifti_name(n)], "not a NIfTI file (.nii, .nii.gz); "
                            "this upload was read as NIfTI")
        inputs = [load_nifti(d, Path(n).name) for n, d in nifti]
        three = [i for i in inputs if len(i.shape) == 4 and i.shape[3] == 3]
        per_sequence = [i for i in inputs if i not in three]
        if three and not per_sequence:
            chosen = three[0]
            ignored += _ignored([i.name for i in three[1:]], f"one patient per upload: only {chosen.name} (a "
                                "3-channel file) was read")
            return PatientSource(label, "nifti", (), (), {}, lambda _a: nifti_volume([chosen], None, label),
                                 tuple(ignored))
        ignored += _ignored([i.name for i in three], "a 3-channel file (pre-contrast, FLAIR, post-contrast) beside "
                            "per-sequence files is not mixed with them: the per-sequence files were read; upload "
                            "the 3-channel file alone to use it")
        names = tuple(i.name for i in per_sequence)
        return PatientSource(label, "nifti", names, (*ROLES, MASK_ROLE), guess_roles(names),
                             lambda a: nifti_volume(per_sequence, a, label), tuple(ignored))
    slices = [(n, d) for n, d in rest if is_slice_name(n)]
    if slices:
        ignored += _ignored([n for n, _ in rest if not is_slice_name(n)], "not a slice image (.tif, .png, .jpg); "
                            "this upload was read as Kaggle-layout slices")
        keys = {split_mask_name(n)[0] for n, _ in slices if not split_mask_name(n)[1]}
        ignored += _ignored([n for n, _ in slices if split_mask_name(n)[1] and split_mask_name(n)[0] not in keys],
                            "a mask without its slice image")
        return PatientSource(label, "kaggle", (), (), {}, lambda _a: kaggle_volume(slices, label), tuple(ignored))
    if any(has_dicom_prefix(d) or n.lower().endswith(".dcm") for n, d in rest):
        study = scan_dicom_files(rest, label)
        if name is None and study.patient_id:  # loose DICOM files: the PatientID, else FLAIR's description
            study.name = study.patient_id
        elif name is None and study.infos:
            flair = guess_series_roles(study).get("FLAIR")
            study.name = study.infos[flair if flair is not None else 0].description or label
        ignored += [Unused(n, why) for n, why in study.unused]
        return PatientSource(study.name, "dicom", tuple(i.label for i in study.infos), ROLES,
                             guess_series_roles(study), lambda a: dicom_volume(study, a), tuple(ignored))
    shown = ", ".join(n for n, _ in files[:3])
    raise VolumeError(f"{label}: not a patient this app can read ({shown}{'…' if len(files) > 3 else ''}): expected "
                      "NIfTI (.nii, .nii.gz), a DICOM series, or Kaggle-layout slices (.tif/.png) — as files or one .zip. "
                      "A DICOM zip without any image series lands here too.")


def _with_ignored(source: PatientSource, extra: Sequence[Unused]) -> PatientSource:
    if not extra:
        return source
    return PatientSource(source.name, source.kind, source.options, source.roles, source.guess, source._build,
                         (*source.ignored, *extra))


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
