"""Where the models run: CUDA when present, else Apple's MPS, else the CPU -- one rule for all callers."""

from __future__ import annotations

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


def threads_phrase(n: int) -> str:
    """``1 thread`` / ``2 threads``: how every caption counts CPU threads."""
    return f"{n} thread" if n == 1 else f"{n} threads"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA GPU ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({threads_phrase(torch.get_num_threads())})"
