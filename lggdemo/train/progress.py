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

from lggdemo.train.events import STEP

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
    """A terminal progress bar per model, fed by the same events as every other listener."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._key: tuple[str, int] | None = None

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        kind = event["event"]
        if kind == "step":
            key = (event["model"], event["epoch"])
            if key != self._key:
                self.close()
                self._bar = tqdm(total=event["steps"], desc=f"{event['model']} {event['epoch']}/{event['epochs']}",
                                 leave=True, file=sys.stderr, dynamic_ncols=True)
                self._key = key
            self._bar.n = event["step"]
            self._bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
            self._bar.refresh()
        elif kind == "epoch":
            self.close()
            val = " ".join(f"{k}={v:.3f}" for k, v in event.get("val", {}).items())
            print(f"{event['model']} epoch {event['epoch']}/{event['epochs']}: loss={event['train_loss']:.4f} {val}",
                  file=sys.stderr)
        elif kind in ("done", "error", "cancelled", "info"):
            self.close()
            print(f"[{kind}] {event.get('message', event.get('out', ''))}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._key = None, None


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
