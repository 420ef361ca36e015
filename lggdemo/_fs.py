"""Files the app writes and shares: the project, runs and cache folders, a lock across threads and processes, atomic writes.

Every package that writes (caches, weights, runs, exports, corrections) goes through these three, so a
reader never sees half a file and two processes sharing a cache never trip over each other.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt  # type: ignore[no-redef]


#: The checkout (weights/, runs/ and the CLIs' working folder live under it).
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """Where sidebar retraining writes its runs (never over the bundled ``weights/``)."""
    return Path(os.environ.get("LGG_RUNS_DIR") or PROJECT_ROOT / "runs")


def cache_dir() -> Path:
    """Caches live outside the dataset, which may be read-only (a shared or mounted copy)."""
    base = Path(os.environ.get("LGG_CACHE_DIR") or Path.home() / ".cache" / "lggdemo")
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across threads and processes alike.

    ``flock`` locks belong to an open file description, so two threads that each open the file exclude
    each other just as two processes do; the kernel drops the lock if its holder dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        else:  # Windows: lock the first byte (msvcrt retries for about 10 s, then raises OSError)
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            else:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; the file should read like any other
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
