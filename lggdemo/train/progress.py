"""Progress events of a run: fanned out to listeners (a JSON-lines file, a terminal bar, a test's list).

Torch-free: the events are plain dicts whose schema :mod:`lggdemo.train.events` defines.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lggdemo.train.events import CANCELLED, DONE, EPOCH, ERROR, INFO, STEP

Event = dict[str, Any]
ProgressCallback = Callable[[Event], None]


class Cancelled(Exception):
    """Raised between steps once a stop was requested."""


class JsonlWriter:
    """Appends one JSON object per line and flushes, so another process can follow the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", buffering=1)

    def __call__(self, event: Event) -> None:
        self._fh.write(json.dumps(event, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TqdmReporter:
    """A terminal progress bar per model and epoch, fed by the same events as every other listener.

    tqdm's own rate is not shown: step events are throttled, so a bar often begins at a late step (or the
    last one) and tqdm divides those steps by the microseconds since it began ("9300.01it/s"). The rate
    shown is measured from the events' own times instead, once they span :data:`RATE_MIN_SPAN_S`.
    """

    #: Seconds of events a rate needs before it is shown.
    RATE_MIN_SPAN_S = 0.5
    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self) -> None:
        self._bar: Any = None
        self._key: tuple[str, str | None, int] | None = None
        self._first: tuple[int, float] | None = None  # (step, time) of the bar's first event

    @staticmethod
    def rate_text(steps: float, seconds: float) -> str:
        """``"2.5 steps/s"``, or ``"30.0 s/step"`` when a step takes longer than a second."""
        per_second = steps / seconds
        return f"{per_second:.1f} steps/s" if per_second >= 1 else f"{seconds / steps:.1f} s/step"

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        kind = event["event"]
        if kind == STEP:
            key = (event["model"], event.get("phase"), event["epoch"])
            if key != self._key:
                self.close()
                phase = f" ({event['phase']})" if event.get("phase") not in (None, "final") else ""
                self._bar = tqdm(total=event["steps"], desc=f"{event['model']}{phase} {event['epoch']}/{event['epochs']}",
                                 leave=True, file=sys.stderr, dynamic_ncols=True, bar_format=self.BAR_FORMAT)
                self._key, self._first = key, (event["step"], float(event.get("time", time.time())))
            self._bar.n = event["step"]
            postfix = {"loss": f"{event['loss']:.4f}"}
            done, span = event["step"] - self._first[0], float(event.get("time", time.time())) - self._first[1]
            if done > 0 and span >= self.RATE_MIN_SPAN_S:
                postfix["rate"] = self.rate_text(done, span)
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.refresh()
        elif kind == EPOCH:
            self.close()
            val = " ".join(f"{k}={v:.3f}" for k, v in event.get("val", {}).items())
            print(f"{event['model']} epoch {event['epoch']}/{event['epochs']}: loss={event['train_loss']:.4f} {val}",
                  file=sys.stderr)
        elif kind in (DONE, ERROR, CANCELLED, INFO):
            self.close()
            print(f"[{kind}] {event.get('message', event.get('out', ''))}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._key, self._first = None, None, None


class Progress:
    """Fans events out to listeners; throttles step events to a few per second."""

    def __init__(self, listeners: Sequence[ProgressCallback] = (), stop: threading.Event | None = None) -> None:
        self.listeners = list(listeners)
        self.stop = stop or threading.Event()
        self._last_step = 0.0

    def emit(self, event: str, **payload: Any) -> None:
        if event == STEP:
            now = time.monotonic()
            if now - self._last_step < 0.25 and payload.get("step") != payload.get("steps"):
                return
            self._last_step = now
        record = {"event": event, "time": time.time(), **payload}
        for listener in self.listeners:
            listener(record)

    def check(self) -> None:
        if self.stop.is_set():
            raise Cancelled()
