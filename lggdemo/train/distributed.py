"""Several processes training one model: ``torchrun ... -m lggdemo.train`` under DistributedDataParallel.

Why it is shaped this way:
- torchrun is the launcher (one process per GPU, or per CPU share, on one or several machines); this
  module only reads what it puts in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). Without those a run is one plain process with
  no process group and every function here is the identity: ``python -m lggdemo.train`` is bit for bit
  what it was.
- NCCL on CUDA, gloo on CPU. The process-group timeout (``LGG_DIST_TIMEOUT_S``, default 600 s) bounds
  how long a rank waits for a peer; a peer that dies closes its sockets, so the others fail at once
  with a clear error, and torchrun stops the remaining workers of a failed group anyway.
- Each rank draws its own share of every epoch's weighted sample (``samples / world_size`` draws,
  with replacement, from its own generator): draws are independent, so the union of the ranks'
  shares follows the same law as one process drawing them all. DDP averages the gradients, so a step
  is one step on the union of the ranks' batches (global batch = world size × per-rank batch).
- Batch norm: synchronised (``SyncBatchNorm``) on CUDA with several ranks. PyTorch implements it for
  GPUs only, so on CPU each rank normalises with its own batch's statistics (16 slices per batch is
  enough for stable statistics) and DDP broadcasts rank 0's running statistics to the others at each
  forward pass, so every rank ends with the same buffers.
- Stopping: SIGTERM / Ctrl-C only set a flag; every step the ranks ``all_reduce`` their flags, so all
  of them stop at the same step (none is left waiting in a collective for a peer that has left).
- Validation, cross-validation scoring, the card and publishing are rank 0's; the other ranks wait
  for its outcome (through the process group's key-value store, not a collective, so a rank 0 that
  fails anywhere cannot leave them matched against the wrong collective) and exit with it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from lggdemo.train.config import TrainConfig, TrainError
from lggdemo.train.events import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK
from lggdemo.train.progress import Cancelled, Progress

TIMEOUT_ENV = "LGG_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
OUTCOME_KEY = "lggdemo/outcome"
READ_KEY = "lggdemo/outcome-read"
ACK_WAIT_S = 30.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run: its rank among ``world_size`` and the backend they talk over."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None  # None: a plain process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


SINGLE = DistContext()
_context = SINGLE
_collective_device = torch.device("cpu")


def launched() -> bool:
    """Whether torchrun (or another launcher speaking its protocol) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_is_main() -> bool:
    """Rank 0, read from the environment: usable before the process group exists (who writes progress)."""
    return int(os.environ.get("RANK", "0")) == 0


def context() -> DistContext:
    return _context


def is_main() -> bool:
    return _context.is_main


def world_size() -> int:
    return _context.world_size


def timeout_s() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        raise TrainError(f"{TIMEOUT_ENV} must be a number of seconds (got {os.environ[TIMEOUT_ENV]!r}).") from None


def join(device: torch.device, threads: int | None = None) -> torch.device:
    """Join torchrun's process group when launched by it; returns the device this rank trains on.

    CUDA ranks take the GPU their ``LOCAL_RANK`` names. CPU ranks on one machine share its cores
    (``threads`` overrides the share). A plain process is left alone.
    """
    global _context, _collective_device
    if not launched():
        return device
    env = os.environ
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    local_rank = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise TrainError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                             "start at most that many processes per node.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise TrainError(f"distributed training runs on CUDA (NCCL) or the CPU (gloo), not {device.type}.")
    else:
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // max(1, local_world)))
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, init_method="env://", timeout=dt.timedelta(seconds=timeout_s()))
        except Exception as exc:
            raise TrainError(f"rank {rank} could not join the process group of {world} "
                             f"({env.get('MASTER_ADDR')}:{env.get('MASTER_PORT')}, {backend}): {exc}") from exc
    _context = DistContext(rank, world, local_rank, local_world, backend)
    _collective_device = device if backend == "nccl" else torch.device("cpu")
    return device


def rank_seed(seed: int) -> int:
    """The seed of this rank's generator: ``seed`` itself on rank 0 (a plain run's), an independent stream elsewhere."""
    if _context.rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, _context.rank]).generate_state(1)[0])


def distribute(model: torch.nn.Module, device: torch.device, *, find_unused: bool = False,
               channels_last: bool = False) -> torch.nn.Module:
    """The module to run the training forward pass through: DDP around ``model`` when there are several ranks.

    ``model`` itself stays the one to validate and save (DDP shares its parameters). Batch norm is
    synchronised on CUDA only (see the module docstring); ``find_unused`` is for models with a branch
    switched off (the grade ablations), whose parameters get no gradient.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)  # faster convolutions under autocast (tensor cores, oneDNN bf16)
    if _context.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if _context.backend == "nccl":
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the U-Net's and ResNet's norms are children
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def check_together(progress: Progress) -> None:
    """Raise :class:`Cancelled` on every rank at the same step once any rank was asked to stop."""
    if not _context.distributed:
        progress.check()
        return
    flag = torch.tensor([1.0 if progress.stop.is_set() else 0.0], device=_collective_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0:
        progress.stop.set()
        raise Cancelled()


def describe_failure(exc: BaseException) -> str:
    """What a failed run reports: a lost peer said as such (gloo's or NCCL's first line follows), else the error."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    lost = ("connection", "closed by peer", "reset by peer", "timed out", "timeout", "nccl", "gloo")
    if _context.distributed and isinstance(exc, RuntimeError) and any(w in text.lower() for w in lost):
        return (f"rank {_context.rank} of {_context.world_size} lost its peers mid-run (a rank died or did not answer "
                f"within {timeout_s():.0f} s; torchrun's summary names it): {first}")
    return f"{exc.__class__.__name__}: {exc}"


def finish(code: int) -> int:
    """End this rank's part: rank 0 posts its exit code, the others wait for it and exit with it; then leave the group.

    A non-zero rank whose own part failed exits at once with its own code (torchrun stops the rest).
    """
    global _context
    if not dist.is_initialized():
        return code
    ctx = _context
    try:
        store = dist.distributed_c10d._get_default_store()
        if ctx.is_main:
            store.set(OUTCOME_KEY, str(code))
            if code == EXIT_OK:  # where rank 0 hosts the store (launchers other than torchrun), it must outlive their reads
                deadline = time.monotonic() + ACK_WAIT_S
                while store.add(READ_KEY, 0) < ctx.world_size - 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
        elif code == EXIT_OK:
            try:
                store.wait([OUTCOME_KEY], dt.timedelta(seconds=timeout_s()))
                main_code = int(store.get(OUTCOME_KEY))
                store.add(READ_KEY, 1)
            except Exception as exc:
                print(f"error: rank {ctx.rank}: no outcome from rank 0 ({exc})", file=sys.stderr)
                return EXIT_FAILED
            if main_code not in (EXIT_OK, EXIT_CANCELLED):
                print(f"error: rank 0 failed (exit {main_code}); its log says why", file=sys.stderr)
                return EXIT_FAILED
            code = main_code
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to tear down cleanly
            pass
        _context = SINGLE
    return code


def card_entry(cfg: TrainConfig) -> dict[str, Any]:
    """What the card records about the processes that trained: enough to rerun or compare the run."""
    ctx = _context
    sync_bn = ctx.backend == "nccl" and ctx.world_size > 1
    return {
        "world_size": ctx.world_size, "backend": ctx.backend,
        "launcher": "torchrun" if ctx.distributed else "python -m lggdemo.train",
        "per_rank_batch_size": cfg.batch_size, "global_batch_size": cfg.batch_size * ctx.world_size,
        "batch_norm": "synchronised across ranks (SyncBatchNorm)" if sync_bn else (
            "per-rank batch statistics; rank 0's running statistics broadcast (no CPU SyncBatchNorm in PyTorch)"
            if ctx.world_size > 1 else "one process"),
    }
