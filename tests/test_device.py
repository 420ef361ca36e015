"""How many CPU threads a process takes when not told: the limit in OMP_NUM_THREADS, else every core."""

from __future__ import annotations

import os

import pytest
import torch

from lggdemo.device import default_threads
from lggdemo.train import TrainConfig
from lggdemo.train.prepare import training_device


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("3", 3), (None, None), ("", None), ("0", None),
                                                 ("two", None)])
def test_omp_num_threads_is_the_limit_where_it_is_a_positive_count(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                                   expected: int | None) -> None:
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert default_threads() == (expected if expected is not None else max(1, os.cpu_count() or 1))


def test_training_takes_the_limit_unless_given_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainer that took every core under a test runner's (or a scheduler's) limit oversubscribed the CPU."""
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        training_device(TrainConfig(device="cpu"))
        assert torch.get_num_threads() == 1
        training_device(TrainConfig(device="cpu", threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
