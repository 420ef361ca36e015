"""The contract between the trainer (``python -m lggdemo.train``) and whoever runs it (``lggdemo.jobs``).

One place for what both sides must agree on, importing neither torch nor the trainer:

- the task codes and the devices the trainer accepts,
- its exit codes,
- the progress events it appends to ``--progress-file`` (one JSON object per line) and their fields,
- where a fit sits among a model's fits (``fit`` / ``fits`` on every step and epoch event), so the
  reader computes a run's fraction from numbers instead of parsing the human label ``phase``.

The fake trainer of the tests (``tests/fixtures/fake_trainer.py``) speaks the same contract without
importing it; ``tests/train/test_contract.py`` checks both it and a real run against :func:`event_problems`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lggdemo.models import MODELS

#: Task codes of ``--task`` and how the UI names them.
TASKS: dict[str, str] = {"all": "Both", "seg": "Segmentation", "grade": "Grade"}
#: Which task trains which of the models (``lggdemo.models.MODELS``, in the order a run trains them).
TASK_MODELS: dict[str, tuple[str, ...]] = {"seg": ("segmentation",), "grade": ("grade",), "all": MODELS}
#: ``--device`` values (``auto``: CUDA, else MPS, else CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

#: Exit codes: finished and published; failed (an ``error`` event says why when it could);
#: refused its settings or data before training; stopped on request (SIGTERM / SIGINT) between steps.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELLED = 130

# Event kinds, in the order a run emits them ("info" at any time; exactly one final event last).
START, STEP, EPOCH, INFO = "start", "step", "epoch", "info"
DONE, ERROR, CANCELLED = "done", "error", "cancelled"
FINAL_EVENTS: tuple[str, ...] = (DONE, ERROR, CANCELLED)

_NUMBER = (int, float)
#: Fields every event of a kind carries (besides ``event`` and ``time``), with their JSON types.
FIELDS: dict[str, dict[str, Any]] = {
    START: {"task": str, "preset": str, "device": str, "models": list, "epochs": dict, "patients": dict, "data": str},
    STEP: {"model": str, "epoch": int, "epochs": int, "step": int, "steps": int, "loss": _NUMBER, "eta_s": _NUMBER,
           "fit": int, "fits": int},
    EPOCH: {"model": str, "epoch": int, "epochs": int, "train_loss": _NUMBER, "val": dict, "eta_s": _NUMBER,
            "fit": int, "fits": int},
    INFO: {"message": str},
    DONE: {"out": str, "seconds": _NUMBER, "metrics": dict},
    ERROR: {"message": str},
    CANCELLED: {"message": str},
}

#: The grade model's cross-validation variants, in the order the trainer fits them.
CV_VARIANTS: tuple[str, ...] = ("fusion", "clinical_only", "image_only")
FINAL_PHASE = "final"


@dataclass(frozen=True)
class Fit:
    """One fit of a model: ``index`` of ``count`` fits (the full preset fits the grade model 3k+1 times).

    ``phase`` is the label people read ("cv fusion fold 2/4", "final"); ``None`` for a model fitted once.
    """

    phase: str | None = None
    index: int = 0
    count: int = 1

    def tags(self) -> dict[str, Any]:
        """The fields a step or epoch event of this fit carries."""
        return {**({"phase": self.phase} if self.phase else {}), "fit": self.index, "fits": self.count}


def cv_fit(variant: str, fold: int, folds: int) -> Fit:
    """Fold ``fold`` (0-based) of ``folds`` of a cross-validation variant; the final fit comes after all of them."""
    return Fit(f"cv {variant} fold {fold + 1}/{folds}", CV_VARIANTS.index(variant) * folds + fold,
               len(CV_VARIANTS) * folds + 1)


def final_fit(folds: int) -> Fit:
    """The fit that is shipped, after ``folds``-fold cross-validation (0: none ran)."""
    n = len(CV_VARIANTS) * folds if folds >= 2 else 0
    return Fit(FINAL_PHASE, n, n + 1)


def event_problems(event: Any) -> list[str]:
    """What is wrong with one progress event against this contract; empty when it conforms."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return [f"not an event: {event!r:.80}"]
    kind = event["event"]
    if kind not in FIELDS:
        return [f"unknown event kind {kind!r}"]
    problems = [] if isinstance(event.get("time"), _NUMBER) else [f"{kind}: no time"]
    for name, kinds in FIELDS[kind].items():
        value = event.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            problems.append(f"{kind}: {name} is {value!r:.40}, not {kinds}")
    if kind in (STEP, EPOCH) and not problems and not 0 <= event["fit"] < event["fits"]:
        problems.append(f"{kind}: fit {event['fit']} outside 0..{event['fits'] - 1}")
    return problems
