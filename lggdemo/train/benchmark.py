"""Training throughput of each model on random data (``python -m lggdemo.bench --train`` prints it).

``benchmark_distributed`` also times the same steps under DistributedDataParallel with several local
processes (gloo on CPU, NCCL on CUDA) and reports the throughput ratio against one process.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lggdemo.device import choose_device, describe
from lggdemo.models import MODELS
from lggdemo.models.networks import GradeConfig, SegConfig, build_grade, build_segmentation
from lggdemo.train import distributed
from lggdemo.train.augmentation import augment
from lggdemo.train.config import TrainConfig, TrainError
from lggdemo.train.loop import autocast, channels_last


def _models(cfg: TrainConfig, dev: torch.device) -> dict[str, tuple[torch.nn.Module, int]]:
    torch.manual_seed(0)
    seg = build_segmentation(SegConfig(encoder=cfg.encoder, image_size=cfg.image_size)).to(dev).train()
    grade = build_grade(GradeConfig(image_size=cfg.grade_image_size)).to(dev).train()
    return {"segmentation": (seg, cfg.image_size), "grade": (grade, cfg.grade_image_size)}


def _step_seconds(name: str, net: torch.nn.Module, batch: int, size: int, dev: torch.device, gen: torch.Generator,
                  steps: int, precision: str = "auto") -> list[float]:
    """Seconds of each training step (after one untimed warm-up step) of one model on random data, in the
    precision (and memory format) a run asking for ``precision`` trains in here."""
    import segmentation_models_pytorch as smp

    if channels_last(dev, precision):
        net.to(memory_format=torch.channels_last)

    dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, generator=gen).to(dev)
    y = (torch.rand(batch, 1, size, size, generator=gen) > 0.8).float().to(dev)
    clin = torch.zeros(batch, 4, device=dev)
    label = torch.ones(batch, device=dev)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        xb, yb = augment(x, y if name == "segmentation" else None, gen)
        with autocast(dev, precision):
            out = net(xb) if name == "segmentation" else net(xb, clin)
        out = out.float()
        loss = (dice_loss(out, yb) + F.binary_cross_entropy_with_logits(out, yb)) if name == "segmentation" \
            else F.binary_cross_entropy_with_logits(out[:, 0], label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    return times


def benchmark_training(device: str = "auto", image_size: int | None = None, steps: int = 5) -> dict[str, Any]:
    """Training throughput (images/s) of each model at the full preset's sizes on random data."""
    dev = choose_device(device)
    cfg = TrainConfig.from_preset("full", image_size=image_size)
    results: dict[str, Any] = {"device": describe(dev), "batch_size": cfg.batch_size}
    gen = torch.Generator().manual_seed(0)
    for name, (model, size) in _models(cfg, dev).items():
        times = _step_seconds(name, model, cfg.batch_size, size, dev, gen, steps)
        results[name] = {"image_size": size, "images_per_second": cfg.batch_size / float(np.median(times))}
    seg_epoch = cfg.seg_samples / results["segmentation"]["images_per_second"]
    grade_epoch = cfg.grade_samples / results["grade"]["images_per_second"]
    results["full_estimate_seconds"] = cfg.seg_epochs * seg_epoch + cfg.grade_epochs * grade_epoch * (1 + 3 * cfg.folds)
    q = TrainConfig.from_preset("quick")
    results["quick_estimate_seconds"] = q.seg_epochs * q.seg_samples / results["segmentation"]["images_per_second"] + \
        q.grade_epochs * q.grade_samples / results["grade"]["images_per_second"]
    return results


def benchmark_distributed(world_size: int = 2, device: str = "auto", image_size: int | None = None,
                          steps: int = 5) -> dict[str, Any]:
    """Throughput of ``world_size`` DDP processes on this machine against one process, per model.

    One process uses every core; each of the ``world_size`` processes gets its share (torchrun's
    layout), with the full preset's batch per process, so a step trains ``world_size`` times as many
    images. The ratio is images/s of the group over images/s of the one process: on a CPU whose cores
    one process already keeps busy it cannot exceed 1 (the same cores, plus the gradient all-reduce).
    One process is timed before and after the group and averaged, so that a machine whose load
    drifts (shared cores) does not bias the ratio one way. ``scaling_vs_one_share`` compares the group
    with one process on one rank's share of the cores (ideal: the world size).
    """
    import torch.multiprocessing as mp

    if world_size < 2:
        raise ValueError("world size must be at least 2 to compare against one process.")
    before = benchmark_training(device, image_size, steps)
    with socket.socket() as s:  # a free port for the group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    try:
        mp.start_processes(_rank_main, args=(world_size, port, device, image_size, steps, queue), nprocs=world_size,
                           start_method="spawn")
    except mp.ProcessRaisedException as exc:  # e.g. a rank without its GPU: say what it said
        raise TrainError(f"a benchmark rank failed: {str(exc).strip().splitlines()[-1]}") from None
    group = queue.get()
    after = benchmark_training(device, image_size, steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(group["threads"])  # one process on one rank's share: how well the group scales
    share = benchmark_training(device, image_size, steps)
    torch.set_num_threads(threads)
    cfg = TrainConfig.from_preset("full", image_size=image_size)
    results: dict[str, Any] = {"device": before["device"], "world_size": world_size, "backend": group["backend"],
                               "per_rank_batch_size": cfg.batch_size, "threads_one_process": threads,
                               "threads_per_rank": group["threads"]}
    for name in MODELS:
        one = (before[name]["images_per_second"] + after[name]["images_per_second"]) / 2
        many = world_size * cfg.batch_size / group[name]
        results[name] = {"image_size": before[name]["image_size"], "images_per_second_1_process": one,
                         "images_per_second_1_process_before_after": [before[name]["images_per_second"],
                                                                      after[name]["images_per_second"]],
                         f"images_per_second_{world_size}_processes": many, "ratio": many / one,
                         "images_per_second_1_process_on_one_share": share[name]["images_per_second"],
                         "scaling_vs_one_share": many / share[name]["images_per_second"]}
    return results


def _rank_main(rank: int, world_size: int, port: int, device: str, image_size: int | None, steps: int,
               queue: Any) -> None:
    """One rank of :func:`benchmark_distributed`: the same steps as one process, through DDP."""
    import lggdemo  # noqa: F401  (torchvision guard in a fresh interpreter)

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dev = distributed.join(choose_device(device))
    cfg = TrainConfig.from_preset("full", image_size=image_size)
    gen = torch.Generator().manual_seed(distributed.rank_seed(0))
    medians: dict[str, Any] = {"backend": distributed.context().backend, "threads": torch.get_num_threads()}
    for name, (model, size) in _models(cfg, dev).items():
        net = distributed.distribute(model, dev, channels_last=channels_last(dev))
        medians[name] = float(np.median(_step_seconds(name, net, cfg.batch_size, size, dev, gen, steps)))
    if rank == 0:
        queue.put(medians)
    distributed.finish(0)
