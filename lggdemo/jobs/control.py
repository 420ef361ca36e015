"""The run's lifecycle: start the trainer detached, follow it, decide its outcome once, cancel it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict
from pathlib import Path

from lggdemo import _fs, access
from lggdemo.data.kaggle import DatasetError, DatasetIndex, scan_dataset
from lggdemo.jobs import files
from lggdemo.jobs import settings as settings_module
from lggdemo.jobs.errors import JobBusy, JobError, SettingsError
from lggdemo.jobs.files import CANCEL_FILE, JOB_FILE, LOG_FILE, PROGRESS_FILE, RESULT_FILE, disk_message, read_json
from lggdemo.jobs.process import (
    CHILDREN,
    LOCK,
    is_our_trainer,
    lock_is_live,
    lock_path,
    new_run_dir,
    oom_kill_count,
    read_lock,
    release_lock,
    running_name,
    signal_reason,
    trainer_env,
)
from lggdemo.jobs.progress import read_progress
from lggdemo.jobs.runs import RunInfo, log_tail, run_info
from lggdemo.jobs.settings import EXIT_CANCELLED, CommandBuilder, TrainSettings, validate_settings
from lggdemo.models import weights


def start(
    settings: TrainSettings,
    data: Path,
    *,
    index: DatasetIndex | None = None,
    command: CommandBuilder | None = None,
) -> RunInfo:
    """Validate, take the lock, launch the trainer detached; return the new run.

    ``index`` is the already scanned dataset (the UI has one cached); without it ``data`` is scanned here.
    ``command`` builds the argv (tests inject a fake trainer); by default :func:`trainer_command`.
    Raises :class:`SettingsError` for impossible settings, :class:`JobBusy` when a run is in progress and
    :class:`JobError` (disk full, no permission, cannot execute) -- in every case nothing has changed.
    """
    dataset_error = None
    if index is None:
        try:
            index = scan_dataset(data)
        except DatasetError as exc:
            dataset_error = str(exc)
    problems = validate_settings(settings, index, dataset_error=dataset_error)
    if problems:
        raise SettingsError(problems)
    build = command or settings_module.trainer_command  # looked up at call time: tests swap it
    with LOCK:
        busy = current()
        if busy is not None:
            raise JobBusy(f"A training run ({busy.name}) is already in progress: wait for it or cancel it first.")
        lock_file = lock_path()
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise JobBusy("Another training run is starting right now: wait a moment and try again.") from None
        except OSError as exc:
            raise JobError(disk_message(exc, "taking the training lock")) from exc
        run_dir: Path | None = None
        try:
            try:
                os.write(fd, json.dumps({"owner": os.getpid(), "created": time.time()}).encode())
            finally:
                os.close(fd)
            run_dir = new_run_dir()
            source = weights.active_dir()  # pinned now: activating another run meanwhile must not change it
            complete_from = source if settings.task != "all" and weights.is_complete(source) else None
            paths = {"data": Path(index.root if index else data), "out": run_dir, "progress": run_dir / PROGRESS_FILE,
                     "complete_from": complete_from}  # fmt: skip
            argv = build(settings, **paths)
            job = {"name": run_dir.name, "created": time.time(), "settings": asdict(settings),
                   "data": str(paths["data"]), "dataset_patients": len(index.patients) if index else None,
                   "complete_from": str(complete_from) if complete_from else None, "command": argv,
                   "oom_kills_at_start": oom_kill_count()}  # fmt: skip
            files.write_json(run_dir / JOB_FILE, job)
            env = trainer_env(os.environ)
            with open(run_dir / LOG_FILE, "ab") as log:
                proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=_fs.PROJECT_ROOT, env=env, start_new_session=True,
                )  # fmt: skip
            CHILDREN[run_dir] = proc
            files.write_json(
                lock_file, {"run": run_dir.name, "pid": proc.pid, "owner": os.getpid(), "created": job["created"]}
            )
        except OSError as exc:
            child = CHILDREN.pop(run_dir, None) if run_dir is not None else None
            if child is not None:  # launched, but its lock could not be written: an untracked job must not run
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            lock_path().unlink(missing_ok=True)
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained: leave no half-made run behind
            raise JobError(disk_message(exc, "starting the run")) from exc
        threading.Thread(target=_wait_and_finish, args=(run_dir, proc), name=f"lgg-train-{run_dir.name}",
                         daemon=True).start()  # fmt: skip
        return run_info(run_dir)


def _wait_and_finish(run_dir: Path, proc: subprocess.Popen[bytes]) -> None:
    """Reap the trainer the moment it ends, so the outcome (and activation) does not wait for a page view."""
    code = proc.wait()
    finish(run_dir, code)


def finish(run_dir: Path, exit_code: int | None) -> RunInfo:
    """Decide the outcome of an ended run once, activate it when it succeeded, release the lock.

    ``exit_code`` is ``None`` when this process did not see the trainer end (the server restarted):
    the events and the folder's completeness decide then.
    """
    run_dir = Path(run_dir)
    with LOCK:
        if (run_dir / RESULT_FILE).is_file():
            release_lock(run_dir.name)
            return run_info(run_dir)
        CHILDREN.pop(run_dir, None)
        progress = read_progress(run_dir / PROGRESS_FILE)
        final = progress.final or {}
        kind = final.get("event")
        cancel_asked = (run_dir / CANCEL_FILE).exists()
        complete = weights.is_complete(run_dir)
        activated = False
        if (exit_code == 0 or (exit_code is None and kind == "done")) and complete:
            state, message = "succeeded", "Finished"
            if not access.auto_activate():  # a shared server: a run never becomes everyone's weights by itself
                message = "Finished; not made active (shared server): the operator activates it on the Train page."
            else:
                try:
                    weights.set_active(run_dir)
                    activated = True
                    message = "Finished; its weights are now active."
                except (weights.WeightsError, OSError) as exc:
                    message = f"Finished, but could not be made active: {exc}"
        elif exit_code == EXIT_CANCELLED or kind == "cancelled" or (cancel_asked and exit_code != 0):
            state, message = "cancelled", "Cancelled; the active weights were left unchanged."
        else:
            state = "failed"
            if kind == "error" and final.get("message"):
                reason = str(final["message"])
            elif exit_code == 0 or kind == "done":
                reason = ("the trainer ended but its folder is not a complete weights folder "
                          "(both models and a matching card are needed; there may have been no model to copy the "
                          "other task's weights from)")  # fmt: skip
            elif exit_code is None:
                reason = "the trainer stopped without a final event (killed, or the server restarted)"
            elif exit_code < 0:
                reason = signal_reason(-exit_code, (read_json(run_dir / JOB_FILE) or {}).get("oom_kills_at_start"))
            else:
                tail = log_tail(run_dir, lines=1).strip()
                reason = f"the trainer exited with code {exit_code}" + (f": {tail}" if tail else "")
            message = f"Failed: {reason}. The active weights were left unchanged."
        result = {"state": state, "exit_code": exit_code, "message": message, "activated": activated,
                  "finished": time.time(), "dismissed": False}  # fmt: skip
        try:
            files.write_json(run_dir / RESULT_FILE, result)
        except OSError:
            pass  # disk full: the outcome is derived again from the same files next time
        release_lock(run_dir.name)
        return run_info(run_dir, result=result)


def current() -> RunInfo | None:
    """The run in progress, or ``None``. A stale lock (dead, zombie or foreign pid) is cleared on the way."""
    with LOCK:
        lock = read_lock()
        if lock is None:
            return None
        if lock_is_live(lock):
            return run_info(_fs.runs_dir() / str(lock["run"]), lock=lock) if lock.get("run") else None
        run_dir = _fs.runs_dir() / str(lock["run"]) if lock.get("run") else None
        child = CHILDREN.get(run_dir) if run_dir else None
        if run_dir is not None and run_dir.is_dir():
            finish(run_dir, child.poll() if child is not None else None)
        lock_path().unlink(missing_ok=True)
        return None


def wait(timeout: float | None = None, poll_s: float = 0.2) -> RunInfo | None:
    """Block until no run is in progress (for scripts and tests); return how the last run ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    name = running_name()
    while current() is not None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the training run is still in progress")
        time.sleep(poll_s)
    return run_info(_fs.runs_dir() / name) if name else latest_run()


def cancel(*, force: bool = False) -> RunInfo:
    """Ask the running trainer to stop (SIGTERM: it stops between steps); ``force`` kills it (SIGKILL)."""
    with LOCK:
        lock = read_lock()
        run = current()
        if run is None or not lock or not isinstance(lock.get("pid"), int):
            raise JobError("No training run is in progress.")
        try:
            (run.path / CANCEL_FILE).write_text(f"{time.time()}\n")
        except OSError:
            pass  # the signal matters, the marker only explains it
        pid = int(lock["pid"])
        if not is_our_trainer(pid, run.path) and CHILDREN.get(run.path) is None:
            current()
            raise JobError("The training run has already ended.")
        try:
            os.killpg(pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise JobError(f"Not allowed to stop the trainer (pid {pid}): {exc}") from exc
        return run_info(run.path, lock=lock)


def list_runs() -> list[RunInfo]:
    """Every run folder, newest first (settles a finished or stale run first)."""
    current()
    base = _fs.runs_dir()
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    runs = [run_info(p) for p in folders if (p / JOB_FILE).is_file() or (p / weights.CARD_FILE).is_file()]
    return sorted(runs, key=lambda r: (r.created, r.name), reverse=True)


def latest_run() -> RunInfo | None:
    runs = list_runs()
    return runs[0] if runs else None

