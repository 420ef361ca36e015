"""The trainer's terminal progress (what a run's log tail shows): a sane rate, never tqdm's burst rate."""

from __future__ import annotations

import re

import pytest

from lggdemo.train import TqdmReporter

RATE = re.compile(r"([\d.]+)\s*(?:it|steps|step|batch)/s")


def _step(step: int, steps: int, t: float, epoch: int = 1) -> dict:
    return {"event": "step", "model": "segmentation", "epoch": epoch, "epochs": 2, "step": step, "steps": steps,
            "loss": 0.5, "eta_s": 1.0, "time": t, "fit": 0, "fits": 1}


def _epoch(t: float, epoch: int = 1) -> dict:
    return {"event": "epoch", "model": "segmentation", "epoch": epoch, "epochs": 2, "train_loss": 0.5, "val": {},
            "eta_s": 0.0, "time": t, "fit": 0, "fits": 1}


def test_a_bar_that_begins_at_its_last_step_shows_no_burst_rate(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11, defect 5: throttled events made tqdm print e.g. "9300.01it/s" for a two-step epoch."""
    bars = TqdmReporter()
    for event in (_step(2, 2, 100.0), _epoch(100.01), _step(15, 20, 101.0, 2), _step(20, 20, 101.001, 2)):
        bars(event)
    bars.close()
    err = capsys.readouterr().err
    rates = [float(m) for m in RATE.findall(err)]
    assert all(r < 100 for r in rates), err  # no rate from a few steps over microseconds


def test_the_rate_comes_from_the_events_times(capsys: pytest.CaptureFixture[str]) -> None:
    bars = TqdmReporter()
    bars(_step(1, 40, 100.0))
    bars(_step(11, 40, 105.0))  # 10 steps in 5 s
    bars.close()
    assert "2.0 steps/s" in capsys.readouterr().err
    slow = TqdmReporter()
    slow(_step(1, 4, 0.0))
    slow(_step(2, 4, 30.0))  # one step in 30 s: read as time per step
    slow.close()
    assert "30.0 s/step" in capsys.readouterr().err
