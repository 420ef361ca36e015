"""ONNX Runtime's CPU execution provider: the same networks as PyTorch, to 1e-5, about twice as fast on this CPU.

Sessions are created once per weights version and shared by every thread: ``InferenceSession.run`` is
thread-safe, so no lock is taken around a prediction. Options, and why:

- ``intra_op_num_threads`` = the cores torch uses (``OMP_NUM_THREADS`` honoured): one pass uses the whole CPU;
- ``inter_op_num_threads`` = 1 and sequential execution: these graphs are chains, a second pool would only spin;
- ``session.intra_op.allow_spinning`` = 0: idle pool threads sleep instead of spinning, so concurrent sessions
  (and the Grad-CAM that follows a prediction) do not compete with busy-waiting threads on a 2-core machine.
"""

from __future__ import annotations

import ctypes
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lggdemo.device import threads_phrase
from lggdemo.models.engine.base import EngineError, cpu_threads


def session_options(threads: int) -> Any:
    """ONNX Runtime options for one session: ``threads`` intra-op threads, one inter-op thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are not the user's business
    return so


def return_freed_memory() -> None:
    """Hand memory that was freed back to the operating system (glibc only; elsewhere nothing happens).

    Building a session parses the whole graph and, while optimising it, keeps a second copy of the weights
    (about 150 MB for the two networks); glibc keeps that freed memory in the process, where later large
    allocations (PyTorch's, made with mmap) cannot reuse it. Measured: +243 MB resident for the grade session
    before, +94 MB (its weights) after.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc: nothing to trim with
            pass


def open_session(source: Path | bytes, threads: int) -> Any:
    """An InferenceSession on the CPU provider from a file or from bytes; raises whatever ORT raises on a bad model."""
    import onnxruntime as ort

    model = str(source) if isinstance(source, Path) else source
    session = ort.InferenceSession(model, session_options(threads), providers=["CPUExecutionProvider"])
    return_freed_memory()
    return session


class OnnxEngine:
    """ONNX Runtime sessions for whichever networks it was given (``None``: that network is not held)."""

    name = "onnx"

    def __init__(self, seg: Any | None = None, grade: Any | None = None, *, threads: int | None = None,
                 note: str | None = None) -> None:
        self.seg_session = seg
        self.grade_session = grade
        self.threads = threads or cpu_threads()
        self.device = torch.device("cpu")
        self.note = note

    @classmethod
    def from_sources(cls, seg: Path | bytes | None, grade: Path | bytes | None, *, threads: int | None = None,
                     note: str | None = None) -> OnnxEngine:
        n = threads or cpu_threads()
        return cls(None if seg is None else open_session(seg, n), None if grade is None else open_session(grade, n),
                   threads=n, note=note)

    @property
    def description(self) -> str:
        return f"CPU, ONNX Runtime, {threads_phrase(self.threads)}"

    def serialised(self) -> AbstractContextManager[object]:
        return nullcontext()

    def segment(self, x: np.ndarray) -> np.ndarray:
        if self.seg_session is None:
            raise EngineError("this engine holds no segmentation network")
        if len(x) == 0:
            return np.zeros((0, 1, *np.shape(x)[2:]), np.float32)
        return self.seg_session.run(None, {"image": np.ascontiguousarray(x, np.float32)})[0]

    def grade(self, crops: np.ndarray, clinical: np.ndarray) -> np.ndarray:
        if self.grade_session is None:
            raise EngineError("this engine holds no grade network")
        if len(crops) == 0:
            return np.zeros(0, np.float32)
        feed = {"image": np.ascontiguousarray(crops, np.float32), "clinical": np.ascontiguousarray(clinical, np.float32)}
        wanted = {i.name for i in self.grade_session.get_inputs()}  # an ablation without one branch has no such input
        return self.grade_session.run(None, {k: v for k, v in feed.items() if k in wanted})[0][:, 0]
