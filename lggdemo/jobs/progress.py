"""Reading the trainer's progress events (``progress.jsonl``) and log into what the pages show."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lggdemo.train.events import DONE, EPOCH, FINAL_EVENTS, INFO, START, STEP


@dataclass(frozen=True)
class RunProgress:
    """What the trainer's event file says so far (a partial last line is not read yet)."""

    started: dict[str, Any] | None = None  # the "start" event
    models: tuple[str, ...] = ()
    model: str | None = None  # the model being trained now
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    eta_s: float | None = None  # remaining seconds as of ``eta_time``
    eta_time: float | None = None
    phase: str | None = None  # the trainer's label of the current fit ("final", "cv fusion fold 2/4")
    fraction: float = 0.0  # 0..1 over all models (and cross-validation fits) of the run
    history: tuple[dict[str, Any], ...] = ()  # every "epoch" event, in order (cross-validation fits included)
    notes: tuple[str, ...] = ()  # the trainer's "info" messages
    steps_history: tuple[dict[str, Any], ...] = ()  # {"model", "phase", "x": epochs done as a float, "loss"}
    final: dict[str, Any] | None = None  # the "done" / "error" / "cancelled" event
    events: int = 0
    bad_lines: int = 0

    def eta_now(self, now: float | None = None) -> float | None:
        """The ETA counted down from when the trainer last reported it."""
        if self.eta_s is None or self.eta_time is None:
            return None
        return max(0.0, self.eta_s - max(0.0, (now or time.time()) - self.eta_time))


@dataclass
class _Parse:
    """Where the incremental parse of one progress file stands: bytes consumed and the state so far."""

    identity: tuple[int, int]  # (device, inode): a replaced file is parsed from the start
    offset: int
    values: dict[str, Any]
    key: tuple[int, int]  # (size, mtime) of the last parse
    progress: RunProgress


_PROGRESS_CACHE: dict[Path, _Parse] = {}


def read_progress(path: Path) -> RunProgress:
    """Parse the trainer's JSON-lines events. A last line without its newline is still being written: skipped.

    Lines that are not JSON objects are counted in ``bad_lines`` and ignored rather than failing the page.
    Parsing is incremental (only the bytes appended since the last call), because a long run writes
    thousands of events and every open tab asks every second or two.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return RunProgress()
    key, identity = (st.st_size, st.st_mtime_ns), (st.st_dev, st.st_ino)
    cached = _PROGRESS_CACHE.get(path)
    if cached and cached.identity == identity and cached.key == key:
        return cached.progress
    if not cached or cached.identity != identity or st.st_size < cached.offset:
        values: dict[str, Any] = {"history": [], "notes": [], "step_log": [], "events": 0, "bad_lines": 0}
        cached = _Parse(identity, 0, values, key, RunProgress())
    try:
        with open(path, "rb") as fh:
            fh.seek(cached.offset)
            raw = fh.read()
    except OSError:
        return cached.progress
    complete, newline, _partial = raw.rpartition(b"\n")
    values = cached.values
    for line in complete.split(b"\n") if newline else []:
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            values["bad_lines"] += 1
            continue
        if not isinstance(ev, dict) or "event" not in ev:
            values["bad_lines"] += 1
            continue
        values["events"] += 1
        _apply_event(values, ev)
    cached.offset += len(complete) + len(newline)
    cached.key = key
    cached.progress = RunProgress(
        started=values.get("started"), models=tuple(values.get("models", ())), model=values.get("model"),
        epoch=int(values.get("epoch", 0)), epochs=int(values.get("epochs", 0)), step=int(values.get("step", 0)),
        steps=int(values.get("steps", 0)), loss=values.get("loss"), eta_s=_model_eta(values),
        eta_time=values.get("eta_time"), phase=values.get("phase"), fraction=_fraction(values),
        history=tuple(values["history"]), notes=tuple(values["notes"]), steps_history=tuple(values["step_log"]),
        final=values.get("final"), events=values["events"], bad_lines=values["bad_lines"],
    )  # fmt: skip
    _PROGRESS_CACHE[path] = cached
    return cached.progress


def _model_eta(v: dict[str, Any]) -> float | None:
    """The trainer's ETA covers the current fit; with cross-validation, add the fits still to come."""
    eta = v.get("eta_s")
    if eta is None or (v.get("final") or {}).get("event") == DONE:
        return eta
    index, count = _phase_position(v)
    started, now = v.get("phase_started"), v.get("eta_time")
    if count - index <= 1 or started is None or now is None:
        return eta
    fit_seconds = max(0.0, now - started) + eta
    return eta + (count - index - 1) * fit_seconds


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _apply_event(v: dict[str, Any], ev: dict[str, Any]) -> None:
    kind = ev.get("event")
    if kind == START:
        v["started"] = ev
        models = ev.get("models")
        if isinstance(models, list):
            v["models"] = [str(m) for m in models]
    elif kind in (STEP, EPOCH):
        phase = ev.get("phase") if isinstance(ev.get("phase"), str) else None
        if (ev.get("model"), phase) != (v.get("model"), v.get("phase")) or "phase_started" not in v:
            v["phase_started"] = _num(ev.get("time"))
        v["model"] = ev.get("model", v.get("model"))
        v["phase"] = phase
        for k in ("epoch", "epochs", "step", "steps"):
            if isinstance(ev.get(k), int):
                v[k] = ev[k]
        for k, default in (("fit", 0), ("fits", 1)):  # the fit's place among the model's fits (see train.events)
            v[k] = ev[k] if isinstance(ev.get(k), int) else default
        if kind == STEP:
            v["loss"] = _num(ev.get("loss"))
            if v["loss"] is not None and v.get("steps"):
                x = max(0, v.get("epoch", 1) - 1) + v.get("step", 0) / v["steps"]
                v["step_log"].append({"model": v["model"], "phase": v["phase"], "x": x, "loss": v["loss"]})
        else:
            v["history"].append(ev)
            v["step"] = v.get("steps", 0)
            if _num(ev.get("train_loss")) is not None:
                v["loss"] = _num(ev.get("train_loss"))
        if _num(ev.get("eta_s")) is not None:
            v["eta_s"], v["eta_time"] = _num(ev["eta_s"]), _num(ev.get("time")) or time.time()
    elif kind == INFO and isinstance(ev.get("message"), str):
        v["notes"].append(ev["message"])
    elif kind in FINAL_EVENTS:
        v["final"] = ev
        if kind == DONE:
            v["eta_s"], v["eta_time"] = 0.0, _num(ev.get("time")) or time.time()


def _phase_position(v: dict[str, Any]) -> tuple[int, int]:
    """(index, count) of the current fit within its model, as the trainer numbered it (``fit`` / ``fits``)."""
    return int(v.get("fit", 0)), max(1, int(v.get("fits", 1)))


def _fraction(v: dict[str, Any]) -> float:
    final = v.get("final")
    if final and final.get("event") == DONE:
        return 1.0
    models = v.get("models") or []
    model, epochs = v.get("model"), v.get("epochs") or 0
    if not model or epochs < 1:
        return 0.0
    n = max(1, len(models))
    mi = models.index(model) if model in models else 0
    steps = v.get("steps") or 0
    fit = (max(0, v.get("epoch", 1) - 1) + (min(v.get("step", 0), steps) / steps if steps else 0.0)) / epochs
    index, count = _phase_position(v)
    within = (index + min(1.0, fit)) / count
    return float(min(1.0, max(0.0, (mi + min(1.0, within)) / n)))
