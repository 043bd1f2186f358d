"""``scgde train`` at run time: the plan and the time estimate, Ctrl-C, the closing summary.

Imported by :mod:`scgde.cli` only once torch and Lightning are needed anyway.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time

from lightning.pytorch.callbacks import Callback

#: the first line printed when the training starts (tests wait for it)
PLAN_MARKER = "[scgde] training:"


def say(text: str, file=None) -> None:
    """A ``[scgde]`` line (stdout by default), written around the progress bar rather than into it."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with Lightning
        print(f"[scgde] {text}", file=file or sys.stdout, flush=True)
        return
    tqdm.write(f"[scgde] {text}", file=file or sys.stdout)
    (file or sys.stdout).flush()


def duration(seconds: float) -> str:
    """``4000`` -> ``"1.1 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class StopRequest:
    """Ctrl-C while training: the first asks the training to stop after the current step; a second stops at once.

    Use as a context manager around ``model.train()``; outside the main thread it installs nothing.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        say("Ctrl-C: stopping after the current step (press Ctrl-C again to stop at once).", file=sys.stderr)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class TrainMonitor(Callback):
    """Prints the plan when the training starts and one time estimate; stops the training when asked.

    Parameters
    ----------
    plan
        Called with the number of optimiser steps the trainer will take (epochs x batches per
        epoch); returns the plan's text.
    stop
        The :class:`StopRequest` to honour after every step.
    estimate_after
        Seconds of training after which the time estimate is printed (once).
    """

    def __init__(self, plan, stop: StopRequest, estimate_after: float = 20.0):
        super().__init__()
        self.plan = plan
        self.stop = stop
        self.estimate_after = estimate_after
        self.planned: int | None = None
        self.steps = 0
        self.started: float | None = None
        self.seconds = 0.0
        self._estimated = False

    def on_train_start(self, trainer, pl_module) -> None:
        batches = trainer.num_training_batches
        epochs = trainer.max_epochs
        if epochs is not None and epochs > 0 and math.isfinite(batches):
            self.planned = int(epochs * batches)
        if trainer.is_global_zero:
            say(f"{PLAN_MARKER[len('[scgde] ') :]} {self.plan(self.planned, int(epochs or 0), batches)}")
        self.started = time.perf_counter()
        self._check_stop(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        self.seconds = time.perf_counter() - (self.started or time.perf_counter())
        if not self._estimated and self.seconds >= self.estimate_after and self.planned:
            self._estimated = True
            left = self.planned - self.steps
            if left > 0 and trainer.is_global_zero:
                per_step = self.seconds / self.steps
                say(
                    f"{self.steps:,} steps took {duration(self.seconds)} ({per_step:.2g} s a step): about "
                    f"{duration(left * per_step)} to go for the {self.planned:,} steps."
                )
        self._check_stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._check_stop(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.started is not None:
            self.seconds = time.perf_counter() - self.started

    def _check_stop(self, trainer) -> None:
        if self.stop.requested:
            trainer.should_stop = True


def last_value(history, key: str) -> float | None:
    """The last logged value of ``key`` in ``model.history`` (``None`` when not logged)."""
    frame = history.get(key) if hasattr(history, "get") else None
    if frame is None or len(frame) == 0:
        return None
    value = frame.iloc[-1, 0]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
