"""Command line training: ``python -m core.train --dataset signs --model lenet``.

Progress goes to stderr; the last line of stdout is one JSON object with the run's figures. With
no flags but the data set and the model, the default recipe for that net is used; every flag
given overrides it, so the tutorial's exact settings can be reproduced too.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from core.checkpoint import CheckpointError, checkpoint_dir
from core.data import DATASETS, DatasetError, load_dataset
from core.device import DEVICES, DeviceError, describe_device
from core.spec import ARCHS, STYLES, SpecError, default_spec
from core.trainer import OPTIMIZERS, PRECISIONS, SCHEDULES, ConfigError, EpochEvent, Trainer, TrainingDiverged, recipe


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=list(DATASETS))
    p.add_argument("--model", required=True, choices=list(ARCHS))
    p.add_argument("--style", choices=list(STYLES), default="module")
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
    p.add_argument("--batch-size", type=int, help="0 = full batch")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=list(PRECISIONS), help="auto: bf16 autocast where the hardware has it natively, else fp32")
    p.add_argument("--data-dir", help="folder with the HDF5 files (default $TORCHLAB_DATA_DIR or datasets/)")
    p.add_argument("--out", help="checkpoint path (default checkpoints/<model>-<dataset>-<time>.pt)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        dataset = load_dataset(args.dataset, args.data_dir)
        spec = default_spec(args.model, dataset.num_classes)
        spec_changes = {"dropout": args.dropout, "batchnorm": args.batchnorm, "in_channels": args.channels}
        spec = spec.replace(**{k: v for k, v in spec_changes.items() if v is not None})
        overrides = {
            "optimizer": args.optimizer, "lr": args.lr, "schedule": args.schedule, "momentum": args.momentum,
            "alpha": args.alpha, "betas": tuple(args.betas) if args.betas else None,
            "weight_decay": args.weight_decay, "augment": args.augment, "batch_size": args.batch_size,
            "epochs": args.epochs, "seed": args.seed, "device": args.device,
            "precision": args.precision,
        }
        config = recipe(args.model).replace(**{k: v for k, v in overrides.items() if v is not None})
        trainer = Trainer(spec, dataset, config, args.style)
    except (DatasetError, SpecError, ConfigError, DeviceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    log(f"{dataset.describe()}")
    log(f"{spec.describe()} ({args.style}), {trainer.parameters:,} parameters, on {describe_device(trainer.device)}")
    log(config.describe())
    t0 = time.perf_counter()
    try:
        for event in trainer.run():
            if isinstance(event, EpochEvent):
                log(
                    f"epoch {event.epoch:3d}/{config.epochs}  loss {event.train_loss:.4f}  train {event.train_acc:6.1%}  "
                    f"test {event.test_acc:6.1%}  {event.seconds:5.1f}s  {event.images_per_second:6.0f} img/s"
                )
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        print(json.dumps({"dataset": args.dataset, "model": args.model, "error": str(e)}))
        return 1
    seconds = time.perf_counter() - t0

    out = Path(args.out) if args.out else checkpoint_dir() / f"{args.model}-{args.dataset}-{datetime.now():%Y%m%d-%H%M%S}.pt"
    try:
        trainer.save(out)
    except (OSError, CheckpointError) as e:
        print(f"error: could not save the checkpoint to {out}: {e}", file=sys.stderr)
        return 1
    log(f"saved {out}")
    m = trainer.final_metrics()
    result = {
        "dataset": args.dataset,
        "synthetic": dataset.synthetic,
        "model": args.model,
        "style": args.style,
        "parameters": trainer.parameters,
        "epochs": m["epochs"],
        "train_loss": m["train_loss"],
        "train_acc": m["train_acc"],
        "test_loss": m["test_loss"],
        "test_acc": m["test_acc"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / m["epochs"],
        "images_per_second": m["images_per_second"],
        "device": str(trainer.device),
        "config": config.to_dict(),
        "checkpoint": str(out),
    }
    print(json.dumps(result))
    return 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
