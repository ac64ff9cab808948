"""The training loop: recipes, schedules, batch order, events, history, stop/resume, saving,
fine-tuning from a checkpoint and resuming from a file. The step itself is :class:`core.engine.Engine`'s.

``Trainer.run`` is a generator of :class:`StepEvent` and :class:`EpochEvent`, so the command line
prints them and the app draws them as they come. It can be asked to stop between two steps and
later continue exactly where it stopped: same weights, optimizer state, batch order and random
draws as a run that never stopped.

``Trainer(..., init_from=checkpoint, freeze=...)`` fine-tunes: it starts from the checkpoint's net
and weights, keeps its head for the same classes (by name, in the checkpoint's order) or puts a new
head on for other classes, and can freeze everything but the head. ``Trainer.resume(checkpoint,
dataset)`` continues a run saved at the end of an epoch from the file, bit-exactly.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from core.augment import AUGMENTATIONS, augment_batch, augment_for, mirrors
from core.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from core.data import Dataset, DatasetError, generated_hands, shows_finger_counts
from core.device import pick_device
from core.distributed import Dist, all_reduce_sum, average_, peer_failures
from core.engine import Engine, EvalResult, evaluate
from core.nets import FREEZE, build_model, copy_weights, count_parameters, feature_head_split, freeze_features, replace_head
from core.spec import ARCHS, ModelSpec, Style, _is_whole
from core.tensors import images_to_tensor

OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "momentum": "SGD with momentum",
    "rmsprop": "RMSprop",
    "adam": "Adam",
}
PRECISIONS: dict[str, str] = {
    "auto": "bf16 where the hardware computes it natively (a GPU, or a CPU with AVX-512 BF16/AMX), else fp32",
    "fp32": "full single precision",
    "bf16": "bf16 autocast for the forward pass (weights and optimizer stay fp32)",
}
SCHEDULES: dict[str, str] = {
    "constant": "constant learning rate (the tutorial's)",
    "cosine": "short warm-up, then cosine decay to zero",
    "onecycle": "one cycle: warm up over 25 % of the run, then cosine decay",
}
MAX_GENERATED_HANDS = 20_000
RECIPE_GENERATED_HANDS = 1200  # about as many as SIGNS has photos: measured, README "Robustness"
FINETUNE_GENERATED_HANDS = 120  # 20 per class beside a few photos: measured, README "Fine-tuning"


class _TurnLock:
    """A first-come, first-served gate: runs in one process take turns step by step.

    Two threads running torch ops at once each drive the whole intra-op thread pool, and on a
    small CPU they thrash: together they get far less done than one run alone. Taking turns
    per step gives each about half the machine instead (``bench/bench_sessions.py`` measures
    runs sharing one server). FIFO order keeps one run from starving another. A process whose
    steps each use only part of the cores lets ``slots`` steps run at once (the app: one
    intra-op thread a step on 2 cores, two steps side by side; README, "Performance").
    """

    slots = 1  # steps that may run at once

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0  # the next ticket to be let in
        self._active = 0
        self.runs = 0  # training runs in progress in this process (Trainer.run)

    @contextlib.contextmanager
    def run_going(self) -> Iterator[None]:
        """Count a training run as in progress while the block lasts."""
        with self._cond:
            self.runs += 1
        try:
            yield
        finally:
            with self._cond:
                self.runs -= 1

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == ticket and self._active < self.slots)
            self._serving += 1
            self._active += 1
            self._cond.notify_all()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()


COMPUTE_TURNS = _TurnLock()

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # images, labels, padding weight (or None)


class ConfigError(ValueError):
    """A training setting outside its valid range; the message names the setting and the range."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run besides the net and the data.

    ``batch_size=0`` means full batch (one step per epoch, as in the tutorial's first example).
    ``weight_decay`` is L2 regularisation as the optimizers implement it.
    """

    optimizer: str = "adam"
    lr: float = 0.003
    momentum: float = 0.9
    alpha: float = 0.99
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    augment: bool = True
    augmentation: str = "standard"  # which augmentation, when augment is on: see core.augment.AUGMENTATIONS
    # Generated finger-count hands added to the training split (core.data.generated_hands): for data
    # sets of finger counts 0–5 only; they teach poses and framings the photos lack.
    generated_hands: int = 0
    batch_size: int = 64
    epochs: int = 20
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    cuda_graph: bool = False  # capture each training step in a CUDA graph (on CUDA; see core.engine)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def validate(self, n_train: int | None = None) -> None:
        """Raise :class:`ConfigError` naming the first setting outside its valid range."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.augmentation not in AUGMENTATIONS:
            raise ConfigError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {self.augmentation!r}")
        if not isinstance(self.cuda_graph, bool):
            raise ConfigError(f"cuda_graph must be true or false; got {self.cuda_graph!r}")
        if len(self.betas) != 2:  # before the checks below index betas[1]
            raise ConfigError(f"Adam betas must be two numbers; got {self.betas}")
        checks = [
            ("learning rate", self.lr, 1e-7, 10.0),
            ("momentum", self.momentum, 0.0, 0.999),
            ("RMSprop alpha", self.alpha, 0.0, 0.9999),
            ("Adam beta1", self.betas[0], 0.0, 0.9999),
            ("Adam beta2", self.betas[1], 0.0, 0.99999),
            ("weight decay", self.weight_decay, 0.0, 1.0),
            ("epochs", self.epochs, 1, 10_000),
            ("seed", self.seed, 0, 2**31 - 1),
            ("generated hands", self.generated_hands, 0, MAX_GENERATED_HANDS),
        ]
        for name, value, low, high in checks:
            if name in ("epochs", "seed", "generated hands") and not _is_whole(value):  # 2.5 epochs or "3" are not a setting
                raise ConfigError(f"{name} must be a whole number in {low:g}–{high:g}; got {value!r}")
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"{name} must be in {low:g}–{high:g}; got {value}")
        high = n_train + self.generated_hands if n_train is not None else 1_000_000
        if not _is_whole(self.batch_size) or not 0 <= self.batch_size <= high:
            raise ConfigError(
                f"batch size must be 1–{high} (the number of training images), or 0 for full batch; got {self.batch_size!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)

    def describe(self) -> str:
        """One line for run lists: optimizer, lr, regularisation, batches."""
        opt = OPTIMIZERS[self.optimizer]
        if self.optimizer == "momentum":
            opt += f" {self.momentum:g}"
        parts = [opt, f"lr {self.lr:g} ({self.schedule})", f"L2 {self.weight_decay:g}"]
        parts.append("full batch" if self.batch_size == 0 else f"batch {self.batch_size}")
        parts.append(_epochs(self.epochs))
        if self.augment:
            parts.append("augmented" if self.augmentation == "standard" else f"augmented ({self.augmentation})")
        if self.generated_hands:
            parts.append(f"+ {self.generated_hands:,} generated hands")
        if self.cuda_graph:
            parts.append("CUDA graph")
        return ", ".join(parts)


def recipe(arch: str, classes: Sequence[str] | None = None) -> TrainConfig:
    """The default recipe per net: what measurably trains well, not the tutorial's settings.

    ``classes`` are the data set's: the LeNet's recipe for finger counts 0–5 (SIGNS, a set of your
    own hands) adds generated hands to the photos, so it reads hands unlike SIGNS' (README,
    "Robustness"). (The tutorial's LeNet recipe — Adam 1e-4, L2 0.01, constant rate, no
    augmentation — needs 1,000 epochs for 93 % on SIGNS.)
    """
    if arch == "mlp":
        return TrainConfig(optimizer="adam", lr=0.003, weight_decay=1e-4, batch_size=64, epochs=40, augment=False)
    if arch == "lenet":
        # mixed: webcam-like images in 70 % of each batch, for the same reason
        hands = RECIPE_GENERATED_HANDS if classes is not None and shows_finger_counts(classes) else 0
        return TrainConfig(optimizer="adam", lr=0.01, weight_decay=5e-4, batch_size=64, epochs=40, augmentation="mixed",
                           generated_hands=hands)
    if arch == "resnet50":
        return TrainConfig(optimizer="adam", lr=0.002, weight_decay=1e-4, batch_size=64, epochs=30)
    raise ConfigError(f"no recipe for architecture {arch!r}")


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for ``step`` (0-based) of ``total_steps`` under ``cfg.schedule``.

    A pure function of the step, so a resumed run needs no scheduler state to stay on course.
    """
    if cfg.schedule == "constant" or total_steps <= 1:
        return cfg.lr
    warm = max(1, int(total_steps * (0.25 if cfg.schedule == "onecycle" else 0.05)))
    start = cfg.lr / 25 if cfg.schedule == "onecycle" else cfg.lr / 10
    if step < warm:
        return start + (cfg.lr - start) * step / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass(frozen=True)
class StepEvent:
    step: int
    epoch: int  # 0-based epoch this step belongs to
    lr: float


@dataclass(frozen=True)
class EpochEvent:
    epoch: int  # 1-based: epochs completed
    step: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float  # this epoch's training and evaluation
    images_per_second: float  # training images through forward + backward per second


@dataclass
class History:
    """Losses per step and figures per epoch of one run (resumes append to it)."""

    step_losses: list[float] = field(default_factory=list)
    epochs: list[EpochEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"step_losses": list(self.step_losses), "epochs": [asdict(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(list(d.get("step_losses", [])), [EpochEvent(**e) for e in d.get("epochs", [])])

    def copy(self) -> "History":
        return History(list(self.step_losses), list(self.epochs))


def spare_core(device: torch.device, world: int = 1) -> bool:
    """Whether a training step on ``device`` leaves a core free for making the next batch beside it:
    on the CPU, one process, with fewer intra-op threads than the machine has cores (the app trains
    with one thread on a 2-core machine; the command line uses them all). README, "Performance"."""
    return device.type == "cpu" and world == 1 and torch.get_num_threads() < (os.cpu_count() or 1)


def _batch_bounds(n: int, batch_size: int, pad: bool = False) -> list[tuple[int, int]]:
    """Mini-batch slices over ``n`` items; a last batch of one is merged into the one before,
    because batch norm cannot normalise a single sample — unless batches are padded to one shape."""
    bs = n if batch_size == 0 else min(batch_size, n)
    starts = list(range(0, n, bs))
    if len(starts) > 1 and n - starts[-1] == 1 and not pad:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


class Trainer:
    """One training run: its own model, optimizer, data on the device and random generators.

    Nothing mutable is shared with other trainers in the process, except PyTorch's global random
    state that ``nn.Dropout`` draws from; the trainer saves and restores it around each stretch of
    training so that stop/resume reproduces an uninterrupted run.

    With ``init_from`` the run fine-tunes a saved net: the checkpoint's spec (architecture, input
    channels and size, hidden sizes, batch norm, dropout) and weights are the start, and ``spec``
    may be None (if given, it must describe the same net; only the class count may differ). Data
    with the checkpoint's classes (compared by name) keeps its head, the data set reordered to the
    checkpoint's class order; other classes get a new, Kaiming-initialised head
    (:func:`~core.nets.replace_head`). ``freeze="features"`` trains the head only
    (:func:`~core.nets.freeze_features`). :attr:`head_note` says in one line which happened.

    The loop reads figures back from the device only when it reports: at the end of an epoch, and
    mid-epoch at most every :attr:`report_seconds` (for live charts); a step never waits for the
    device. ``pad_batches`` gives every batch one shape: a short last batch is filled up with
    images from the start of the epoch's order, masked out of the loss and the accuracy (they do
    take part in a training-mode batch norm's statistics). Where a step leaves a core free
    (:func:`spare_core`), the compute turns let two in at once and no other run goes on, the next
    batch is augmented on a worker thread while the step runs (:attr:`augment_ahead`): the same
    draws in the same order, so the run is the same bit for bit.

    With ``dist`` (one process of a ``torchrun`` launch, its process group started) every process
    draws the same seeded order, cuts it into global batches of ``batch_size`` × processes and
    trains its own slice of each, padded to one shape; DDP averages the gradients, so the run
    follows the one-process run with the global batch. Figures are summed over the processes
    when read (once per epoch); the test split is shared out too.
    """

    report_seconds = 0.5  # mid-epoch read-backs of the step losses, for live charts

    def __init__(
        self,
        spec: ModelSpec | None,
        dataset: Dataset,
        config: TrainConfig,
        style: Style = "module",
        init_from: Checkpoint | None = None,
        freeze: str = "none",
        pad_batches: bool = False,
        dist: Dist | None = None,
    ) -> None:
        config.validate(len(dataset.x_train))
        if freeze not in FREEZE:
            raise ConfigError(f"freeze must be one of {', '.join(FREEZE)}; got {freeze!r}")
        if freeze != "none" and init_from is None:
            raise ConfigError(
                "freezing the features needs a checkpoint to start from (init_from): a new net's features are random"
            )
        self.freeze = freeze
        self.init_from: dict[str, Any] | None = None  # the checkpoint this run started from (file, classes, data)
        self.new_head = False
        self.head_note = ""  # one line: kept or replaced the checkpoint's head, and why
        self.resumed_from: str | None = None  # the file this run was last resumed from
        if init_from is not None:
            spec, dataset = self._fit_checkpoint(init_from, spec, dataset)
        elif spec is None:
            raise ConfigError("a net to train is needed: give its spec, or a checkpoint to start from (init_from)")
        if spec.num_classes != dataset.num_classes:
            raise ConfigError(
                f"the net has {spec.num_classes} output classes but {dataset.title} has {dataset.num_classes}"
            )
        self.spec, self.dataset, self.config, self.style = spec, dataset, config, style
        self.dist = dist
        self.world, self.rank = (dist.world_size, dist.rank) if dist else (1, 0)
        self.device = dist.device(pick_device(config.device)) if dist else pick_device(config.device)
        self.engine = Engine(self._first_model(init_from), config, self.device, spec.arch, config.precision,
                             capture=config.cuda_graph)
        self.x_train, self.y_train = self._to_device(*self._training_images(dataset, config))
        self.x_test, self.y_test = self._to_device(dataset.x_test, dataset.y_test)
        # A process must never get an empty batch; a captured step replays one shape.
        self.pad_batches = pad_batches or self.world > 1 or self.engine.capture
        self.batches = _batch_bounds(len(self.x_train), config.batch_size * self.world, pad=self.pad_batches)
        self.batch_size = -(-(self.batches[0][1] - self.batches[0][0]) // self.world)  # per process
        if min(hi - lo for lo, hi in self.batches) < 2 and any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in self.model.modules()):
            # A training-mode batch norm normalises over the batch: one image has no spread (and
            # BatchNorm1d raises mid-run). Frozen batch norms are in eval mode and need no batch.
            raise ConfigError(
                f"batch size {config.batch_size} leaves batches of one image, which a net with batch norm cannot "
                "train on: use a batch size of 2 or more, or 0 for full batch"
            )
        self.total_steps = config.epochs * len(self.batches)
        # The learning-rate schedule runs from this step to total_steps: 0, unless a finished run
        # was extended (see resume), when the extra epochs run the schedule again.
        self.schedule_start = 0

        # One order for all processes; each process its own augmentation and dropout draws.
        self.shuffle_gen = torch.Generator().manual_seed(config.seed)
        self.augment_gen = torch.Generator(device=self.device).manual_seed(config.seed + 1 + 1000 * self.rank)
        self.augment_config = augment_for(spec.arch, config.augmentation)
        self.dropout_rng = _seeded_rng_state(config.seed + 2 + 1000 * self.rank, self.device)
        # Augment the next batch on a second thread while the step runs, where the step leaves a
        # core free (the app: one intra-op thread on 2 cores). The same draws in the same order.
        self.augment_ahead = config.augment and spare_core(self.device, self.world)
        self._ahead: tuple[int, int, Future] | None = None  # (epoch, batch) being made, and (its batch, seconds)
        self._pool: ThreadPoolExecutor | None = None
        self.history = History()
        self.lock = threading.Lock()  # guards history for readers in other threads
        self.step = 0
        self.epoch = 0  # completed epochs
        self._order: torch.Tensor | None = None  # this epoch's batch order, while an epoch is open
        # The epoch's counters exist from the start: the live view reads them (epoch_pace) from
        # another thread, possibly before the first epoch has begun.
        self._batch, self._seen, self._train_seconds, self._capture_seconds = 0, 0, 0.0, 0.0
        self._pending: list[torch.Tensor] = []  # step losses on the device, not yet read back
        self._next_report = 0.0
        self._lr = config.lr  # the last step's rate (host copy)
        self._in_run = False  # inside run(): the dropout stream is the global RNG's state
        self._fingerprint: str | None = None
        self.diverged: str | None = None
        if self.world > 1:
            self.engine.distribute()
            self.report_seconds = math.inf  # reads are collective: every process must read at the same step

    @staticmethod
    def _training_images(dataset: Dataset, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
        """The data set's training images, and after them the generated hands the config asks for."""
        if not config.generated_hands:
            return dataset.x_train, dataset.y_train
        try:
            x, y = generated_hands(dataset, config.generated_hands, config.seed)
        except DatasetError as e:
            raise ConfigError(str(e)) from None
        return np.concatenate([dataset.x_train, x]), np.concatenate([dataset.y_train, y])

    def _fit_checkpoint(self, ckpt: Checkpoint, spec: ModelSpec | None, dataset: Dataset) -> tuple[ModelSpec, Dataset]:
        """The spec and data set of a run fine-tuning ``ckpt``; decides whether the head stays."""
        name = ckpt.source or "the checkpoint"
        if spec is not None:
            diffs = spec_differences(ckpt.spec, spec)
            if diffs:
                raise ConfigError(
                    f"{name} is a {ckpt.spec.describe()} net and fine-tuning keeps it as it is; the net asked for "
                    f"differs in {'; '.join(diffs)} (checkpoint vs asked) — leave those settings out"
                )
        ours, theirs = tuple(dataset.classes), tuple(ckpt.classes)
        if len(set(ours)) == len(ours) and set(ours) == set(theirs):
            if ours != theirs:
                dataset = dataset.with_class_order(theirs)
            self.head_note = f"keeps the checkpoint's head: the same {len(theirs)} classes ({_names(theirs)})"
        else:
            self.new_head = True
            self.head_note = (
                f"new head for {len(ours)} classes ({_names(ours)}); the checkpoint had {len(theirs)} ({_names(theirs)})"
            )
        self.init_from = {
            "file": ckpt.source,
            "classes": list(theirs),
            "dataset": str(ckpt.dataset.get("title", "")),
            "dataset_key": str(ckpt.dataset.get("key", "")),
            "net": ckpt.spec.describe(),
        }
        return ckpt.spec.replace(num_classes=dataset.num_classes), dataset

    def _first_model(self, ckpt: Checkpoint | None) -> nn.Module:
        # A seeded build never touches the global RNG, even where its weights are overwritten next.
        if ckpt is None:
            return build_model(self.spec, self.style, seed=self.config.seed)
        model = copy_weights(ckpt.model, build_model(ckpt.spec, self.style, seed=self.config.seed))
        if self.new_head:
            head_gen = torch.Generator().manual_seed(self.config.seed)
            replace_head(model, ckpt.spec, self.dataset.num_classes, head_gen)
        if self.freeze == "features":
            freeze_features(model)
        return model

    @property
    def model(self) -> nn.Module:
        return self.engine.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.engine.optimizer

    @classmethod
    def resume(cls, ckpt: Checkpoint, dataset: Dataset, *, epochs: int | None = None,
               device: str | None = None) -> "Trainer":
        """Continue a run from a checkpoint saved at the end of an epoch, as if it had never stopped.

        Weights, optimizer state, step and epoch, the schedule position, the shuffle, augmentation
        and dropout random streams and the history all come from the file, so a run stopped after
        k of N epochs, saved, loaded and resumed ends bit-identical to one that ran N epochs
        straight (on the same kind of device). ``dataset`` must be the data it trained on (same
        classes, sizes and images; classes in another order are reordered).

        Refused with :class:`~core.checkpoint.CheckpointError` saying what to do instead: a file
        with no training state (saved by an older TorchLab), one saved mid-epoch, one from other
        data or another kind of device, and a finished run. A finished run can be *extended* with
        ``epochs`` larger than its own: the extra epochs run the configured schedule again over
        themselves (a warm restart: warm-up, then decay), with the optimizer state and random
        streams carried on; with the constant schedule that equals a run of ``epochs`` from the
        start. ``epochs`` is refused for a run that has not finished.
        """
        name = ckpt.source or "the checkpoint"
        state = ckpt.resume
        if not state:
            raise CheckpointError(
                f"{name}: holds no training state to resume (saved by an older TorchLab) — fine-tune from it instead (--init-from)"
            )
        try:
            done, step = int(state["epoch"]), int(state["step"])
            boundary = bool(state["epoch_boundary"])
            config = TrainConfig.from_dict(ckpt.training)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{name}: damaged training state ({e})") from None
        if int(state.get("world_size", 1)) != 1:
            raise CheckpointError(
                f"{name}: saved by a run of {state['world_size']} processes (torchrun), whose random streams were "
                "spread over them — fine-tune from it instead (--init-from)"
            )
        if not boundary or ckpt.optimizer_state is None:
            raise CheckpointError(
                f"{name}: saved in the middle of epoch {done + 1} (after step {step}); only a checkpoint saved at the end "
                "of an epoch can be resumed — fine-tune from it instead (--init-from), or let the run finish an epoch "
                "and save it again"
            )
        if device is not None:
            config = config.replace(device=device)
        planned, extend = config.epochs, False
        if epochs is None and done >= planned:
            raise CheckpointError(
                f"{name}: this run already finished its {_epochs(planned)} — to train it further, fine-tune from it "
                f"(--init-from: a new run with its own optimizer and schedule) or extend it (--epochs more than "
                f"{planned}: the extra epochs run the schedule again)"
            )
        if epochs is not None and epochs != planned:
            if done < planned:
                raise CheckpointError(
                    f"{name}: this run has {planned - done} of its {_epochs(planned)} left — resume it as it is "
                    "(without --epochs); a finished run can then be extended"
                )
            if not _is_whole(epochs) or epochs < planned:
                raise ConfigError(f"epochs: extending a finished run of {_epochs(planned)} needs more than {planned}; got {epochs!r}")
            config, extend = config.replace(epochs=epochs), True
        dataset = _same_data(name, state.get("data"), dataset)
        origin = ckpt.origin or {}
        trainer = cls(ckpt.spec, dataset, config, ckpt.style)
        trainer._continue_from(ckpt, state, str(origin.get("freeze", "none")), extend)
        trainer.new_head = bool(origin.get("new_head", False))
        trainer.init_from = origin.get("init_from") or None
        trainer.resumed_from = ckpt.source or "a checkpoint"
        return trainer

    def _continue_from(self, ckpt: Checkpoint, state: dict[str, Any], freeze: str, extend: bool) -> None:
        name = ckpt.source or "the checkpoint"
        saved_on = str(state.get("device", "cpu"))
        if saved_on != self.device.type:
            raise CheckpointError(
                f"{name}: saved on {saved_on}, and its random streams continue only on the same kind of device — "
                f"resume it with --device {saved_on}, or fine-tune from it (--init-from)"
            )
        if freeze not in FREEZE:
            raise CheckpointError(f"{name}: unknown freeze setting {freeze!r}")
        try:
            self.model.load_state_dict(ckpt.model.state_dict())
            if freeze == "features":
                freeze_features(self.model)
            self.freeze = freeze
            self.engine.rebuild_optimizer()
            self.engine.load_optimizer_state(ckpt.optimizer_state)
            self.shuffle_gen.set_state(state["shuffle_rng"])
            self.augment_gen.set_state(state["augment_rng"])
            self.dropout_rng = state["dropout_rng"].clone()
            self.history = History.from_dict(ckpt.history)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{name}: damaged training state ({_short(e)})") from None
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        if self.step != self.epoch * len(self.batches):
            raise CheckpointError(
                f"{name}: {self.step} steps in {self.epoch} epochs do not fit {len(self.batches)} batches per epoch "
                "(damaged training state)"
            )
        self.schedule_start = self.step if extend else int(state.get("schedule_start", 0))

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    @property
    def trainable_parameters(self) -> int:
        return count_parameters(self.model, trainable_only=True)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    @property
    def origin(self) -> dict[str, Any]:
        """Where this run's net came from, as stored in its checkpoint."""
        return {"init_from": self.init_from, "freeze": self.freeze, "new_head": self.new_head,
                "resumed_from": self.resumed_from}

    def describe_freeze(self) -> str:
        """One line: what trains and what is frozen."""
        if self.freeze == "none":
            return f"all layers train ({self.parameters:,} parameters)"
        features, head = feature_head_split(self.model)
        return (
            f"frozen: the features ({len(features)} layers: weights and batch-norm statistics); the head "
            f"({len(head)} layers) trains — {self.trainable_parameters:,} of {self.parameters:,} parameters"
        )

    def _to_device(self, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        # Moved once, then indexed there: no DataLoader, no per-sample collation.
        # torch.tensor copies, so read-only (cached, shared) arrays are never written through.
        x = images_to_tensor(torch.tensor(x, device=self.device), self.spec.in_channels, self.spec.input_size)
        return x.contiguous(memory_format=self.engine.memory_format), torch.tensor(y, device=self.device)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[StepEvent | EpochEvent]:
        """Train until the configured epochs are done or ``should_stop()`` says so between steps.

        Yields a :class:`StepEvent` after every step and an :class:`EpochEvent` after every epoch.
        Raises :class:`TrainingDiverged` when a loss it reads back is not finite; the model is then
        unusable and :attr:`diverged` holds the message. A stop asked for at the end of an epoch
        leaves the run at the epoch boundary (the next epoch's order not yet drawn), so a save
        then stores everything :meth:`resume` needs.
        """
        if self.diverged:
            raise TrainingDiverged(self.diverged)
        saved_rng = _get_rng_state(self.device)
        _set_rng_state(self.dropout_rng, self.device)
        self._in_run = True
        self._next_report = time.monotonic() + self.report_seconds
        self.model.train()
        try:
            with COMPUTE_TURNS.run_going():  # counted, so a run can tell whether it is alone
                while not self.finished:
                    if should_stop():
                        return
                    if self._order is None:
                        self._start_epoch()
                    # Outside any turn. Beside other runs no core is spare, nor where one turn goes at a
                    # time (the worker's turn would wait for the step's): the batch is then made in the
                    # step's turn, as without a worker (two sessions trained slower). One made ahead is used.
                    ahead = self.augment_ahead and COMPUTE_TURNS.runs == 1 and COMPUTE_TURNS.slots > 1
                    batch, made = self._take_ahead(ahead) if ahead or self._ahead is not None else (None, 0.0)
                    with COMPUTE_TURNS, self._peers():
                        event = self._train_step(batch, made)
                    yield event
                    if self._batch == len(self.batches):
                        with COMPUTE_TURNS, self._peers():
                            event = self._end_epoch()
                        yield event
                    elif time.monotonic() >= self._next_report:
                        self._read_losses()
        finally:
            if self._pool is not None:  # a batch being made ahead is finished and kept for the next run
                self._pool.shutdown(wait=True)
                self._pool = None
            self.dropout_rng = _get_rng_state(self.device)
            self._in_run = False
            _set_rng_state(saved_rng, self.device)
            if not self.diverged and self.world == 1:  # (a read is collective: not while a peer may be gone)
                try:  # a stopped or abandoned run keeps its curve up to the last step taken
                    self._read_losses()
                except TrainingDiverged:
                    pass  # recorded in self.diverged; the next run() raises it

    def _start_epoch(self) -> None:
        # Counters first: a reader that sees the new order never pairs it with the last epoch's.
        self._batch, self._seen, self._train_seconds, self._capture_seconds = 0, 0, 0.0, 0.0
        self._order = torch.randperm(len(self.x_train), generator=self.shuffle_gen).to(self.device)
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device)
        self._clock = _DeviceClock(self.device)

    def _make_batch(self, k: int) -> Batch:
        """This epoch's batch ``k`` for this process, augmented: (images, labels, padding weight or None)."""
        lo, hi = self.batches[k]  # the global batch
        a = min(hi, lo + self.rank * self.batch_size)  # this process's slice of it
        b = min(hi, a + self.batch_size)
        idx, weight = self._order[a:b], None
        if self.pad_batches and (b - a < self.batch_size or self.engine.capture):  # the graph takes a weight always
            idx = torch.cat([idx, self._order[: self.batch_size - (b - a)]])
            weight = (torch.arange(self.batch_size, device=self.device) < b - a).float()
        xb, yb = self.x_train[idx], self.y_train[idx]
        if self.config.augment:
            xb = augment_batch(xb, self.augment_gen, self.augment_config)
        # (contiguous: a no-op unless indexing or warping changed the layout)
        return xb.contiguous(memory_format=self.engine.memory_format), yb, weight

    def _make_batch_in_turn(self, k: int) -> tuple[Batch, float]:
        """Batch ``k`` made in a turn of its own, and the seconds it took (not the wait for the turn)."""
        with COMPUTE_TURNS:  # the batch's compute takes a turn like a step: runs sharing the machine see it
            t0 = time.perf_counter()
            return self._make_batch(k), time.perf_counter() - t0

    def _take_ahead(self, start_next: bool = True) -> tuple[Batch | None, float]:
        """This step's batch and the seconds of its making that count as the run's time.

        The batch was made on the worker while the previous step ran, or is made here (the epoch's
        first batch, after a stop, or when the last step did not start one), or is None, to be made
        in the step's turn, when no batch goes ahead now. Counted: the making the step waited for,
        never a wait for another run's turn. With ``start_next``, the next batch of the epoch is
        started on the worker. One batch at a time, in order, so the augmentation draws its numbers
        as it would inline."""
        k = self._batch
        ahead, self._ahead = self._ahead, None
        batch, seconds = None, 0.0
        if ahead is not None and ahead[:2] == (self.epoch, k):
            t0 = time.perf_counter()
            batch, made = ahead[2].result()
            seconds = min(time.perf_counter() - t0, made)  # the rest was made beside the step
        elif start_next:
            batch, seconds = self._make_batch_in_turn(k)
        if start_next and k + 1 < len(self.batches):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="torchlab-augment")
            self._ahead = (self.epoch, k + 1, self._pool.submit(self._make_batch_in_turn, k + 1))
        return batch, seconds

    def _train_step(self, batch: Batch | None, made: float = 0.0) -> StepEvent:
        """One step on ``batch`` (made before the step's turn, ``made`` seconds of this run's time),
        or on the next batch made here."""
        t0 = time.perf_counter() - made
        lo, hi = self.batches[self._batch]  # the global batch
        xb, yb, weight = batch if batch is not None else self._make_batch(self._batch)
        self._lr = lr_at(self.config, self.step - self.schedule_start, self.total_steps - self.schedule_start)
        self.engine.set_lr(self._lr)
        captured_before = self.engine.capture_seconds
        loss, correct = self.engine.step(xb, yb, weight, (hi - lo) / self.world if self.world > 1 else None)
        self._capture_seconds += self.engine.capture_seconds - captured_before  # reported apart from training
        self._pending.append(loss)  # summed over the processes and divided by their number: the batch's mean
        self._loss_sum += loss * ((hi - lo) / self.world)
        self._correct += correct
        self._seen += hi - lo
        self._train_seconds += time.perf_counter() - t0 - (self.engine.capture_seconds - captured_before)
        event = StepEvent(self.step, self.epoch, self._lr)
        self.step += 1
        self._batch += 1
        return event

    def _read_losses(self) -> None:
        """Read the pending step losses back into the history (one sync)."""
        if self._pending:
            losses, self._pending = self._gather(torch.stack(self._pending)).tolist(), []
            self._record_losses([v / self.world for v in losses])
        self._next_report = time.monotonic() + self.report_seconds

    def _peers(self) -> contextlib.AbstractContextManager:
        """A lost peer of a distributed run becomes a DistributedError that says so."""
        return peer_failures() if self.world > 1 else contextlib.nullcontext()

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the processes of a distributed run (as it is, alone)."""
        return all_reduce_sum(t) if self.world > 1 else t

    def _record_losses(self, losses: list[float]) -> None:
        with self.lock:
            first = len(self.history.step_losses)
            good = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
            self.history.step_losses.extend(losses[:good])
        if good < len(losses):
            step = first + good
            lr = lr_at(self.config, step - self.schedule_start, self.total_steps - self.schedule_start)
            self.diverged = (
                f"the loss became {losses[good]} at epoch {step // len(self.batches) + 1}, step {step + 1} (learning "
                f"rate {lr:.3g}): training stopped and these weights are unusable — try a smaller learning rate "
                f"(e.g. {self.config.lr / 10:g})"
            )
            raise TrainingDiverged(self.diverged)

    def _end_epoch(self) -> EpochEvent:
        self._clock.stop()
        t0 = time.perf_counter()
        if self.world > 1 and self.device.type != "cuda":
            # Per-process batch norms kept statistics of their own shares: every process tests (and
            # process 0 saves) the same net, with the mean of them. (SyncBatchNorm's agree already.)
            average_([b for b in self.model.buffers() if b.is_floating_point()])
        test_loss, test_correct = self.engine.evaluate_sums(self.x_test[self.rank :: self.world],
                                                            self.y_test[self.rank :: self.world])
        # The epoch's one read-back: its step losses, training sums and test sums together.
        *losses, loss_sum, correct, test_loss_sum, test_hits = self._gather(torch.stack(
            [*self._pending, self._loss_sum, self._correct, test_loss, test_correct])).tolist()
        self._pending = []
        self._record_losses([v / self.world for v in losses])
        self._next_report = time.monotonic() + self.report_seconds
        train_seconds = max(1e-9, self._clock.seconds(self._train_seconds + self._capture_seconds) - self._capture_seconds)
        seconds = self._train_seconds + time.perf_counter() - t0
        self.epoch += 1
        self._order = None
        event = EpochEvent(
            epoch=self.epoch,
            step=self.step,
            train_loss=loss_sum / self._seen,
            train_acc=correct / self._seen,
            test_loss=test_loss_sum / len(self.y_test),
            test_acc=test_hits / len(self.y_test),
            lr=self._lr,
            seconds=seconds,
            images_per_second=self._seen / train_seconds if train_seconds > 0 else 0.0,
        )
        with self.lock:
            self.history.epochs.append(event)
        return event

    def history_snapshot(self) -> History:
        """A copy of the history that another thread may read while training goes on."""
        with self.lock:
            return self.history.copy()

    @property
    def mirror_average(self) -> bool:
        """Whether its saved checkpoint will read photos with their mirror images
        (:attr:`core.checkpoint.Checkpoint.mirror_average`): trained on images mirrored half the time."""
        return self.config.augment and mirrors(self.spec.arch, self.config.augmentation)

    def evaluate_test(self, mirror: bool = False) -> EvalResult:
        """The current model on the whole test split; ``mirror``: each image read with its mirror
        image, as prediction reads a net that :attr:`mirror_average`."""
        return evaluate(self.model, self.x_test, self.y_test, mirror=mirror)

    def checkpoint_metrics(self) -> dict[str, Any]:
        """The figures a checkpoint saved now records: the last finished epoch's, and inside an epoch
        the test loss and accuracy of the weights as they are (the last epoch's are not theirs:
        Predict showed one figure and measured another)."""
        metrics = self.final_metrics()
        if self.world == 1 and not self.at_epoch_boundary:
            now = self.evaluate_test()
            metrics.update(test_loss=now.loss, test_acc=now.accuracy, steps=self.step)
        return metrics

    def epoch_pace(self) -> tuple[float, float] | None:
        """Seconds per step and images per second of the epoch under way, from its steps so far (on
        the host's clock: a GPU's queued work is counted at the epoch's end); None before its
        second step. For a first estimate while the first epoch of a slow net runs."""
        steps, seconds, seen = self._batch, self._train_seconds, self._seen
        if self._order is None or steps < 2 or seconds <= 0:
            return None
        return seconds / steps, seen / seconds

    def final_metrics(self) -> dict[str, Any]:
        """The last epoch's figures plus totals, for checkpoints and run lists."""
        with self.lock:
            epochs = list(self.history.epochs)
        if not epochs:
            return {"epochs": 0}
        last = epochs[-1]
        return {
            "epochs": last.epoch,
            "steps": last.step,
            "train_loss": last.train_loss,
            "train_acc": last.train_acc,
            "test_loss": last.test_loss,
            "test_acc": last.test_acc,
            "best_test_acc": max(e.test_acc for e in epochs),
            "seconds": sum(e.seconds for e in epochs),
            "images_per_second": sum(e.images_per_second for e in epochs) / len(epochs),
            "device": str(self.device),
            "world_size": self.world,
        }

    @property
    def at_epoch_boundary(self) -> bool:
        """Whether every step taken so far belongs to a completed epoch (nothing half done)."""
        return self.step == self.epoch * len(self.batches)

    def resume_state(self) -> dict[str, Any]:
        """What :meth:`resume` needs besides the weights and optimizer state: the step and epoch, the
        schedule position, the random generators' states, the device kind and the data's identity.

        The generators' states are stored only at an epoch boundary (mid-epoch files are not
        resumable). Inside :meth:`run` the dropout stream is PyTorch's global state, so a save made
        between two events of a live run reads it from there.
        """
        state: dict[str, Any] = {"epoch_boundary": self.at_epoch_boundary, "step": self.step, "epoch": self.epoch,
                                 "schedule_start": self.schedule_start, "device": self.device.type,
                                 "world_size": self.world}
        if self.at_epoch_boundary:
            dropout = _get_rng_state(self.device) if self._in_run else self.dropout_rng
            state.update(
                shuffle_rng=self.shuffle_gen.get_state(),
                augment_rng=self.augment_gen.get_state(),
                dropout_rng=dropout.clone(),
                data=self.data_identity(),
            )
        return state

    def data_identity(self) -> dict[str, Any]:
        """Classes, split sizes, image side and a fingerprint of every image and label trained on."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.dataset)
        d = self.dataset
        return {"classes": list(d.classes), "train": len(d.x_train), "test": len(d.x_test),
                "image_size": d.image_size, "fingerprint": self._fingerprint}

    def save(self, path: str | os.PathLike) -> Path:
        """Save the model with its spec, classes, settings, metrics, history and origin (atomically).

        At an epoch boundary the optimizer state and :meth:`resume_state` are stored too, so that
        :meth:`resume` can continue the run from the file; a file saved mid-epoch records only where
        it stopped.
        """
        if self.diverged:
            raise CheckpointError(f"not saved: {self.diverged}")
        d = self.dataset
        metrics = self.checkpoint_metrics()
        return save_checkpoint(
            path,
            self.model,
            self.spec,
            self.style,
            d.classes,
            training=self.config.to_dict(),
            metrics=metrics,
            dataset={"key": d.key, "title": d.title, "synthetic": d.synthetic, "kind": d.kind,
                     "train": len(d.x_train), "test": len(d.x_test), "image_size": d.image_size,
                     "split_made": d.split_made},
            history=self.history_snapshot().to_dict(),
            optimizer_state=self.engine.optimizer_state() if self.at_epoch_boundary else None,
            image_size=d.image_size,
            origin=self.origin,
            resume=self.resume_state(),
        )

    def release_data(self) -> None:
        """Free the data tensors of a run that will not train again (the model stays usable)."""
        self.x_train = self.y_train = torch.empty(0)
        self._order = self._ahead = None  # (a batch made ahead goes with the data)


def finetune_recipe(arch: str, n_train: int | None = None, classes: Sequence[str] | None = None) -> TrainConfig:
    """The recipe for a run that starts from a checkpoint (every setting can still be overridden).

    Adam 1e-3 at a constant rate, no weight decay, the ``mirrored`` augmentation (``standard`` with
    half the images mirrored: a hand is shown as a left or a right one), 60 epochs of full batches
    (batches of 64 once there are more than 64 training photos, given ``n_train``); for ``classes``
    that are the finger counts 0–5, 120 generated hands beside the photos, so the few photos do not
    pull the net away from hands in general. Chosen by measurement (``bench/bench_finetune.py``;
    README, "Fine-tuning"): the SIGNS LeNet fine-tuned on 5 and 10 photos per class of other
    people's hands and tested on 349 more. Mirroring, the longer run and the generated hands each
    helped; more epochs without mirroring, other learning rates, batches of 16, a cosine schedule,
    weight decay, the ``webcam`` or ``mixed`` augmentation, stronger geometric jitter, no backdrop
    swap or SIGNS photos beside the user's did not, and no augmentation was worse. The same recipe
    serves every net: only the LeNet case was measured.
    """
    if arch not in ARCHS:
        raise ConfigError(f"no recipe for architecture {arch!r}")
    batch = 64 if n_train is not None and n_train > 64 else 0
    hands = FINETUNE_GENERATED_HANDS if classes is not None and shows_finger_counts(classes) else 0
    return TrainConfig(optimizer="adam", lr=0.001, weight_decay=0.0, schedule="constant", batch_size=batch,
                       epochs=60, augment=True, augmentation="mirrored", generated_hands=hands)


def spec_differences(saved: ModelSpec, asked: ModelSpec) -> list[str]:
    """What differs between two nets apart from their class count, e.g. ["input channels 1 vs 3"]."""
    diffs = []
    for attr, what in (("arch", "architecture"), ("in_channels", "input channels"), ("input_size", "input size"),
                       ("hidden", "hidden sizes"), ("batchnorm", "batch norm"), ("dropout", "dropout")):
        a, b = getattr(saved, attr), getattr(asked, attr)
        if attr == "hidden" and saved.arch != "mlp":
            continue  # only the MLP uses hidden sizes
        if a != b:
            if attr == "arch":
                a, b = ARCHS[a], ARCHS[b]
            diffs.append(f"{what} {list(a) if isinstance(a, tuple) else a} vs {list(b) if isinstance(b, tuple) else b}")
    return diffs


def data_fingerprint(dataset: Dataset) -> str:
    """A hash of every image and label of both splits (and their shapes): the same data, or not."""
    h = hashlib.blake2b(digest_size=16)
    for a in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _same_data(name: str, saved: Any, dataset: Dataset) -> Dataset:
    """``dataset`` in the saved run's class order, or CheckpointError saying how it differs."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{name}: damaged training state (no record of its data)")
    classes = tuple(str(c) for c in saved.get("classes", ()))
    advice = "resume it on the data it trained on, or fine-tune from it on this data (--init-from)"
    if set(dataset.classes) != set(classes) or len(dataset.classes) != len(classes):
        raise CheckpointError(
            f"{name}: the run trained on {len(classes)} classes ({_names(classes)}), but {dataset.title} has "
            f"{dataset.num_classes} ({_names(dataset.classes)}) — {advice}"
        )
    if tuple(dataset.classes) != classes:
        dataset = dataset.with_class_order(classes)
    ours = {"train": len(dataset.x_train), "test": len(dataset.x_test), "image_size": dataset.image_size}
    diffs = [f"{k} {saved.get(k)} vs {v}" for k, v in ours.items() if saved.get(k) != v]
    if diffs:
        raise CheckpointError(f"{name}: other data — {'; '.join(diffs)} (the run's vs {dataset.title}'s) — {advice}")
    if saved.get("fingerprint") != data_fingerprint(dataset):
        raise CheckpointError(
            f"{name}: {dataset.title} has the same classes and sizes but not the same images the run trained on — {advice}"
        )
    return dataset


def _names(classes: tuple[str, ...] | list[str], most: int = 8) -> str:
    """Class names for a one-line message: "rock, paper, scissors", shortened past ``most``."""
    shown = [str(c) for c in classes[:most]]
    return ", ".join(shown) + (f", … ({len(classes) - most} more)" if len(classes) > most else "")


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__



class _DeviceClock:
    """The device time of an epoch's training steps, read with the epoch's one sync.

    On the CPU the steps run as they are issued, so their host time is their time; on a GPU the
    host only queues them, and CUDA events record when the device got through them.
    """

    def __init__(self, device: torch.device) -> None:
        self._events = None
        if device.type == "cuda":
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()

    def stop(self) -> None:
        if self._events is not None:
            self._events[1].record()

    def seconds(self, host_seconds: float) -> float:
        """Seconds the steps took; call after a sync that follows :meth:`stop`."""
        return self._events[0].elapsed_time(self._events[1]) / 1000 if self._events is not None else host_seconds


def _seeded_rng_state(seed: int, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        g = torch.Generator(device=device).manual_seed(seed)
        return g.get_state()
    return torch.Generator().manual_seed(seed).get_state()


def _get_rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
