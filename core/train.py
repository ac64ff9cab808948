"""Command line training: ``python -m core.train --dataset signs --model lenet``.

Progress goes to stderr; the last line of stdout is one JSON object with the run's figures. With
no flags but the data set and the model, the default recipe for that net is used; every flag
given overrides it, so the tutorial's exact settings can be reproduced too.

``--dataset`` takes a built-in set (``signs``, ``cats``, ``synthetic``), a set saved in the data
directory, or a path: an image folder (``ROOT/<class>/*.jpg`` or ``ROOT/train|test/<class>/…``) or
a ``train_<name>.h5`` file with its ``test_<name>.h5``. The default checkpoint name uses the set's
key, or the folder's name for a path.

``--init-from CHECKPOINT [--freeze {none,features}]`` fine-tunes a saved net: its architecture,
input and weights are the start (``--model`` may be left out; ``--model``, ``--channels``,
``--batchnorm`` and ``--dropout`` are refused if they disagree with it). Data with the checkpoint's
classes keeps its head; other classes get a new one, and a progress line says so.
``--freeze features`` trains the head only. The fine-tuning recipe replaces the net's default one
(every flag still overrides it).

``--resume CHECKPOINT`` continues a run saved at the end of an epoch exactly where it stopped, with
its own settings, on the data it trained on (``--dataset`` defaults to the set it names); a
finished run can be extended with a larger ``--epochs`` (the extra epochs run the schedule again).

Ctrl-C stops a one-process run at the end of the epoch under way and saves it, so ``--resume``
continues it; a second Ctrl-C stops after the step under way and saves the weights as they are (a
net to predict with, not to resume); a third aborts without saving. The JSON line says ``stopped``.

The JSON line then also says ``init_from`` (the checkpoint's file name), ``freeze``, ``new_head``
and ``resumed_from``. Bad flags, files or data give one ``error: …`` line on stderr and exit
status 2 before any training.

Under ``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] -m core.train …`` every
process trains its share of each global batch (``--batch-size`` per process; DDP averages the
gradients: gloo on the CPU, NCCL on CUDA with one GPU per process). Process 0 alone prints and
writes the checkpoint; the JSON line adds ``world_size`` and ``global_batch``. A process that fails
ends the run on every process with an ``error:`` line and no checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from core.checkpoint import Checkpoint, CheckpointError, checkpoint_dir, load_checkpoint
from core.augment import AUGMENTATIONS
from core.data import DatasetError, load_dataset
from core.device import DEVICES, DeviceError, describe_device, pick_device
from core.distributed import Dist, DistributedError, finish, from_env, start
from core.nets import FREEZE
from core.spec import ARCHS, STYLES, SpecError, default_spec
from core.trainer import (
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    ConfigError,
    EpochEvent,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    finetune_recipe,
    recipe,
)


class UsageError(ValueError):
    """Flags that do not go together; the message names them and what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", help="signs, cats, synthetic, a set in the data directory, or the path of an image "
                                     "folder or train_*.h5 file (with --resume: default the run's own)")
    p.add_argument("--model", choices=list(ARCHS), help="required unless --init-from or --resume names a checkpoint")
    p.add_argument("--style", choices=list(STYLES), help="default module (or the checkpoint's)")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="fine-tune: start from this checkpoint's net and weights")
    p.add_argument("--freeze", choices=list(FREEZE), help="with --init-from: features = train the head only")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint (at an epoch's end)")
    # None means "take the recipe's value" for everything below.
    p.add_argument("--optimizer", choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=list(SCHEDULES))
    p.add_argument("--momentum", type=float)
    p.add_argument("--alpha", type=float, help="RMSprop smoothing constant")
    p.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam betas")
    p.add_argument("--weight-decay", type=float, help="L2 regularisation strength")
    p.add_argument("--dropout", type=float)
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction)
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 = gray input, 3 = RGB")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction)
    p.add_argument("--augmentation", choices=list(AUGMENTATIONS),
                   help="default: the recipe's (LeNet mixed, other nets standard, mirrored with --init-from); "
                        "standard: best on SIGNS; webcam: reads more webcam photos of other hands; mixed: webcam "
                        "on 70 %% of each batch; mirrored: standard with half the images mirrored")
    p.add_argument("--generated-hands", type=int, metavar="N",
                   help="generated finger-count hands added to the training photos, for data sets of classes 0–5 "
                        "(default: the recipe's — for such sets the LeNet's 1200, a fine-tune's 120; else 0)")
    p.add_argument("--batch-size", type=int, help="0 = full batch")
    p.add_argument("--epochs", type=int, help="with --resume: more than the run's own extends a finished run")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=list(PRECISIONS), help="auto: bf16 autocast where the hardware has it natively, else fp32")
    p.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction,
                   help="on CUDA: capture each training step in a CUDA graph and replay it (default off)")
    p.add_argument("--data-dir", help="the data directory (default $TORCHLAB_DATA_DIR or datasets/)")
    p.add_argument("--out", help="checkpoint path (default checkpoints/<model>-<dataset>-<time>.pt)")
    return p


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings named on the command line (None: not given)."""
    return {
        "optimizer": args.optimizer, "lr": args.lr, "schedule": args.schedule, "momentum": args.momentum,
        "alpha": args.alpha, "betas": tuple(args.betas) if args.betas else None,
        "weight_decay": args.weight_decay, "augment": args.augment, "augmentation": args.augmentation,
        "generated_hands": args.generated_hands, "batch_size": args.batch_size,
        "epochs": args.epochs, "seed": args.seed, "device": args.device, "precision": args.precision,
        "cuda_graph": args.cuda_graph,
    }


SPEC_FLAGS = (("--channels", "channels", "in_channels"), ("--batchnorm", "batchnorm", "batchnorm"),
              ("--dropout", "dropout", "dropout"))
SPEC_WORDS = {"in_channels": "input channels", "batchnorm": "batch norm", "dropout": "dropout"}


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return name if value else name.replace("--", "--no-", 1)
    return f"{name} {value}"


def _check_against_checkpoint(args: argparse.Namespace, ckpt: Checkpoint, why: str) -> None:
    """Refuse net flags that disagree with the checkpoint's net (``why``: what to do instead)."""
    name = ckpt.source or "the checkpoint"
    if args.model is not None and args.model != ckpt.spec.arch:
        raise UsageError(f"--model {args.model} conflicts with {name}, a {ARCHS[ckpt.spec.arch]} net — {why}")
    for flag, arg, attr in SPEC_FLAGS:
        value, saved = getattr(args, arg), getattr(ckpt.spec, attr)
        if value is not None and value != saved:
            raise UsageError(
                f"{_flag(flag, value)} conflicts with {name}, whose net has {SPEC_WORDS[attr]} {saved} — {why}"
            )


def _new_trainer(args: argparse.Namespace, dist: Dist | None = None) -> tuple[Trainer, str]:
    """A new run, from scratch or fine-tuning ``--init-from``; and the --dataset it trains on."""
    if args.dataset is None:
        raise UsageError("--dataset is required: a built-in set (signs, cats, synthetic), a saved set or a folder path")
    ckpt = load_checkpoint(args.init_from) if args.init_from else None
    if ckpt is not None:
        _check_against_checkpoint(args, ckpt, "fine-tuning keeps the checkpoint's net; leave the flag out")
        arch, input_size = ckpt.spec.arch, ckpt.spec.input_size
    elif args.model is None:
        raise UsageError("--model is required (mlp, lenet or resnet50), or --init-from CHECKPOINT to start from a saved net")
    else:
        arch, input_size = args.model, default_spec(args.model).input_size
    # Photos of an image folder are made at the net's input side, the way prediction makes them.
    dataset = load_dataset(args.dataset, args.data_dir, image_size=input_size)
    overrides = {k: v for k, v in _config_overrides(args).items() if v is not None}
    if ckpt is not None:
        config = finetune_recipe(arch, len(dataset.x_train), dataset.classes).replace(**overrides)
        spec = None  # the checkpoint's
    else:
        config = recipe(arch, dataset.classes).replace(**overrides)
        spec = default_spec(arch, dataset.num_classes)
        spec_changes = {"dropout": args.dropout, "batchnorm": args.batchnorm, "in_channels": args.channels}
        spec = spec.replace(**{k: v for k, v in spec_changes.items() if v is not None})
    style = args.style or (ckpt.style if ckpt is not None else "module")
    trainer = Trainer(spec, dataset, config, style, init_from=ckpt, freeze=args.freeze or "none", dist=dist)
    return trainer, args.dataset


def _resumed_trainer(args: argparse.Namespace) -> tuple[Trainer, str]:
    """The run saved in ``--resume``, ready to continue; and the --dataset it trains on."""
    ckpt = load_checkpoint(args.resume)
    why = "--resume continues the saved run with its own settings; to train with others, start a new run from it with --init-from"
    _check_against_checkpoint(args, ckpt, why)
    if args.style is not None and args.style != ckpt.style:
        raise UsageError(f"--style {args.style} conflicts with {ckpt.source}, written as {ckpt.style} — {why}")
    saved = TrainConfig.from_dict(ckpt.training) if ckpt.training else None
    for key, value in _config_overrides(args).items():
        if value is None or key in ("epochs", "device"):  # --epochs extends; the device kind is checked on resume
            continue
        if saved is None or getattr(saved, key) != value:
            shown = getattr(saved, key) if saved is not None else "unknown"
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{_flag(flag, value)}: the saved run has {key.replace('_', ' ')} {shown} — {why}")
    dataset_arg = args.dataset or str(ckpt.dataset.get("key") or "")
    if not dataset_arg:
        raise UsageError(f"{ckpt.source}: does not say which data set it trained on — give it with --dataset")
    try:
        dataset = load_dataset(dataset_arg, args.data_dir, image_size=ckpt.train_image_size)
    except DatasetError as e:
        hint = "" if args.dataset else " (the run's own set; give its path with --dataset)"
        raise DatasetError(f"{e}{hint}") from None
    return Trainer.resume(ckpt, dataset, epochs=args.epochs, device=args.device), dataset_arg


def default_out(trainer: Trainer) -> Path:
    """checkpoints/<model>-<data set key or folder name>-<time>.pt, with a name safe for any file system."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", trainer.dataset.key).strip("._-")[:64] or "data"
    return checkpoint_dir() / f"{trainer.spec.arch}-{name}-{datetime.now():%Y%m%d-%H%M%S}.pt"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dist = None
    try:
        dist = from_env()
        _quiet(dist)
        if args.init_from and args.resume:
            raise UsageError("--init-from and --resume exclude each other: --resume continues a saved run, "
                             "--init-from starts a new run from a saved net")
        if args.freeze is not None and not args.init_from:
            raise UsageError("--freeze needs --init-from CHECKPOINT: only a saved net's features are worth freezing"
                             + (" (a resumed run keeps its own setting)" if args.resume else ""))
        if dist and args.resume:
            raise UsageError("--resume continues a one-process run exactly; under torchrun start a new run from the "
                             "checkpoint with --init-from instead")
        if dist:
            start(dist, dist.device(pick_device(args.device or "auto")))
            signal.signal(signal.SIGTERM, _stopped_by_torchrun)
        trainer, dataset_arg = _resumed_trainer(args) if args.resume else _new_trainer(args, dist)
    except (UsageError, DatasetError, SpecError, ConfigError, DeviceError, CheckpointError, DistributedError) as e:
        _error(e, dist)
        finish()
        return 2
    except KeyboardInterrupt:  # while the data loads or the net is built: nothing to keep yet
        _error("stopped by Ctrl-C before training began; nothing was saved", dist)
        finish()
        return 130
    try:
        return _train(args, trainer, dataset_arg)
    except DistributedError as e:
        _error(f"{e}; nothing was saved", dist)
        return 1
    except KeyboardInterrupt:  # a third Ctrl-C, or one under torchrun: no traceback, and say what was lost
        _error("aborted by Ctrl-C; nothing was saved", dist)
        return 130
    finally:
        finish()


def _train(args: argparse.Namespace, trainer: Trainer, dataset_arg: str) -> int:
    config, dataset = trainer.config, trainer.dataset
    log(f"{dataset.describe()}")
    if trainer.world > 1:
        log(f"{trainer.world} processes (torchrun), {trainer.batch_size} images each per step: global batch "
            f"{trainer.batch_size * trainer.world}; {'SyncBatchNorm' if trainer.device.type == 'cuda' else 'batch norm per process'}")
    if trainer.resumed_from:
        log(f"resuming {trainer.resumed_from} at epoch {trainer.epoch}/{config.epochs} (step {trainer.step} of "
            f"{trainer.total_steps})" + (", extended: the extra epochs run the schedule again" if trainer.schedule_start else ""))
    if trainer.init_from:
        info = trainer.init_from
        log(f"starting from {info['file'] or 'a checkpoint'}: {info['net']}, {len(info['classes'])} classes, "
            f"trained on {info['dataset'] or 'unknown data'}")
    if trainer.head_note:
        log(trainer.head_note)
    if trainer.init_from or trainer.resumed_from:
        log(trainer.describe_freeze())
    log(f"{trainer.spec.describe()} ({trainer.style}), {trainer.parameters:,} parameters, on {describe_device(trainer.device)}")
    log(config.describe())
    start_epoch, t0 = trainer.epoch, time.perf_counter()
    # Under torchrun a Ctrl-C reaches every process at its own moment: they would stop at different
    # steps, so a distributed run keeps Python's default (abort, nothing saved).
    interrupt = CtrlC() if trainer.world == 1 else None

    def should_stop() -> bool:  # asked before every step
        return interrupt is not None and (interrupt.now or (interrupt.at_epoch_end and trainer.at_epoch_boundary))

    try:
        with interrupt or contextlib.nullcontext():
            for event in trainer.run(should_stop):
                if isinstance(event, EpochEvent):
                    log(
                        f"epoch {event.epoch:3d}/{config.epochs}  loss {event.train_loss:.4f}  train {event.train_acc:6.1%}  "
                        f"test {event.test_acc:6.1%}  {event.seconds:5.1f}s  {event.images_per_second:6.0f} img/s"
                    )
    except TrainingDiverged as e:
        _error(e, trainer.dist)
        if not trainer.rank:
            print(json.dumps({"dataset": dataset_arg, "model": trainer.spec.arch, "error": str(e)}))
        return 1
    seconds = time.perf_counter() - t0
    stopped = not trainer.finished
    if config.cuda_graph:
        recorded = f" ({trainer.engine.capture_seconds:.2f} s to record, not counted as training)" if trainer.engine.capture else ""
        log(trainer.engine.capture_note + recorded)
    if trainer.rank:  # process 0 alone writes: every process holds the same weights
        return 0

    out = Path(args.out) if args.out else default_out(trainer)
    try:
        trainer.save(out)
    except (OSError, CheckpointError) as e:
        print(f"error: could not save the checkpoint to {out}: {e}", file=sys.stderr)
        return 1
    log(f"saved {out}")
    if stopped and trainer.at_epoch_boundary:
        log(f"stopped after epoch {trainer.epoch} of {config.epochs}: continue with python -m core.train --resume {out}")
    m = trainer.checkpoint_metrics()  # as the file records them
    if stopped and not trainer.at_epoch_boundary:
        log(f"stopped inside epoch {trainer.epoch + 1} (step {trainer.step}): the file holds the weights of that step, "
            f"test accuracy {m['test_acc']:.1%} measured on them; it predicts, but a run continues only from an "
            "epoch's end")
    epochs_run = max(1, m["epochs"] - start_epoch)  # this invocation's (a resumed run's history holds more)
    result = {
        "dataset": dataset_arg,
        "synthetic": dataset.synthetic,
        "model": trainer.spec.arch,
        "style": trainer.style,
        "classes": list(dataset.classes),
        "parameters": trainer.parameters,
        "trainable_parameters": trainer.trainable_parameters,
        "epochs": m["epochs"],
        "train_loss": m.get("train_loss"),  # (none before a first finished epoch)
        "train_acc": m.get("train_acc"),
        "test_loss": m.get("test_loss"),
        "test_acc": m.get("test_acc"),
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs_run,
        "images_per_second": m.get("images_per_second"),  # over all processes
        "device": str(trainer.device),
        "world_size": trainer.world,
        "global_batch": trainer.batch_size * trainer.world,
        "cuda_graph": trainer.engine.capture_note if config.cuda_graph else None,
        "capture_seconds": trainer.engine.capture_seconds,
        "config": config.to_dict(),
        "init_from": trainer.init_from["file"] if trainer.init_from else None,
        "freeze": trainer.freeze,
        "new_head": trainer.new_head,
        "resumed_from": trainer.resumed_from,
        "stopped": stopped,
        "checkpoint": str(out),
    }
    print(json.dumps(result))
    return 0


_QUIET = False  # processes other than 0 of a distributed run print errors only


def _quiet(dist: Dist | None) -> None:
    global _QUIET
    _QUIET = dist is not None and not dist.is_main


def _error(e: BaseException | str, dist: Dist | None) -> None:
    where = f" ({dist.describe()})" if dist else ""
    # One write of the whole line: print() writes the text and the newline apart, and two processes
    # of a torchrun run erring at once could then run their lines together.
    sys.stderr.write(f"error{where}: {e}\n")
    sys.stderr.flush()


class CtrlC:
    """While active, Ctrl-C asks the run to stop instead of raising ``KeyboardInterrupt``: the first
    at the end of the epoch under way (:attr:`at_epoch_end`), the second after the step under way
    (:attr:`now`); the third raises as usual. The previous handler comes back on exit."""

    def __init__(self) -> None:
        self.presses = 0

    @property
    def at_epoch_end(self) -> bool:
        return self.presses >= 1

    @property
    def now(self) -> bool:
        return self.presses >= 2

    def __enter__(self) -> "CtrlC":
        self._previous = signal.signal(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _pressed(self, signum: int, frame: object) -> None:
        self.presses += 1
        if self.presses == 1:
            log("Ctrl-C: stopping at the end of this epoch and saving (Ctrl-C again: stop now)")
        elif self.presses == 2:
            log("Ctrl-C: stopping after this step and saving (Ctrl-C again: abort without saving)")
        else:
            raise KeyboardInterrupt


def _stopped_by_torchrun(signum: int, frame: object) -> None:
    raise DistributedError("stopped by torchrun because another process of this run failed")


def log(message: str) -> None:
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
