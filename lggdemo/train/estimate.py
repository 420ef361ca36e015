"""How long a training run will take on this machine, before it starts (``python -m lggdemo.train --dry-run``, the
sidebar's estimate).

The machines this project runs on differ several-fold in training speed (issue 27: the same U-Net step trains 47
images/s on an AVX-512 BF16 EPYC in bf16 and 6 on an AVX2-only one in fp32), so a preset's time cannot be written
down once. A probe times a few real training steps of the run's two networks, at its sizes, batch, threads and the
precision ``auto`` resolves to here, on random data; the estimate is those rates times the images the run's config
draws (every epoch of both U-Net stages, every grade fit). Probes are cached per CPU and setting under
``LGG_CACHE_DIR`` (atomic writes, one lock per key: two processes asking at once measure once).

The estimate counts training steps only: loading the slices, the per-epoch validation curve and scoring the held-out
patients add to it (about 1.5 of the bundled run's 20.7 minutes on the machine its card records).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from lggdemo import device as devices
from lggdemo._fs import atomic_write_bytes, cache_dir, exclusive_lock
from lggdemo.train.config import TrainConfig
from lggdemo.train.events import TASK_MODELS, final_fit
from lggdemo.train.loop import resolve_precision

#: Timed steps per network (after one untimed warm-up step); the median is kept.
PROBE_STEPS = 3
#: Bumped when the probe's method changes, so older cached rates are measured again.
PROBE_VERSION = 1


@dataclass(frozen=True)
class Throughput:
    """Training images per second of the run's U-Net and grade model on this machine, as one probe measured them."""

    cpu: str
    device: str
    threads: int
    precision: str  # the precision used (resolve_precision), not the one asked for
    encoder: str
    image_size: int
    grade_image_size: int
    batch_size: int
    segmentation_images_per_second: float
    grade_images_per_second: float
    measured: str  # UTC time of the probe
    steps: int = PROBE_STEPS
    load: float | None = None  # the 1-minute load average just before the probe: other work sharing the CPU

    @property
    def busy(self) -> bool:
        """Whether other work was using the cores the probe needed (its rates are then pessimistic)."""
        return self.load is not None and self.load > max(0.5, (os.cpu_count() or 1) - self.threads + 0.5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """A run's expected training time: its images times the probe's rates."""

    seconds: float
    segmentation_images: int
    grade_images: int
    throughput: Throughput
    cached: bool  # the rates came from an earlier probe on this machine

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput.to_dict()}

    def text(self) -> str:
        t = self.throughput
        parts = []
        if self.segmentation_images:
            parts.append(f"U-Net {self.segmentation_images:,} images at {t.segmentation_images_per_second:.1f}/s")
        if self.grade_images:
            parts.append(f"grade {self.grade_images:,} at {t.grade_images_per_second:.1f}/s")
        when = f"measured {t.measured[:16].replace('T', ' ')} UTC" if self.cached else "measured just now"
        if t.busy:
            when += (f" while the CPU was busy (load {t.load:.1f}), so probably too long: time it again on an idle "
                     "machine (--dry-run --refresh-estimate)")
        return (f"about {duration_text(self.seconds)} of training on this machine ({t.cpu}; {t.precision}, "
                f"{devices.threads_phrase(t.threads)}): {', '.join(parts)}; {when}. Loading the data and scoring "
                "add a little; a busy CPU makes it longer.")


def duration_text(seconds: float) -> str:
    """``45 s``, ``21 min``, ``3 h 05 min``: how the estimate names a duration."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def run_images(cfg: TrainConfig) -> tuple[int, int]:
    """(U-Net images, grade images) the config trains on, as :func:`lggdemo.train.loop.train_loop` draws them:
    whole batches of each epoch's samples, for both U-Net stages and for every grade fit (its inner CV too)."""
    def per_epoch(samples: int) -> int:
        return max(1, samples // cfg.batch_size) * cfg.batch_size

    models = TASK_MODELS[cfg.task]
    seg = (cfg.seg_epochs + cfg.refine_epochs) * per_epoch(cfg.seg_samples) if "segmentation" in models else 0
    grade = cfg.grade_epochs * per_epoch(cfg.grade_samples) * final_fit(cfg.folds).count if "grade" in models else 0
    return seg, grade


def _threads(cfg: TrainConfig) -> int:
    return cfg.threads or devices.default_threads()


def cache_key(cfg: TrainConfig, device: torch.device) -> str:
    """What a probe's rates depend on: the CPU, the device, threads, library, networks, sizes, batch, precision."""
    cpu = devices.cpu_info()
    parts = [PROBE_VERSION, cpu.model, cpu.capability, cpu.native_bf16, devices.describe(device), _threads(cfg),
             torch.__version__, cfg.encoder, cfg.image_size, cfg.grade_image_size, cfg.batch_size,
             resolve_precision(device, cfg.precision)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def measure(cfg: TrainConfig, device: torch.device, steps: int = PROBE_STEPS) -> Throughput:
    """Time ``steps`` training steps of each network at the config's sizes, batch, threads and precision."""
    from lggdemo.models.networks import GradeConfig, SegConfig, build_grade, build_segmentation
    from lggdemo.train.benchmark import _step_seconds

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    before = torch.get_num_threads()
    torch.set_num_threads(_threads(cfg))
    try:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        seg = build_segmentation(SegConfig(encoder=cfg.encoder, image_size=cfg.image_size)).to(device).train()
        grade = build_grade(GradeConfig(image_size=cfg.grade_image_size)).to(device).train()
        rates = {}
        for name, net, size in (("segmentation", seg, cfg.image_size), ("grade", grade, cfg.grade_image_size)):
            times = _step_seconds(name, net, cfg.batch_size, size, device, gen, steps, precision=cfg.precision)
            rates[name] = cfg.batch_size / float(np.median(times))
    finally:
        torch.set_num_threads(before)
    return Throughput(cpu=devices.cpu_info().text(), device=devices.describe(device), threads=_threads(cfg),
                      precision=resolve_precision(device, cfg.precision), encoder=cfg.encoder,
                      image_size=cfg.image_size, grade_image_size=cfg.grade_image_size, batch_size=cfg.batch_size,
                      segmentation_images_per_second=rates["segmentation"], grade_images_per_second=rates["grade"],
                      measured=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), steps=steps,
                      load=load)


def _cache_file(key: str) -> Any:
    return cache_dir() / "throughput" / f"{key}.json"


def cached_throughput(cfg: TrainConfig, device: torch.device) -> Throughput | None:
    """The probe cached for this machine and config, or ``None`` (never measures: cheap enough for every page)."""
    path = _cache_file(cache_key(cfg, device))
    try:
        return Throughput(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def throughput(cfg: TrainConfig, device: torch.device, *, refresh: bool = False) -> tuple[Throughput, bool]:
    """This machine's rates for ``cfg`` and whether they came from the cache; measured (and cached) when absent.

    One lock per key: a second process asking while the first measures waits for it and reads its result, so
    two probes never share the CPU (which would halve both) and the file is written once, atomically.
    """
    key = cache_key(cfg, device)
    path = _cache_file(key)
    with exclusive_lock(path.with_suffix(".lock")):
        if not refresh:
            found = cached_throughput(cfg, device)
            if found is not None:
                return found, True
        measured = measure(cfg, device)
        atomic_write_bytes(path, json.dumps(measured.to_dict(), indent=1).encode())
    return measured, False


def estimate_from(cfg: TrainConfig, rates: Throughput, cached: bool) -> Estimate:
    seg, grade = run_images(cfg)
    seconds = seg / rates.segmentation_images_per_second + grade / rates.grade_images_per_second
    return Estimate(seconds=seconds, segmentation_images=seg, grade_images=grade, throughput=rates, cached=cached)


def plan_text(cfg: TrainConfig, *, refresh: bool = False) -> str:
    """What ``python -m lggdemo.train --dry-run`` prints: the device, the precision asked for and used (and why it
    would be slow), and the estimate."""
    from lggdemo.train.loop import precision_warning

    dev = devices.choose_device(cfg.device)
    used = resolve_precision(dev, cfg.precision)
    lines = [f"preset {cfg.preset}, task {cfg.task}: {devices.describe(dev)}, {devices.cpu_info().text()}",
             f"precision: {cfg.precision} asked, {used} used"]
    slow = precision_warning(dev, cfg.precision)
    if slow:
        lines.append(f"warning: {slow}")
    lines.append("estimate: " + estimate(cfg, dev, refresh=refresh).text())
    return "\n".join(lines)


def estimate(cfg: TrainConfig, device: torch.device | None = None, *, refresh: bool = False) -> Estimate:
    """How long ``cfg`` will train on this machine: probe (or the cached probe) times its images."""
    dev = device or devices.choose_device(cfg.device)
    rates, cached = throughput(cfg, dev, refresh=refresh)
    return estimate_from(cfg, rates, cached)
