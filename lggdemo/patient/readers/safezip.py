"""Reading an uploaded ``.zip`` in memory, refusing what could harm the machine before anything is read.

Checks made on the central directory alone (``ZipInfo``), before a single member is decompressed:
member count, every name (absolute paths, ``..`` components, drive letters: a path escaping its folder),
the declared decompressed total, and the compression ratio (a zip bomb). Members are then read into
memory -- never extracted -- and ``zipfile`` stops each one at its declared size, so a header that lies
about it cannot make more bytes appear.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

from lggdemo.patient.volume import MAX_VOXEL_BYTES, VolumeError

#: Declared decompressed bytes above this are refused (a 512-slice 512² 16-bit DICOM series is 256 MiB).
MAX_ZIP_TOTAL = MAX_VOXEL_BYTES
MAX_ZIP_MEMBERS = 10_000
#: Whole-archive ratio above which a large archive counts as a bomb. Masks of zeros deflate ~500:1, so the
#: ratio alone is not a verdict: it only refuses archives that would also expand past ``BOMB_MIN_BYTES``.
MAX_RATIO = 100.0
BOMB_MIN_BYTES = 64 * 1024 * 1024
_SKIP_PREFIXES = ("__MACOSX/",)


def check_member_name(name: str, archive: str) -> None:
    """Refuse a member whose path would land outside the archive's folder if it were extracted."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in parts:
        raise VolumeError(f"{archive}: the member path {name!r} escapes the archive's folder "
                          "(absolute or '..'); the archive was not read.")


def read_zip(source: bytes | Path, name: str | None = None, *, max_total: int = MAX_ZIP_TOTAL,
             skipped: list[str] | None = None) -> list[tuple[str, bytes]]:
    """(member name, bytes) for every file of a zip, in archive order; VolumeError for anything unsafe.

    Hidden files and macOS ``__MACOSX/`` metadata are left out; their names are appended to ``skipped`` when
    it is given, so that a caller can say what was not read.
    """
    archive = name or (source.name if isinstance(source, Path) else "archive.zip")
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VolumeError(f"{archive}: not a readable zip archive ({exc}).") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise VolumeError(f"{archive}: {len(infos)} members; more than {MAX_ZIP_MEMBERS} are refused.")
        for info in infos:
            check_member_name(info.filename, archive)
        files = [i for i in infos if not i.is_dir() and not i.filename.startswith(_SKIP_PREFIXES)
                 and not PurePosixPath(i.filename).name.startswith(".")]
        if skipped is not None:
            skipped += [i.filename for i in infos if not i.is_dir() and i not in files]
        total = sum(i.file_size for i in files)
        packed = sum(i.compress_size for i in files)
        if total > max_total:
            raise VolumeError(f"{archive}: would decompress to {total / 2**20:.0f} MiB; more than "
                              f"{max_total / 2**20:.0f} MiB is refused.")
        if total > BOMB_MIN_BYTES and total > MAX_RATIO * max(packed, 1):
            raise VolumeError(f"{archive}: looks like a zip bomb ({total / 2**20:.0f} MiB from "
                              f"{packed / 2**20:.1f} MiB, ratio {total / max(packed, 1):.0f}:1); not read.")
        out = []
        for info in files:
            try:
                out.append((info.filename, zf.read(info)))
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                raise VolumeError(f"{archive}: member {info.filename} cannot be read ({exc}).") from exc
    if not out:
        raise VolumeError(f"{archive}: the archive holds no files.")
    return out
