"""The one lock around PyTorch modules that sessions share, and why it is fair.

The app keeps one Predictor per weights version for every browser session (threads of one server). ONNX Runtime's
``InferenceSession.run`` is thread-safe, so predictions on the ``onnx`` engine take no lock at all. PyTorch modules
are another matter only because Grad-CAM attaches hooks to them: while a CAM's hooks hang on a module, another
session's forward pass through that module would fire them. So the lock is held around Grad-CAM and, on the
``torch`` engine (whose modules Grad-CAM shares), around its forward passes.

Why a FIFO lock and not ``threading.RLock``: an RLock wakes waiters in no particular order, so under load a click
could be overtaken again and again (four visitors measured up to 1.9 s for a click that costs 0.5 s alone). With
tickets served in arrival order a click waits at most for the holders that arrived before it.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairRLock:
    """A reentrant lock granted in arrival order (first come, first served).

    Re-entry by the holder is free, so a caller may hold it around several calls that each take it (one
    acquisition per click, whatever the calls inside do).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[int] = deque()

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            self._queue.append(me)
            try:
                while self._owner is not None or self._queue[0] != me:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue so nobody waits on a ghost
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairRLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def held_by_me(self) -> bool:
        return self._owner == threading.get_ident()

    def __enter__(self) -> FairRLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


#: Held around Grad-CAM and the ``torch`` engine's forward passes; never around ONNX Runtime.
MODEL_LOCK = FairRLock()
