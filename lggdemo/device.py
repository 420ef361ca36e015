"""Where the models run: CUDA when present, else Apple's MPS, else the CPU -- one rule for all callers."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.insert(0 if "cuda" not in found else 1, "mps")
    return found


def choose_device(requested: str = "auto") -> torch.device:
    """``auto`` picks the best available; an explicit choice that is unavailable raises DeviceError."""
    requested = requested.lower()
    if requested == "auto":
        return torch.device(available_devices()[0])
    if requested not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"Unknown device {requested!r}: choose auto, cpu, cuda or mps.")
    if requested not in available_devices():
        have = ", ".join(available_devices())
        raise DeviceError(f"{requested.upper()} was chosen but this machine has none (available: {have}).")
    return torch.device(requested)


def default_threads() -> int:
    """CPU threads for a process not told how many: ``OMP_NUM_THREADS`` where set, else every core.

    The variable is a limit someone set for this process (a user, a job scheduler, a test runner giving each worker
    its share), and torch and ONNX Runtime honour it too. Overriding it with every core oversubscribes cores promised
    elsewhere, and OpenMP threads then wait at each other's barriers: a U-Net training step on 2 cores, one of them
    busy, took 269 ms with 2 threads and 122 ms with 1 (this Zen 4).
    """
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        return int(asked)
    return max(1, os.cpu_count() or 1)


def threads_phrase(n: int) -> str:
    """``1 thread`` / ``2 threads``: how every caption counts CPU threads."""
    return f"{n} thread" if n == 1 else f"{n} threads"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA GPU ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({threads_phrase(torch.get_num_threads())})"


@dataclass(frozen=True)
class CpuInfo:
    """What decides how fast this CPU trains and which precision pays: read from the hardware, not guessed from names.

    ``capability``: the vector instruction set PyTorch's kernels dispatch to here (``DEFAULT``, ``AVX2``,
    ``AVX512``, ...). ``native_bf16``: the CPU computes bfloat16 itself (AVX-512 BF16 or AMX tiles), so bf16
    autocast is several times *faster* than float32; without it oneDNN emulates bf16 and it is several times
    *slower* (issue 27: 0.8 against 6.3 img/s on an AVX2-only EPYC).
    """

    model: str
    capability: str
    native_bf16: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        return f"{self.model} ({self.capability}, {bf16})"


@functools.lru_cache(maxsize=1)
def _cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the two instruction sets on which oneDNN runs bfloat16 convolutions natively."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)


def cpu_info() -> CpuInfo:
    """This machine's CPU: model name, the capability PyTorch uses, and whether it has native bf16."""
    return CpuInfo(model=_cpu_model_name(), capability=str(torch.backends.cpu.get_cpu_capability()),
                   native_bf16=_native_bf16())
