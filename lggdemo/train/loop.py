"""The one optimisation loop both models use, and its parts: sampling, learning-rate schedule, mixed precision.

Each part is a function of its own so that a distributed trainer can replace one seam (the sampler
that draws a rank's share, the step that synchronises gradients) without copying the rest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lggdemo import device as devices
from lggdemo.train.config import TrainConfig
from lggdemo.train.distributed import check_together, world_size
from lggdemo.train.events import EPOCH, STEP, Fit
from lggdemo.train.progress import Progress

#: What ``precision`` a run used, by the autocast dtype it resolved to (the card's ``precision.used``).
USED: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision a run asking for ``precision`` trains in on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` picks the fastest that is known to train the recipes here: on CUDA bfloat16 where the GPU has it,
    else float16 (with loss scaling); on a CPU with native bf16 (AVX-512 BF16 or AMX, probed by
    :func:`lggdemo.device.cpu_info`) bfloat16, which trains the U-Net about 3x faster than float32; float32
    everywhere else -- on an AVX2-only CPU oneDNN emulates bf16 and it trains about 7x *slower* (issue 27).
    ``bf16`` / ``fp32`` are taken as asked (an explicit bf16 on a CPU without it warns: :func:`precision_warning`).
    """
    if precision in ("fp32", "bf16"):
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and devices.cpu_info().native_bf16:
        return "bf16"
    return "fp32"


def precision_warning(device: torch.device, precision: str) -> str | None:
    """Why an explicitly requested precision will be slow on this machine, in words; ``None`` when it will not."""
    if precision != "bf16" or device.type != "cpu":
        return None
    cpu = devices.cpu_info()
    if cpu.native_bf16:
        return None
    return (f"bf16 was asked for, but this CPU ({cpu.text()}) has no native bfloat16: it trains anyway, but several "
            "times slower on this CPU than in fp32. Choose precision auto (fp32 here) to train at full speed.")


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of a training run, or ``None`` for plain float32 (see :func:`resolve_precision`).

    bf16 is not exact, so cross-validation decided that the recipes may use it; weights and the loss stay
    float32 in every case.
    """
    return USED[resolve_precision(device, precision)]


def channels_last(device: torch.device, precision: str = "auto") -> bool:
    """Whether to train in the channels-last memory format: wherever autocast runs (tensor cores, oneDNN bf16), and
    for ``auto``'s fp32 on a CPU, where oneDNN's channels-last convolutions trained the U-Net faster on both AVX2-only
    machines measured (14.3 against 11.8 and 6.3 against 5.8 img/s; ../shared/notes/training.md, issue 27). An
    explicit ``fp32`` keeps the plain layout the earlier fp32 recipes were trained in."""
    if amp_dtype(device, precision) is not None:
        return True
    return precision == "auto" and device.type == "cpu"


def autocast(device: torch.device, precision: str = "auto") -> Any:
    dtype = amp_dtype(device, precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def gather_batch(source: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``source[idx]`` on ``device``. On CUDA the rows are gathered straight into page-locked (pinned) host
    memory and copied without blocking, so the copy overlaps the GPU's work: pinning ``source`` itself does
    not help, because indexing a pinned tensor returns an ordinary one. Elsewhere it is plain indexing
    (the CPU path stays bit-identical). PyTorch's pinned-memory allocator keeps a buffer alive until its
    copy has finished, so a fresh buffer per batch is safe and cheap.
    """
    if device.type != "cuda":
        return source[idx].to(device)
    buffer = torch.empty((len(idx), *source.shape[1:]), dtype=source.dtype, pin_memory=True)
    torch.index_select(source, 0, idx, out=buffer)
    return buffer.to(device, non_blocking=True)


def grad_scaler(device: torch.device, precision: str = "auto") -> torch.amp.GradScaler:
    """Loss scaling for float16 (its gradients underflow); disabled -- a pass-through -- otherwise."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device, precision) == torch.float16)


def cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int) -> None:
    """Linear warm-up, then cosine decay to 1% of ``base``."""
    if step < warmup:
        lr = base * (step + 1) / warmup
    else:
        lr = base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = max(lr, base * 0.01)


def sample_order(weights: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """One epoch's sample indices: ``count`` draws with replacement, in proportion to ``weights``."""
    return torch.multinomial(weights, count, replacement=True, generator=gen)


def optimiser_step(opt: torch.optim.Optimizer, loss: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
    """Backward (DDP averages the ranks' gradients during it) and update for one batch."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def train_loop(model: torch.nn.Module, opt: torch.optim.Optimizer, weights: torch.Tensor,
               batch_loss: Callable[[torch.Tensor], torch.Tensor], *, name: str, epochs: int, samples: int,
               cfg: TrainConfig, gen: torch.Generator, progress: Progress, fit: Fit = Fit(),
               validate: Callable[[], dict[str, float]] | None = None,
               history: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Weighted sampling, cosine LR, progress events and stop checks around ``batch_loss``.

    ``batch_loss(indices)`` prepares and augments that batch and returns its loss; ``fit`` says which of the
    model's fits this is (see :mod:`lggdemo.train.events`), so the job's reader can place it in the run.
    """
    batch = cfg.batch_size
    steps_per_epoch = max(1, samples // (batch * world_size()))  # each rank draws its share of the epoch
    total = steps_per_epoch * epochs
    tags = {"model": name, **fit.tags()}
    started, step = time.monotonic(), 0
    scaler = grad_scaler(next(model.parameters()).device, cfg.precision)
    for epoch in range(1, epochs + 1):
        model.train()
        order = sample_order(weights, steps_per_epoch * batch, gen)
        losses = []
        for s in range(steps_per_epoch):
            check_together(progress)
            cosine_lr(opt, cfg.lr, step, total, warmup=max(1, total // 20))
            loss = batch_loss(order[s * batch : (s + 1) * batch])
            optimiser_step(opt, loss, scaler)
            losses.append(loss.item())
            step += 1
            eta = (time.monotonic() - started) / step * (total - step)
            progress.emit(STEP, **tags, epoch=epoch, epochs=epochs, step=s + 1, steps=steps_per_epoch,
                          loss=float(np.mean(losses[-20:])), eta_s=eta)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val": validate() if validate else {}}
        if history is not None:
            history.append(record)
        progress.emit(EPOCH, **tags, epochs=epochs, eta_s=(time.monotonic() - started) / step * (total - step), **record)
    seconds = time.monotonic() - started
    return {"training_seconds": seconds, "images_per_second": step * batch * world_size() / seconds}
