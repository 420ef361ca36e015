"""The trainer process and the lock that names it: is it alive, is it ours, is the lock stale."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lggdemo import _fs
from lggdemo.jobs.errors import JobError
from lggdemo.jobs.files import LOCK_FILE, read_json
from lggdemo.train.config import OPTIONS

#: A lock still without a trainer pid is being written by ``start``; older than this it is debris.
STARTING_GRACE_S = 60.0


#: What torchrun puts in a worker's environment. The sidebar's trainer is always one process, so none of it
#: may reach it, even when the app itself was started from inside a torchrun job.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


def trainer_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment a sidebar trainer runs in: ``base`` without torchrun's variables, unbuffered and offline."""
    env = {k: v for k, v in base.items() if k not in TORCHRUN_ENV and not k.startswith("TORCHELASTIC_")}
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return env


def process_state(pid: int) -> tuple[bool, str | None]:
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


def is_our_trainer(pid: int, run_dir: Path) -> bool:
    """Alive, and its command line writes into this run's folder (a reused pid would not)."""
    alive, cmdline = process_state(pid)
    if not alive:
        return False
    return cmdline is None or (f"{os.sep}{run_dir.name}" in cmdline and OPTIONS["out"].flag in cmdline)


CHILDREN: dict[Path, subprocess.Popen[bytes]] = {}
LOCK = threading.RLock()  # one start/finish at a time inside this server process


def lock_path() -> Path:
    return _fs.runs_dir() / LOCK_FILE


def read_lock() -> dict[str, Any] | None:
    """The lock's content; ``{}`` for a lock that exists but is (still) unreadable."""
    path = lock_path()
    if not path.exists():
        return None
    return read_json(path) or {}


def lock_age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def lock_is_live(lock: dict[str, Any]) -> bool:
    if not lock.get("run"):
        return lock_age(lock_path()) < STARTING_GRACE_S  # being written right now, or debris
    run_dir = _fs.runs_dir() / str(lock["run"])
    child = CHILDREN.get(run_dir)
    if child is not None:
        return child.poll() is None
    pid = lock.get("pid")
    if not isinstance(pid, int):
        owner = lock.get("owner")
        return isinstance(owner, int) and process_state(owner)[0] and lock_age(lock_path()) < STARTING_GRACE_S
    return is_our_trainer(pid, run_dir)


def release_lock(run_name: str | None) -> None:
    lock = read_lock()
    if lock is not None and (run_name is None or lock.get("run") in (None, run_name)):
        lock_path().unlink(missing_ok=True)


def new_run_dir() -> Path:
    base = _fs.runs_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise JobError(f"Could not create a run folder under {base}.")


def running_name() -> str | None:
    lock = read_lock()
    return str(lock["run"]) if lock and lock.get("run") else None


def oom_kill_count() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed since boot (``None``: cannot tell here).

    Read from ``/proc/vmstat`` (Linux 4.13+, readable by anyone, unlike ``dmesg``). Recorded when a run
    starts, so its end can say whether the OOM killer ran meanwhile.
    """
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def signal_reason(signum: int, oom_kills_at_start: int | None) -> str:
    """Why a trainer that died of ``signum`` ended, in words: the signal by name, memory only on evidence."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    reason = f"the trainer was stopped by {name} (signal {signum})"
    if signum != signal.SIGKILL:
        return reason
    now = oom_kill_count()
    if isinstance(oom_kills_at_start, int) and now is not None:
        if now > oom_kills_at_start:
            return reason + "; the kernel's out-of-memory killer ran meanwhile, so the machine most likely ran out of memory"
        return reason + ", sent from outside the app (the kernel's out-of-memory killer did not run)"
    return reason + "; whether memory ran out cannot be told on this system"

