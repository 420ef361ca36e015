"""The files of a run folder and how they are read and written (whole files, temp-then-rename)."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from lggdemo import _fs
from lggdemo._fs import atomic_write_bytes

LOCK_FILE = "job.lock"
JOB_FILE = "job.json"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "log.txt"
RESULT_FILE = "result.json"
CANCEL_FILE = "cancel.requested"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, default=str) + "\n").encode())


def same_path(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def disk_message(exc: OSError, what: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"The disk is full while {what} ({exc.filename or _fs.runs_dir()}). Free some space and try again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"No permission while {what} ({exc.filename or _fs.runs_dir()}): the runs folder must be writable."
    return f"Could not finish {what}: {exc.strerror or exc}."

