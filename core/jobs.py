"""Training in the background: one thread per run, stoppable between steps, resumable; and the
app's model of runs: a :class:`Run` (what it trains, its job while its model is kept) and a
session's :class:`RunHistory` with its retention rules.

Each :class:`TrainingJob` owns its trainer outright, so two sessions training at once share nothing
but the process. A run has an id by which any session of the process finds it (:func:`find_run`):
the Train page puts it in its URL, so a refreshed tab or a second one re-attaches to the live run.
"""
from __future__ import annotations

import gc
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from core.spec import ModelSpec
from core.trainer import History, TrainConfig, Trainer, TrainingDiverged

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
    mid_epoch: bool = False  # steps of an unfinished epoch have been taken

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def current_epoch(self) -> int:
        """The epoch the steps are in, counting from 1 (as a person reads "epoch 2/5"): the one under
        way, or the last one finished."""
        return min(self.epochs, self.epoch + 1) if self.mid_epoch else self.epoch


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
        elif self.running and (pace := t.epoch_pace()) is not None:  # the first epoch: from its steps so far
            per_step, ips = pace
            eta = per_step * (t.total_steps - t.step)
        return Progress(self.status, self.message, t.epoch, t.config.epochs, t.step, t.total_steps, ips, eta,
                        mid_epoch=not t.at_epoch_boundary)


# --- the app's model of runs ---------------------------------------------------------------------

_RUNS: "weakref.WeakValueDictionary[str, Run]" = weakref.WeakValueDictionary()
_RUNS_LOCK = threading.Lock()


def find_run(run_id: str) -> "Run | None":
    """The run with this id, if a session of this process still holds it (or it is still training)."""
    with _RUNS_LOCK:
        return _RUNS.get(run_id)


@dataclass(eq=False)
class Run:
    """One run of a session's history. While its model is kept, ``job`` holds the trainer (to
    resume, save, inspect); once let go, only its curves (:meth:`history`) and figures
    (:meth:`metrics`) remain. ``export`` and ``eval`` cache what the page derived from the model."""

    number: int
    name: str
    spec: ModelSpec
    config: TrainConfig
    dataset: str  # the data set's key
    note: str = ""  # the fine-tuning line (head kept or replaced)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    job: TrainingJob | None = None
    checkpoint: str | None = None  # the file name it was last saved as
    export: bytes | None = None
    eval: Any = None
    eval_step: int | None = None
    _history: History | None = None
    _metrics: dict[str, Any] | None = None
    # Sessions showing this run: session id → "is that session still connected".
    watchers: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with _RUNS_LOCK:
            _RUNS[self.id] = self

    def start(self, trainer: Trainer, grace_seconds: float = 30.0) -> TrainingJob:
        """Make and start this run's job. It stops itself, resumable, once no session has shown
        the run for ``grace_seconds`` (see :meth:`watched`)."""
        self.job = TrainingJob(trainer, self.name, watched=self.watched, grace_seconds=grace_seconds)
        self.job.run = self  # a run stays findable while it trains, even if no session holds it
        self.job.start()
        return self.job

    def watched(self) -> bool:
        """Whether a session that shows this run is still connected (True with none registered:
        nothing says otherwise, as in tests without a server)."""
        alive = list(self.watchers.values())
        return not alive or any(check() for check in alive)

    def watch(self, session_id: str, alive: Callable[[], bool]) -> None:
        self.watchers[session_id] = alive

    @property
    def status(self) -> str:
        return self.job.status if self.job is not None else FINISHED

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def history(self) -> History:
        return self.job.history() if self.job is not None else (self._history or History())

    def metrics(self) -> dict[str, Any]:
        return self.job.trainer.final_metrics() if self.job is not None else (self._metrics or {"epochs": 0})

    def release_data(self) -> None:
        """Let go of the training data: the run can no longer resume, its model stays."""
        if self.job is not None and not self.job.running:
            self.job.trainer.release_data()

    def release_model(self) -> None:
        """Keep the curves and figures only (not while it trains)."""
        if self.job is not None and not self.job.running:
            self._history, self._metrics = self.job.history(), self.job.trainer.final_metrics()
            self.job, self.export, self.eval = None, None, None


class RunHistory:
    """A session's runs, newest last, and the current one (the run the Train page shows).

    Retention: at most ``keep_runs`` runs; only the newest ``keep_models`` keep their models (to
    resume, save, inspect) — older ones keep curves and figures; only the current run keeps its
    training data (the only one that can resume). A run still training is never let go of.
    """

    def __init__(self, keep_runs: int = 12, keep_models: int = 4) -> None:
        self.keep_runs, self.keep_models = keep_runs, keep_models
        self.runs: list[Run] = []
        self.current: Run | None = None
        self.counter = 0  # runs started in this session, for their names (#1, #2, …)

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self.runs))

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> Run:
        return self.runs[i]

    def next_number(self) -> int:
        self.counter += 1
        return self.counter

    def add(self, run: Run) -> Run:
        """Append ``run`` (or, already here, keep it), make it current, and apply the retention rules."""
        if run not in self.runs:
            self.runs.append(run)
        self.current = run
        for old in self.runs:
            if old is not run:
                old.release_data()
        for old in self.runs[:-self.keep_models]:
            if old is not run:
                old.release_model()
        excess = len(self.runs) - self.keep_runs
        if excess > 0:
            dropped = [r for r in self.runs if r is not run and not r.running][:excess]
            self.runs = [r for r in self.runs if r not in dropped]
        # What was let go of sits in reference cycles (a job and its run point at each other): give
        # its memory back now, once per new run. (The app turns off Streamlit's collection after
        # every script run, which held the GIL from training once a second.)
        gc.collect()
        return run

    def attach(self, run: Run) -> Run:
        """Show another session's run here (a refreshed tab, a second tab): it joins this history
        as the current run, shared: both sessions see its curves and can stop or save it."""
        if run in self.runs:
            self.current = run
            return run
        self.runs.append(run)
        self.current = run
        excess = len(self.runs) - self.keep_runs
        if excess > 0:
            dropped = [r for r in self.runs if r is not run and not r.running][:excess]
            self.runs = [r for r in self.runs if r not in dropped]
        return run

    def find(self, run_id: str) -> Run | None:
        return next((r for r in self.runs if r.id == run_id), None)
