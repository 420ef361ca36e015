"""Background retraining: the trainer CLI as a detached subprocess, its whole state kept on disk.

Why on disk and not in ``st.session_state``: a Streamlit session is one browser tab. Closing the tab
must not kill a twenty-minute run, and reopening the app (or another tab) must show it. So every
page asks this module, which reads files under :func:`lggdemo.weights.runs_dir`::

    runs/
      job.lock                 exists while a run is in progress: {"run", "pid", ...} (one job at a time)
      active.json              the active-weights pointer (owned by lggdemo.weights)
      20261125-181500/         one folder per run, never over the bundled weights/
        job.json               settings, dataset, the exact command
        progress.jsonl         the trainer's JSON events (start / step / epoch / done / error / cancelled)
        log.txt                the trainer's stdout + stderr
        cancel.requested       present once somebody pressed Cancel
        result.json            the outcome, written once when the trainer has ended
        segmentation.safetensors, grade.safetensors, model_card.json   (the trainer's output)

The trainer runs in its own session (``start_new_session=True``): Ctrl-C on the server does not reach
it, and Cancel can signal its whole process group (DataLoader workers included). The lock names the
trainer's pid *and* its run folder, so a lock left behind by a killed server or a killed trainer is
recognised as stale (pid gone, a zombie, or a pid reused by a process that is not this run's trainer).

Outcome rules: a run is *succeeded* only when the trainer exited 0 (or, when nobody saw its exit
code, said ``done``) **and** ``weights.is_complete`` accepts its folder; only then is it activated.
Failed or cancelled runs never touch the active pointer, so the weights in use stay exactly as they were.

Example::

    from lggdemo import jobs
    errors = jobs.validate_settings(jobs.TrainSettings(epochs=1, image_size=64), index)
    run = jobs.start(jobs.TrainSettings(epochs=1, image_size=64), index.root, index=index)
    jobs.current()           # RunInfo while it runs (with .progress), None afterwards
    jobs.cancel()            # SIGTERM: the trainer stops between steps and exits 130
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lggdemo import weights
from lggdemo.data import DatasetError, DatasetIndex, atomic_write_bytes, scan_dataset

#: Task codes of ``python -m lggdemo.train --task`` and how the UI names them.
TASKS: dict[str, str] = {"all": "Both", "seg": "Segmentation", "grade": "Grade"}
PRESETS: tuple[str, ...] = ("quick", "full")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: Above the slices' 256×256 the trainer only upsamples, and refuses.
MAX_IMAGE_SIZE = 256
LOCK_FILE = "job.lock"
JOB_FILE = "job.json"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "log.txt"
RESULT_FILE = "result.json"
CANCEL_FILE = "cancel.requested"
#: Exit code of the trainer when SIGTERM/SIGINT stopped it between steps.
EXIT_CANCELLED = 130
EXIT_INVALID = 2
#: A lock still without a trainer pid is being written by ``start``; older than this it is debris.
STARTING_GRACE_S = 60.0

State = str  # "running" | "succeeded" | "failed" | "cancelled"


class JobError(RuntimeError):
    """A request the job manager refuses, with a message meant for the person who made it."""


class JobBusy(JobError):
    """A second run was asked for while one is in progress."""


class SettingsError(JobError):
    """Settings that cannot train (checked before anything is launched)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TrainSettings:
    """What the sidebar lets a person choose; ``None`` means the preset's default."""

    task: str = "all"  # "seg" | "grade" | "all"
    preset: str = "quick"  # "quick" | "full"
    epochs: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "mps"
    seed: int = 0


@dataclass(frozen=True)
class Progress:
    """What the trainer's event file says so far (a partial last line is not read yet)."""

    started: dict[str, Any] | None = None  # the "start" event
    models: tuple[str, ...] = ()
    model: str | None = None  # the model being trained now
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    eta_s: float | None = None  # remaining seconds as of ``eta_time``
    eta_time: float | None = None
    phase: str | None = None  # the trainer's label of the current fit ("final", "cv fusion fold 2/4")
    fraction: float = 0.0  # 0..1 over all models (and cross-validation fits) of the run
    history: tuple[dict[str, Any], ...] = ()  # every "epoch" event, in order (cross-validation fits included)
    notes: tuple[str, ...] = ()  # the trainer's "info" messages
    steps_history: tuple[dict[str, Any], ...] = ()  # {"model", "phase", "x": epochs done as a float, "loss"}
    final: dict[str, Any] | None = None  # the "done" / "error" / "cancelled" event
    events: int = 0
    bad_lines: int = 0

    def eta_now(self, now: float | None = None) -> float | None:
        """The ETA counted down from when the trainer last reported it."""
        if self.eta_s is None or self.eta_time is None:
            return None
        return max(0.0, self.eta_s - max(0.0, (now or time.time()) - self.eta_time))


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
    progress: Progress = field(default_factory=Progress)

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
        """The trainer's final metrics (the ``done`` event), else the model card's."""
        if self.progress.final and isinstance(self.progress.final.get("metrics"), dict):
            return dict(self.progress.final["metrics"])
        card = self.card()
        return dict(card.get("metrics", {})) if card else {}

    def card(self) -> dict[str, Any] | None:
        try:
            return weights.read_card(self.path)
        except weights.WeightsError:
            return None

    @property
    def complete(self) -> bool:
        return weights.is_complete(self.path)

    @property
    def active(self) -> bool:
        return _same(weights.active_dir(), self.path)


# --- validation -------------------------------------------------------------------------------------


def validate_settings(
    settings: TrainSettings, index: DatasetIndex | None, *, dataset_error: str | None = None
) -> list[str]:
    """Every reason these settings cannot train, in words for the sidebar; empty when they can.

    Checked here, before launching, so a person is told at once instead of reading a trainer log. The
    sidebar's own fields get one message each; the trainer's rules (``TrainConfig.validate``, its
    patient-level split) are then asked as well, so nothing it would refuse gets launched.
    """
    problems: list[str] = []
    if settings.task not in TASKS:
        problems.append(f"Unknown task {settings.task!r}: choose segmentation, grade or both.")
    if settings.preset not in PRESETS:
        problems.append(f"Unknown preset {settings.preset!r}: choose quick or full.")
    if settings.epochs is not None and settings.epochs < 1:
        problems.append(f"Epochs must be at least 1 (got {settings.epochs}).")
    if settings.image_size is not None and (
        settings.image_size < 32 or settings.image_size % 32 or settings.image_size > MAX_IMAGE_SIZE
    ):
        problems.append(
            f"Image size must be a multiple of 32 between 32 and {MAX_IMAGE_SIZE} "
            f"(the U-Net halves it five times; the slices are 256×256); got {settings.image_size}."
        )
    if settings.batch_size is not None and settings.batch_size < 2:
        problems.append(
            f"Batch size must be at least 2 (batch normalisation needs two samples); got {settings.batch_size}."
        )
    if settings.device not in DEVICES:
        problems.append(f"Unknown device {settings.device!r}: choose auto, cpu, cuda or mps.")
    else:
        from lggdemo.device import DeviceError, choose_device

        try:
            choose_device(settings.device)
        except DeviceError as exc:
            problems.append(str(exc))
    from lggdemo.train import TrainConfig, TrainError, patient_split  # heavy (torch, smp): only when asked

    config = None
    if not problems:
        try:
            config = TrainConfig.from_preset(
                settings.preset, task=settings.task, image_size=settings.image_size, batch_size=settings.batch_size,
                seg_epochs=settings.epochs, grade_epochs=settings.epochs, device=settings.device, seed=settings.seed,
            )  # fmt: skip
            config.validate()
        except (TrainError, TypeError) as exc:
            problems.append(f"The trainer refuses these settings: {exc}")
    if dataset_error:
        problems.append(f"No usable dataset: {dataset_error}")
    elif index is None:
        problems.append("No dataset to train on: choose a kaggle_3m folder in the sidebar.")
    else:
        try:
            patient_split(index, config.val_fraction if config else TrainConfig.val_fraction, settings.seed)
        except TrainError as exc:
            problems.append(f"The dataset is too small: {exc}")
        else:
            if settings.task in ("grade", "all"):
                grades = {index.clinical_for(p).grade for p in index.patient_ids} - {None}
                if len(grades) < 2:
                    problems.append(
                        "The grade model needs patients of both grades (G2 and G3) in data.csv; "
                        f"found {', '.join(sorted(grades)) or 'none'}."
                    )
    return problems


# --- the command ------------------------------------------------------------------------------------

CommandBuilder = Callable[..., list[str]]


def trainer_args(
    settings: TrainSettings, *, data: Path, out: Path, progress: Path, complete_from: Path | None
) -> list[str]:
    """The CLI arguments of ``python -m lggdemo.train`` for these settings (preset defaults left to it)."""
    args = ["--task", settings.task, "--data", str(data), "--out", str(out), "--device", settings.device,
            "--seed", str(settings.seed), "--preset", settings.preset, "--progress-file", str(progress)]  # fmt: skip
    for flag, value in (("--epochs", settings.epochs), ("--image-size", settings.image_size),
                        ("--batch-size", settings.batch_size)):  # fmt: skip
        if value is not None:
            args += [flag, str(int(value))]
    if complete_from is not None:
        args += ["--complete-from", str(complete_from)]
    return args


def trainer_command(settings: TrainSettings, **paths: Any) -> list[str]:
    """The project's trainer, run by this very interpreter (the app's venv)."""
    return [sys.executable, "-m", "lggdemo.train", *trainer_args(settings, **paths)]


# --- files ------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, default=str) + "\n").encode())


def _same(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _disk_message(exc: OSError, what: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"The disk is full while {what} ({exc.filename or weights.runs_dir()}). Free some space and try again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"No permission while {what} ({exc.filename or weights.runs_dir()}): the runs folder must be writable."
    return f"Could not finish {what}: {exc.strerror or exc}."


@dataclass
class _Parse:
    """Where the incremental parse of one progress file stands: bytes consumed and the state so far."""

    identity: tuple[int, int]  # (device, inode): a replaced file is parsed from the start
    offset: int
    values: dict[str, Any]
    key: tuple[int, int]  # (size, mtime) of the last parse
    progress: Progress


_PROGRESS_CACHE: dict[Path, _Parse] = {}


def read_progress(path: Path) -> Progress:
    """Parse the trainer's JSON-lines events. A last line without its newline is still being written: skipped.

    Lines that are not JSON objects are counted in ``bad_lines`` and ignored rather than failing the page.
    Parsing is incremental (only the bytes appended since the last call), because a long run writes
    thousands of events and every open tab asks every second or two.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return Progress()
    key, identity = (st.st_size, st.st_mtime_ns), (st.st_dev, st.st_ino)
    cached = _PROGRESS_CACHE.get(path)
    if cached and cached.identity == identity and cached.key == key:
        return cached.progress
    if not cached or cached.identity != identity or st.st_size < cached.offset:
        values: dict[str, Any] = {"history": [], "notes": [], "step_log": [], "events": 0, "bad_lines": 0}
        cached = _Parse(identity, 0, values, key, Progress())
    try:
        with open(path, "rb") as fh:
            fh.seek(cached.offset)
            raw = fh.read()
    except OSError:
        return cached.progress
    complete, newline, _partial = raw.rpartition(b"\n")
    values = cached.values
    for line in complete.split(b"\n") if newline else []:
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            values["bad_lines"] += 1
            continue
        if not isinstance(ev, dict) or "event" not in ev:
            values["bad_lines"] += 1
            continue
        values["events"] += 1
        _apply_event(values, ev)
    cached.offset += len(complete) + len(newline)
    cached.key = key
    cached.progress = Progress(
        started=values.get("started"), models=tuple(values.get("models", ())), model=values.get("model"),
        epoch=int(values.get("epoch", 0)), epochs=int(values.get("epochs", 0)), step=int(values.get("step", 0)),
        steps=int(values.get("steps", 0)), loss=values.get("loss"), eta_s=_model_eta(values),
        eta_time=values.get("eta_time"), phase=values.get("phase"), fraction=_fraction(values),
        history=tuple(values["history"]), notes=tuple(values["notes"]), steps_history=tuple(values["step_log"]),
        final=values.get("final"), events=values["events"], bad_lines=values["bad_lines"],
    )  # fmt: skip
    _PROGRESS_CACHE[path] = cached
    return cached.progress


def _model_eta(v: dict[str, Any]) -> float | None:
    """The trainer's ETA covers the current fit; with cross-validation, add the fits still to come."""
    eta = v.get("eta_s")
    if eta is None or (v.get("final") or {}).get("event") == "done":
        return eta
    index, count = _phase_position(v.get("phase"), v)
    started, now = v.get("phase_started"), v.get("eta_time")
    if count - index <= 1 or started is None or now is None:
        return eta
    fit_seconds = max(0.0, now - started) + eta
    return eta + (count - index - 1) * fit_seconds


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _apply_event(v: dict[str, Any], ev: dict[str, Any]) -> None:
    kind = ev.get("event")
    if kind == "start":
        v["started"] = ev
        models = ev.get("models")
        if isinstance(models, list):
            v["models"] = [str(m) for m in models]
        if isinstance(ev.get("epochs"), int):
            v["epochs"] = ev["epochs"]
    elif kind in ("step", "epoch"):
        phase = ev.get("phase") if isinstance(ev.get("phase"), str) else None
        if (ev.get("model"), phase) != (v.get("model"), v.get("phase")) or "phase_started" not in v:
            v["phase_started"] = _num(ev.get("time"))
        v["model"] = ev.get("model", v.get("model"))
        v["phase"] = phase
        fold = _FOLD_RE.match(v["phase"] or "")
        if fold:
            v["folds"] = int(fold["k"])
        for k in ("epoch", "epochs", "step", "steps"):
            if isinstance(ev.get(k), int):
                v[k] = ev[k]
        if kind == "step":
            v["loss"] = _num(ev.get("loss"))
            if v["loss"] is not None and v.get("steps"):
                x = max(0, v.get("epoch", 1) - 1) + v.get("step", 0) / v["steps"]
                v["step_log"].append({"model": v["model"], "phase": v["phase"], "x": x, "loss": v["loss"]})
        else:
            v["history"].append(ev)
            v["step"] = v.get("steps", 0)
            if _num(ev.get("train_loss")) is not None:
                v["loss"] = _num(ev.get("train_loss"))
        if _num(ev.get("eta_s")) is not None:
            v["eta_s"], v["eta_time"] = _num(ev["eta_s"]), _num(ev.get("time")) or time.time()
    elif kind == "info" and isinstance(ev.get("message"), str):
        v["notes"].append(ev["message"])
    elif kind in ("done", "error", "cancelled"):
        v["final"] = ev
        if kind == "done":
            v["eta_s"], v["eta_time"] = 0.0, _num(ev.get("time")) or time.time()


#: The trainer's cross-validation fits of the grade model, in the order it runs them ("cv <variant> fold i/k").
CV_VARIANTS = ("fusion", "clinical_only", "image_only")
_FOLD_RE = re.compile(r"^cv (?P<variant>\S+) fold (?P<i>\d+)/(?P<k>\d+)$")


def _phase_position(phase: str | None, v: dict[str, Any]) -> tuple[int, int]:
    """(index, count) of the current fit within its model: the full preset fits the grade model 3k+1 times."""
    if not phase:
        return 0, 1
    m = _FOLD_RE.match(phase)
    if m:
        k = int(m["k"])
        vi = CV_VARIANTS.index(m["variant"]) if m["variant"] in CV_VARIANTS else len(CV_VARIANTS) - 1
        return min(vi * k + int(m["i"]) - 1, len(CV_VARIANTS) * k), len(CV_VARIANTS) * k + 1
    k = v.get("folds")
    return (len(CV_VARIANTS) * k, len(CV_VARIANTS) * k + 1) if phase == "final" and k else (0, 1)


def _fraction(v: dict[str, Any]) -> float:
    final = v.get("final")
    if final and final.get("event") == "done":
        return 1.0
    models = v.get("models") or []
    model, epochs = v.get("model"), v.get("epochs") or 0
    if not model or epochs < 1:
        return 0.0
    n = max(1, len(models))
    mi = models.index(model) if model in models else 0
    steps = v.get("steps") or 0
    fit = (max(0, v.get("epoch", 1) - 1) + (min(v.get("step", 0), steps) / steps if steps else 0.0)) / epochs
    index, count = _phase_position(v.get("phase"), v)
    within = (index + min(1.0, fit)) / count
    return float(min(1.0, max(0.0, (mi + min(1.0, within)) / n)))


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


# --- processes --------------------------------------------------------------------------------------


def _process(pid: int) -> tuple[bool, str | None]:
    """(alive and not a zombie, its command line when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        return False, None  # another user's process cannot be this app's trainer
    except OSError:
        return False, None
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
                return False, None
            return True, (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False, None
    try:  # macOS and other systems without /proc
        out = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return True, None
    row = out.stdout.strip()
    if not row:
        return False, None
    stat, _, command = row.partition(" ")
    return (not stat.startswith("Z")), command.strip() or None


def _is_our_trainer(pid: int, run_dir: Path) -> bool:
    """Alive, and its command line writes into this run's folder (a reused pid would not)."""
    alive, cmdline = _process(pid)
    if not alive:
        return False
    return cmdline is None or (f"{os.sep}{run_dir.name}" in cmdline and "--out" in cmdline)


_CHILDREN: dict[Path, subprocess.Popen[bytes]] = {}
_LOCK = threading.RLock()  # one start/finish at a time inside this server process


def _lock_path() -> Path:
    return weights.runs_dir() / LOCK_FILE


def _read_lock() -> dict[str, Any] | None:
    """The lock's content; ``{}`` for a lock that exists but is (still) unreadable."""
    path = _lock_path()
    if not path.exists():
        return None
    return _read_json(path) or {}


def _lock_age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _lock_is_live(lock: dict[str, Any]) -> bool:
    if not lock.get("run"):
        return _lock_age(_lock_path()) < STARTING_GRACE_S  # being written right now, or debris
    run_dir = weights.runs_dir() / str(lock["run"])
    child = _CHILDREN.get(run_dir)
    if child is not None:
        return child.poll() is None
    pid = lock.get("pid")
    if not isinstance(pid, int):
        owner = lock.get("owner")
        return isinstance(owner, int) and _process(owner)[0] and _lock_age(_lock_path()) < STARTING_GRACE_S
    return _is_our_trainer(pid, run_dir)


def _release_lock(run_name: str | None) -> None:
    lock = _read_lock()
    if lock is not None and (run_name is None or lock.get("run") in (None, run_name)):
        _lock_path().unlink(missing_ok=True)


def _new_run_dir() -> Path:
    base = weights.runs_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise JobError(f"Could not create a run folder under {base}.")


# --- the public API ---------------------------------------------------------------------------------


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
    build = command or trainer_command
    with _LOCK:
        busy = current()
        if busy is not None:
            raise JobBusy(f"A training run ({busy.name}) is already in progress: wait for it or cancel it first.")
        lock_path = _lock_path()
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise JobBusy("Another training run is starting right now: wait a moment and try again.") from None
        except OSError as exc:
            raise JobError(_disk_message(exc, "taking the training lock")) from exc
        run_dir: Path | None = None
        try:
            try:
                os.write(fd, json.dumps({"owner": os.getpid(), "created": time.time()}).encode())
            finally:
                os.close(fd)
            run_dir = _new_run_dir()
            source = weights.active_dir()  # pinned now: activating another run meanwhile must not change it
            complete_from = source if settings.task != "all" and weights.is_complete(source) else None
            paths = {"data": Path(index.root if index else data), "out": run_dir, "progress": run_dir / PROGRESS_FILE,
                     "complete_from": complete_from}  # fmt: skip
            argv = build(settings, **paths)
            job = {"name": run_dir.name, "created": time.time(), "settings": asdict(settings),
                   "data": str(paths["data"]), "dataset_patients": len(index.patients) if index else None,
                   "complete_from": str(complete_from) if complete_from else None, "command": argv}  # fmt: skip
            _write_json(run_dir / JOB_FILE, job)
            env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
            with open(run_dir / LOG_FILE, "ab") as log:
                proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=weights.PROJECT_ROOT, env=env, start_new_session=True,
                )  # fmt: skip
            _CHILDREN[run_dir] = proc
            _write_json(
                lock_path, {"run": run_dir.name, "pid": proc.pid, "owner": os.getpid(), "created": job["created"]}
            )
        except OSError as exc:
            child = _CHILDREN.pop(run_dir, None) if run_dir is not None else None
            if child is not None:  # launched, but its lock could not be written: an untracked job must not run
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            _lock_path().unlink(missing_ok=True)
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained: leave no half-made run behind
            raise JobError(_disk_message(exc, "starting the run")) from exc
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
    with _LOCK:
        if (run_dir / RESULT_FILE).is_file():
            _release_lock(run_dir.name)
            return run_info(run_dir)
        _CHILDREN.pop(run_dir, None)
        progress = read_progress(run_dir / PROGRESS_FILE)
        final = progress.final or {}
        kind = final.get("event")
        cancel_asked = (run_dir / CANCEL_FILE).exists()
        complete = weights.is_complete(run_dir)
        activated = False
        if (exit_code == 0 or (exit_code is None and kind == "done")) and complete:
            state, message = "succeeded", "Finished"
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
                reason = f"the trainer was killed by signal {-exit_code}" + (
                    " (out of memory?)" if exit_code == -9 else ""
                )
            else:
                tail = log_tail(run_dir, lines=1).strip()
                reason = f"the trainer exited with code {exit_code}" + (f": {tail}" if tail else "")
            message = f"Failed: {reason}. The active weights were left unchanged."
        result = {"state": state, "exit_code": exit_code, "message": message, "activated": activated,
                  "finished": time.time(), "dismissed": False}  # fmt: skip
        try:
            _write_json(run_dir / RESULT_FILE, result)
        except OSError:
            pass  # disk full: the outcome is derived again from the same files next time
        _release_lock(run_dir.name)
        return run_info(run_dir, result=result)


def run_info(run_dir: Path, *, result: dict[str, Any] | None = None, lock: dict[str, Any] | None = None) -> RunInfo:
    run_dir = Path(run_dir)
    job = _read_json(run_dir / JOB_FILE) or {}
    result = result if result is not None else _read_json(run_dir / RESULT_FILE)
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
    elif lock is not None or _running_name() == run_dir.name:
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


def _running_name() -> str | None:
    lock = _read_lock()
    return str(lock["run"]) if lock and lock.get("run") else None


def current() -> RunInfo | None:
    """The run in progress, or ``None``. A stale lock (dead, zombie or foreign pid) is cleared on the way."""
    with _LOCK:
        lock = _read_lock()
        if lock is None:
            return None
        if _lock_is_live(lock):
            return run_info(weights.runs_dir() / str(lock["run"]), lock=lock) if lock.get("run") else None
        run_dir = weights.runs_dir() / str(lock["run"]) if lock.get("run") else None
        child = _CHILDREN.get(run_dir) if run_dir else None
        if run_dir is not None and run_dir.is_dir():
            finish(run_dir, child.poll() if child is not None else None)
        _lock_path().unlink(missing_ok=True)
        return None


def wait(timeout: float | None = None, poll_s: float = 0.2) -> RunInfo | None:
    """Block until no run is in progress (for scripts and tests); return how the last run ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    name = _running_name()
    while current() is not None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the training run is still in progress")
        time.sleep(poll_s)
    return run_info(weights.runs_dir() / name) if name else latest_run()


def cancel(*, force: bool = False) -> RunInfo:
    """Ask the running trainer to stop (SIGTERM: it stops between steps); ``force`` kills it (SIGKILL)."""
    with _LOCK:
        lock = _read_lock()
        run = current()
        if run is None or not lock or not isinstance(lock.get("pid"), int):
            raise JobError("No training run is in progress.")
        try:
            (run.path / CANCEL_FILE).write_text(f"{time.time()}\n")
        except OSError:
            pass  # the signal matters, the marker only explains it
        pid = int(lock["pid"])
        if not _is_our_trainer(pid, run.path) and _CHILDREN.get(run.path) is None:
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
    base = weights.runs_dir()
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    runs = [run_info(p) for p in folders if (p / JOB_FILE).is_file() or (p / weights.CARD_FILE).is_file()]
    return sorted(runs, key=lambda r: (r.created, r.name), reverse=True)


def latest_run() -> RunInfo | None:
    runs = list_runs()
    return runs[0] if runs else None


def find_run(name: str) -> RunInfo:
    base = weights.runs_dir()
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
        raise JobError(_disk_message(exc, "writing the active-weights pointer")) from exc
    return run_info(run.path)


def restore_bundled() -> None:
    """Point the app back at the bundled ``weights/`` (removing the pointer: works even when it is corrupt)."""
    try:
        weights.set_active(None)
    except OSError as exc:
        raise JobError(_disk_message(exc, "removing the active-weights pointer")) from exc


def dismiss(name: str) -> None:
    """Hide a finished run's outcome banner (recorded on disk, so every tab agrees)."""
    run = find_run(name)
    result = _read_json(run.path / RESULT_FILE)
    if result is None or result.get("dismissed"):
        return
    result["dismissed"] = True
    try:
        _write_json(run.path / RESULT_FILE, result)
    except OSError as exc:
        raise JobError(_disk_message(exc, "saving the run's outcome")) from exc


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
