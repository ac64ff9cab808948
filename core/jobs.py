"""Training in the background: one thread per run, stoppable between steps, resumable.

The app keeps one :class:`TrainingJob` per browser session; each owns its trainer outright, so
two sessions training at once share nothing but the process.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from core.trainer import History, Trainer, TrainingDiverged

RUNNING, STOPPING, STOPPED, FINISHED, DIVERGED, FAILED, READY = (
    "running", "stopping", "stopped", "finished", "diverged", "failed", "ready",
)


@dataclass(frozen=True)
class Progress:
    """Where a run stands, for a progress bar."""

    status: str
    message: str
    epoch: int  # completed epochs
    epochs: int
    step: int
    total_steps: int
    images_per_second: float
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class TrainingJob:
    """A :class:`Trainer` run on a daemon thread. ``start()`` also resumes a stopped run.

    Any trainer will do: a new net, a fine-tuning one (``Trainer(..., init_from=...)``) or one
    resumed from a file (``Trainer.resume``); progress counts the steps of the whole run, so a
    resumed run's bar starts where the file left it."""

    def __init__(self, trainer: Trainer, name: str = "", watched: Callable[[], bool] | None = None,
                 grace_seconds: float = 30.0) -> None:
        """``watched`` says whether anyone still follows the run (the app passes "is its browser
        session alive"); a run nobody has watched for ``grace_seconds`` stops itself, resumable,
        instead of taking turns with live sessions until its last epoch."""
        self.trainer = trainer
        self._watched = watched
        self._grace = grace_seconds
        self._unwatched_since: float | None = None
        self._next_check = 0.0
        self.id = uuid.uuid4().hex[:8]
        self.name = name or self.id
        self.status = READY
        self.message = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def can_resume(self) -> bool:
        return not self.running and self.status in (STOPPED, READY) and not self.trainer.finished

    def start(self) -> None:
        """Start, or resume after :meth:`stop`; does nothing while already running."""
        if self.running:
            return
        if self.status in (DIVERGED, FAILED):
            raise RuntimeError(f"this run cannot continue: {self.message}")
        if self.trainer.finished:
            self.status = FINISHED
            return
        self._stop.clear()
        self._unwatched_since = None
        self.status, self.message = RUNNING, ""
        self._thread = threading.Thread(target=self._work, name=f"train-{self.id}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for _ in self.trainer.run(self._should_stop):
                pass
            self.status = FINISHED if self.trainer.finished else STOPPED
            if self._unwatched_since is not None and not self.trainer.finished:
                self.message = "stopped because its browser session closed; press Resume to continue"
        except TrainingDiverged as e:
            self.status, self.message = DIVERGED, str(e)
        except Exception as e:  # reported to the page, which shows it instead of a traceback
            self.status, self.message = FAILED, f"training failed: {type(e).__name__}: {e}"

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if self._watched is None or now < self._next_check:
            return False
        self._next_check = now + 1.0  # a cheap poll, not one per step
        if self._watched():
            self._unwatched_since = None
            return False
        if self._unwatched_since is None:
            self._unwatched_since = now
        return now - self._unwatched_since >= self._grace

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the run to stop after the current step and wait for it (up to ``timeout`` s)."""
        if self.running:
            self.status = STOPPING
            self._stop.set()
            self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def history(self) -> History:
        return self.trainer.history_snapshot()

    def progress(self) -> Progress:
        t = self.trainer
        epochs = t.history_snapshot().epochs
        ips = epochs[-1].images_per_second if epochs else 0.0
        eta = None
        if epochs and epochs[-1].step:
            per_step = sum(e.seconds for e in epochs) / epochs[-1].step
            eta = per_step * (t.total_steps - t.step)
        return Progress(self.status, self.message, t.epoch, t.config.epochs, t.step, t.total_steps, ips, eta)
