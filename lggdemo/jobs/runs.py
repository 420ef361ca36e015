"""One run folder as the pages see it (:class:`RunInfo`), and what can be done to a past run."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lggdemo import _fs
from lggdemo.jobs.errors import JobError
from lggdemo.jobs.files import (
    CANCEL_FILE,
    JOB_FILE,
    LOG_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    disk_message,
    read_json,
    same_path,
    write_json,
)
from lggdemo.jobs.process import running_name
from lggdemo.jobs.progress import RunProgress, read_progress
from lggdemo.models import weights
from lggdemo.models.card import ModelCard

State = str  # "running" | "succeeded" | "failed" | "cancelled"


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    created: float
    settings: dict[str, Any]
    state: State
    message: str = ""
    exit_code: int | None = None
    activated: bool = False  # this run was made active when it finished
    finished: float | None = None
    dismissed: bool = False
    cancel_requested: float | None = None  # when Cancel was pressed
    progress: RunProgress = field(default_factory=RunProgress)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def seconds(self) -> float | None:
        if self.progress.final and isinstance(self.progress.final.get("seconds"), (int, float)):
            return float(self.progress.final["seconds"])
        return (self.finished - self.created) if self.finished else None

    @property
    def metrics(self) -> dict[str, Any]:
        """The trainer's final metrics per model (the ``done`` event), else the model card's."""
        if self.progress.final and isinstance(self.progress.final.get("metrics"), dict):
            return dict(self.progress.final["metrics"])
        card = self.card()
        return card.metrics() if card else {}

    def card(self) -> ModelCard | None:
        try:
            return weights.load_card(self.path)
        except weights.WeightsError:
            return None

    @property
    def complete(self) -> bool:
        return weights.is_complete(self.path)

    @property
    def active(self) -> bool:
        return same_path(weights.active_dir(), self.path)


def run_info(run_dir: Path, *, result: dict[str, Any] | None = None, lock: dict[str, Any] | None = None) -> RunInfo:
    run_dir = Path(run_dir)
    job = read_json(run_dir / JOB_FILE) or {}
    result = result if result is not None else read_json(run_dir / RESULT_FILE)
    progress = read_progress(run_dir / PROGRESS_FILE)
    cancel = None
    try:
        cancel = (run_dir / CANCEL_FILE).stat().st_mtime
    except OSError:
        pass
    created = job.get("created")
    if not isinstance(created, (int, float)):
        try:
            created = run_dir.stat().st_mtime
        except OSError:
            created = 0.0
    if result:
        state, message = str(result.get("state", "failed")), str(result.get("message", ""))
    elif lock is not None or running_name() == run_dir.name:
        state, message = "running", "Cancelling…" if cancel else "Training…"
    else:  # a folder made outside the job manager, or a run whose outcome could not be written
        state = "succeeded" if weights.is_complete(run_dir) else "failed"
        message = "" if state == "succeeded" else "Incomplete run folder (no outcome recorded)."
    return RunInfo(
        name=run_dir.name, path=run_dir, created=float(created), settings=dict(job.get("settings", {})),
        state=state, message=message, exit_code=(result or {}).get("exit_code"),
        activated=bool((result or {}).get("activated")), finished=(result or {}).get("finished"),
        dismissed=bool((result or {}).get("dismissed")), cancel_requested=cancel, progress=progress,
    )  # fmt: skip


def find_run(name: str) -> RunInfo:
    base = _fs.runs_dir()
    path = base / name
    if os.sep in name or name in ("", ".", "..") or not path.is_dir():
        raise JobError(f"No run named {name!r} in {base}.")
    return run_info(path)


def activate(name: str) -> RunInfo:
    """Make a past run's weights the active ones; only a complete folder is accepted."""
    run = find_run(name)
    if not weights.is_complete(run.path):
        raise JobError(f"Run {name} is not a complete weights folder (both models and a matching model card).")
    try:
        weights.set_active(run.path)
    except weights.WeightsError as exc:
        raise JobError(str(exc)) from exc
    except OSError as exc:
        raise JobError(disk_message(exc, "writing the active-weights pointer")) from exc
    return run_info(run.path)


def restore_bundled() -> None:
    """Point the app back at the bundled ``weights/`` (removing the pointer: works even when it is corrupt)."""
    try:
        weights.set_active(None)
    except OSError as exc:
        raise JobError(disk_message(exc, "removing the active-weights pointer")) from exc


def dismiss(name: str) -> None:
    """Hide a finished run's outcome banner (recorded on disk, so every tab agrees)."""
    run = find_run(name)
    result = read_json(run.path / RESULT_FILE)
    if result is None or result.get("dismissed"):
        return
    result["dismissed"] = True
    try:
        write_json(run.path / RESULT_FILE, result)
    except OSError as exc:
        raise JobError(disk_message(exc, "saving the run's outcome")) from exc


def delete_run(name: str) -> None:
    """Remove a past run's folder (to free space); never the running or the active one."""
    run = find_run(name)
    if run.running:
        raise JobError(f"Run {name} is in progress: cancel it first.")
    if run.active:
        raise JobError(
            f"Run {name} holds the active weights: activate another run or restore the bundled weights first."
        )
    shutil.rmtree(run.path, ignore_errors=True)


def log_tail(run: Path | RunInfo, lines: int = 30, max_bytes: int = 32_768) -> str:
    """The last lines of a run's log (carriage-return progress bars collapsed to their last state)."""
    path = (run.path if isinstance(run, RunInfo) else Path(run)) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    rows = [row.rstrip("\r").rsplit("\r", 1)[-1] for row in data.split("\n")]  # a bar's last state only
    if rows and not rows[-1]:
        rows.pop()
    if size > max_bytes and rows:
        rows = rows[1:]  # the first row was cut in the middle
    return "\n".join(rows[-lines:])

