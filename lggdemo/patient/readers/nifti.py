"""NIfTI patients (``.nii``, ``.nii.gz``, via nibabel): one 3-channel volume, or one file per sequence.

Files are parsed in memory (``.nii.gz`` decompressed with a size cap, so a gzip bomb stops early), and
the header is checked -- dimensions, voxel count -- before the voxel data is touched. Which file is which
sequence is the caller's channel assignment; :func:`guess_roles` proposes one from the file names.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lggdemo.patient.readers.assemble import assemble, check_spatial_shape
from lggdemo.patient.readers.resample import resample_onto, same_grid
from lggdemo.patient.volume import MAX_SLICES, MAX_VOXEL_BYTES, ROLES, Volume, VolumeError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: A role with "mask" means a ground-truth mask file (optional, for the per-volume Dice).
MASK_ROLE = "ground-truth mask"
_ROLE_PATTERNS = (  # first match wins; order matters (t1ce before t1)
    ("FLAIR", re.compile(r"flair", re.I)),
    (MASK_ROLE, re.compile(r"(^|[^a-z])(mask|seg|label|truth)", re.I)),
    ("post-contrast", re.compile(r"t1ce|t1c|t1gd|t1_?gd|post|contrast|gad|\+c|_ce([^a-z]|$)", re.I)),
    ("pre-contrast", re.compile(r"t1|pre", re.I)),
)


def is_nifti_name(name: str) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES)


def stem(name: str) -> str:
    """``a/b/flair.nii.gz`` -> ``flair``."""
    base = Path(name).name
    for suffix in (".nii.gz", ".nii", ".zip"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return Path(base).stem


@dataclass(frozen=True)
class NiftiInput:
    name: str
    image: object  # nibabel.Nifti1Image / Nifti2Image, header parsed, voxels not yet read

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[attr-defined]

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self.image.affine, float)  # type: ignore[attr-defined]


def _gunzip(raw: bytes, name: str) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, MAX_VOXEL_BYTES + 1024 * 1024)
    except zlib.error as exc:
        raise VolumeError(f"{name}: the gzip stream is corrupt ({exc}).") from exc
    if inflater.unconsumed_tail:
        raise VolumeError(f"{name}: decompresses to more than {MAX_VOXEL_BYTES / 2**20:.0f} MiB; refused.")
    if not inflater.eof:  # zlib returns what it could inflate and stays silent about the missing end
        raise VolumeError(f"{name}: the gzip stream stops before its end: the file is cut short (an interrupted "
                          "copy or download?).")
    return out


def load_nifti(source: bytes | Path, name: str | None = None) -> NiftiInput:
    """Parse one NIfTI file (path or bytes); VolumeError for anything that is not a usable 3D/4D image."""
    import nibabel as nib

    label = name or (source.name if isinstance(source, Path) else "image.nii")
    if isinstance(source, Path):
        try:
            if source.stat().st_size > MAX_VOXEL_BYTES:
                raise VolumeError(f"{label}: the file is larger than {MAX_VOXEL_BYTES / 2**20:.0f} MiB.")
            raw = source.read_bytes()
        except OSError as exc:
            raise VolumeError(f"{label}: cannot be read ({exc.strerror or exc}).") from exc
    else:
        raw = bytes(source)
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, label)
    image = None
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            image = cls.from_bytes(raw)
            break
        except Exception:  # noqa: BLE001 -- nibabel raises many kinds for a foreign header
            continue
    if image is None:
        raise VolumeError(f"{label}: not a NIfTI-1 or NIfTI-2 file.")
    shape = tuple(int(s) for s in image.shape)
    check_spatial_shape(shape, label)
    nbytes = int(np.prod(shape)) * image.get_data_dtype().itemsize
    if nbytes > MAX_VOXEL_BYTES:
        raise VolumeError(f"{label}: {nbytes / 2**20:.0f} MiB of voxels; more than {MAX_VOXEL_BYTES / 2**20:.0f} MiB "
                          "is refused.")
    if max(shape[:3]) > 4 * MAX_SLICES:
        raise VolumeError(f"{label}: shape {shape} is larger than any brain MRI this demo takes.")
    if len(shape) == 4 and shape[3] not in (1, 3) or len(shape) > 4:
        raise VolumeError(f"{label}: shape {shape}: a 4D file must hold 3 channels (pre-contrast, FLAIR, "
                          "post-contrast) in its last dimension; time series are not taken.")
    held = len(raw) - int(image.header.get_data_offset())
    if held < nbytes:  # checked here, so that a cut file is named before any voxel is read
        raise VolumeError(f"{label}: holds {max(held, 0)} bytes of voxel data but its header says {nbytes}: the file "
                          "is cut short or damaged (an interrupted copy?).")
    return NiftiInput(label, image)


def guess_roles(names: Sequence[str]) -> dict[str, int | None]:
    """Role -> index into ``names`` from the file names (``flair``, ``t1ce``/``post``, ``t1``/``pre``, ``mask``).

    A single unmatched file is taken as FLAIR; otherwise unmatched files stay unassigned.
    """
    roles: dict[str, int | None] = {r: None for r in (*ROLES, MASK_ROLE)}
    for i, name in enumerate(names):
        for role, pattern in _ROLE_PATTERNS:
            if pattern.search(stem(name)) and roles[role] is None:
                roles[role] = i
                break
    if roles["FLAIR"] is None:
        used = {v for v in roles.values() if v is not None}
        free = [i for i in range(len(names)) if i not in used]
        if free:
            roles["FLAIR"] = free[0]
    return roles


def _data(inp: NiftiInput) -> np.ndarray:
    try:
        arr = np.asanyarray(inp.image.dataobj)  # type: ignore[attr-defined]
    except (OSError, ValueError, EOFError, zlib.error) as exc:  # what nibabel raises for damaged voxel data
        raise VolumeError(f"{inp.name}: the voxel data cannot be read ({exc}).") from exc
    return arr.reshape(arr.shape[:3]) if arr.ndim == 4 and arr.shape[3] == 1 else arr


def nifti_volume(inputs: Sequence[NiftiInput], assignment: Mapping[str, int | None] | None = None,
                 name: str | None = None) -> Volume:
    """One patient from NIfTI files: a single 3-channel (x, y, z, 3) file, or one 3D file per sequence.

    ``assignment`` maps a role (``ROLES`` and ``MASK_ROLE``) to an index into ``inputs`` (None: absent);
    default: :func:`guess_roles`. FLAIR's grid is the volume's: a file on another grid (shape or affine) is
    resampled onto it in world coordinates (linear; nearest for the mask), said so in the notes. No
    registration is done: the affines are trusted.
    """
    if not inputs:
        raise VolumeError("No NIfTI file was given.")
    label = name or stem(inputs[0].name)
    files = [i.name for i in inputs]
    if len(inputs) == 1 and len(inputs[0].shape) == 4 and inputs[0].shape[3] == 3:
        data = _data(inputs[0])
        channels = {role: data[..., c] for c, role in enumerate(ROLES)}
        return assemble(channels, inputs[0].affine, name=label, kind="nifti", files=files,
                        notes=["One 4D file: its last dimension taken as (pre-contrast, FLAIR, post-contrast)."])
    roles = dict(assignment) if assignment is not None else guess_roles(files)
    for role, idx in roles.items():
        if idx is not None and not 0 <= idx < len(inputs):
            raise VolumeError(f"{label}: the {role} assignment points to file {idx}, but there are {len(inputs)}.")
    used = [i for i in roles.values() if i is not None]
    if len(used) != len(set(used)):
        raise VolumeError(f"{label}: one file is assigned to two roles; give each sequence its own file.")
    ref = inputs[roles["FLAIR"]] if roles.get("FLAIR") is not None else None
    if ref is None:
        raise VolumeError(f"{label}: no file is assigned to FLAIR; the models need at least FLAIR.")
    for inp in (inputs[idx] for idx in roles.values() if idx is not None):
        if len(inp.shape) != 3 and not (len(inp.shape) == 4 and inp.shape[3] == 1):
            raise VolumeError(f"{inp.name}: shape {inp.shape}; a per-sequence file must be 3D.")
    notes: list[str] = []

    def on_flair_grid(role: str) -> np.ndarray | None:
        """The role's file on FLAIR's grid: as it is when it shares it, else resampled through the affines."""
        idx = roles.get(role)
        if idx is None:
            return None
        inp = inputs[idx]
        data = _data(inp)
        if same_grid(inp.shape, inp.affine, ref.shape, ref.affine):
            return data
        moved = resample_onto(data, inp.affine, ref.shape[:3], ref.affine, what=f"{inp.name} ({role})",
                              mask=role == MASK_ROLE)
        notes.append(moved.note)
        return moved.data

    channels = {role: on_flair_grid(role) for role in ROLES}
    truth = on_flair_grid(MASK_ROLE)
    notes += [f"{role}: {inputs[idx].name}" for role, idx in roles.items() if idx is not None]
    return assemble(channels, ref.affine, name=label, kind="nifti", files=files, notes=notes, truth=truth)
