"""Background retraining: the trainer CLI as a detached subprocess, its whole state kept on disk.

Why on disk and not in ``st.session_state``: a Streamlit session is one browser tab. Closing the tab
must not kill a twenty-minute run, and reopening the app (or another tab) must show it. So every
page asks this module, which reads files under :func:`lggdemo._fs.runs_dir`::

    runs/
      job.lock                 exists while a run is in progress: {"run", "pid", ...} (one job at a time)
      active.json              the active-weights pointer (owned by lggdemo.models.weights)
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
code, said ``done``) **and** ``weights.is_complete`` accepts its folder; only then is it activated
(and not even then on a read-only server, see :mod:`lggdemo.access`: there the operator activates it).
Failed or cancelled runs never touch the active pointer, so the weights in use stay exactly as they were.

Example::

    from lggdemo import jobs
    errors = jobs.validate_settings(jobs.TrainSettings(epochs=1, image_size=64), index)
    run = jobs.start(jobs.TrainSettings(epochs=1, image_size=64), index.root, index=index)
    jobs.current()           # RunInfo while it runs (with .progress), None afterwards
    jobs.cancel()            # SIGTERM: the trainer stops between steps and exits 130
"""

# The package's modules, one job each:
#   settings   what the sidebar may ask for, its checks, the trainer command
#   progress   reading the trainer's events and log       process   trainer pid checks and the lock
#   files      a run folder's files                       runs      RunInfo; activate, dismiss, delete past runs
#   control    start, finish, current, wait, cancel, list  errors    what the job manager refuses

from lggdemo.jobs.control import cancel, current, finish, latest_run, list_runs, start, wait
from lggdemo.jobs.errors import JobBusy, JobError, SettingsError
from lggdemo.jobs.files import CANCEL_FILE, JOB_FILE, LOCK_FILE, LOG_FILE, PROGRESS_FILE, RESULT_FILE
from lggdemo.jobs.process import STARTING_GRACE_S
from lggdemo.jobs.progress import RunProgress, read_progress
from lggdemo.jobs.runs import RunInfo, State, activate, delete_run, dismiss, find_run, log_tail, restore_bundled, run_info
from lggdemo.jobs.settings import (
    DEVICES,
    EXIT_CANCELLED,
    EXIT_INVALID,
    MAX_IMAGE_SIZE,
    PRESETS,
    TASKS,
    CommandBuilder,
    TrainSettings,
    trainer_args,
    trainer_command,
    validate_settings,
)

__all__ = [
    "CANCEL_FILE", "DEVICES", "EXIT_CANCELLED", "EXIT_INVALID", "JOB_FILE", "LOCK_FILE", "LOG_FILE",
    "MAX_IMAGE_SIZE", "PRESETS", "PROGRESS_FILE", "RESULT_FILE", "STARTING_GRACE_S", "TASKS", "CommandBuilder",
    "JobBusy", "JobError", "RunInfo", "RunProgress", "SettingsError", "State", "TrainSettings", "activate", "cancel",
    "current", "delete_run", "dismiss", "find_run", "finish", "latest_run", "list_runs", "log_tail", "read_progress",
    "restore_bundled", "run_info", "start", "trainer_args", "trainer_command", "validate_settings", "wait",
]
