"""Fine-tuning a SIGNS net on a few photos of other people's hands: accuracy and seconds.

The base net is a SIGNS-trained checkpoint (``--checkpoint``), or, by default, the LeNet trained
here with its default recipe on the real SIGNS files (that training time is reported apart). The
other people's hands are webcam-hands (``$TORCHLAB_DATA_DIR/webcam-hands`` or ``--hands``), loaded
through ``core.data.load_dataset`` at the side of the base net's training images.

For each number of photos per class (``--shots``) and each draw (seeds 0..``--draws``-1), n photos
per class are drawn from webcam-hands' train split and the net is fine-tuned with
``core.trainer.finetune_recipe`` (``--freeze``: the features frozen, or every layer training), then
scored on all of webcam-hands' test split. Per row: accuracy mean / min / max over the draws,
accuracy without the photos of class "3" (its finger convention differs between SIGNS and
webcam-hands), mean accuracy per class, and the median seconds of a fine-tune (wall clock of
building the Trainer and running it). The base net on the same test, before fine-tuning, is the
0-shot row.

How it is drawn and timed, so the figures can be reproduced and read:

* A draw is seeded (numpy ``default_rng(seed)``, one permutation per class of the photos in the
  loader's order, which is by file name): the same seed gives the same photos, and the n=5 draw is
  the first five of the n=10 draw of the same seed. The fine-tune's own seed (shuffle,
  augmentation) is the draw's seed.
* The Trainer evaluates its test split after every epoch. It gets one more photo per class from
  the train split (never among the drawn ones) — what a user's own small set holds out — not the
  349 test photos, which would be scored 30 times inside the timed run. The scoring on the test
  split happens after the clock stops.
* One fine-tune is run untimed first (oneDNN builds its kernels on the first pass), then, for each
  draw, the freeze settings alternate so that the shared machine's load drifts over both alike.
  The thread count and the load average at the start are printed and stored: the machine may be
  shared.

    python bench/bench_finetune.py [--checkpoint PATH] [--data-dir DIR] [--hands PATH] [--shots 5 10 20 30]
        [--draws 5] [--by-capture] [--all-photos] [--freeze features none] [--threads 1] [--device auto] [--save-base PATH]
        [--base-channels 1|3] [--base-augmentation PRESET] [--base-epochs N] [--json out.json]

Two more measures, each off by default:

* ``--by-capture``: one person teaching their own hand, as the app's Data page is used. webcam-hands'
  file names start with the capture they came from (the part before ``_pic``: mostly one person in
  one room, a few captures mix several). A capture's classes are those with at least n + 2 photos for
  the largest n asked for (so every n sees the same classes); captures with 4 or more such classes
  count. Their train and test photos are pooled, n per class are drawn (seeded as above, one more
  to watch the run) and fine-tuned on, and the net is scored on that capture's other photos of
  those classes, read as one of all the base net's classes. Photos of one capture
  are frames of one sitting, so they look alike: the score says how well the net learns one
  hand in one room, not how it reads strangers.
* ``--all-photos``: the ceiling: fine-tuned on every photo of webcam-hands' train split (all
  layers, the recipe's epochs) and scored on its test split, once.

Prints one table and writes every raw figure (per draw) as JSON (default bench/results/finetune.json).
Exit status 2, with one line saying what is missing, when the data or the checkpoint cannot be used.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.augment import AUGMENTATIONS  # noqa: E402
from core.checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint  # noqa: E402
from core.data import Dataset, DatasetError, load_dataset, resolve_data_dir  # noqa: E402
from core.device import DEVICES, DeviceError, describe_device, pick_device  # noqa: E402
from core.folders import IMAGE_EXTENSIONS  # noqa: E402
from core.nets import FREEZE  # noqa: E402
from core.preprocess import load_photo  # noqa: E402
from core.spec import default_spec  # noqa: E402
from core.tensors import images_to_tensor  # noqa: E402
from core.trainer import EpochEvent, Trainer, evaluate, finetune_recipe, recipe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ODD_CLASS = "3"  # SIGNS: thumb + index + middle; webcam-hands: mostly index + middle + ring


class BenchError(Exception):
    """Something the benchmark needs is missing or unusable; the message says what and what to do."""


# --- the base net -----------------------------------------------------------------------------------


def train_base(data_dir: str | None, device: str, save_to: str | None, channels: int | None = None,
               augmentation: str | None = None, epochs: int | None = None) -> tuple[Checkpoint, dict[str, Any]]:
    """Train the default LeNet recipe (or it with another input, augmentation or epoch count) on the
    real SIGNS files; the checkpoint (saved and loaded back, as the app does) and the figures of
    that training."""
    try:
        signs = load_dataset("signs", data_dir)
    except DatasetError as e:
        raise BenchError(f"no base checkpoint given and the real SIGNS files cannot be read ({e}) — "
                         "set TORCHLAB_DATA_DIR or --data-dir to the folder holding signs/, "
                         "or give a SIGNS-trained checkpoint with --checkpoint") from None
    config = recipe("lenet", signs.classes).replace(device=device)
    if augmentation:
        config = config.replace(augmentation=augmentation)
    if epochs:
        config = config.replace(epochs=epochs)
    spec = default_spec("lenet", signs.num_classes)
    if channels:
        spec = spec.replace(in_channels=channels)
    print(f"training the base net: LeNet-5 on {signs.describe()}; {config.describe()}", file=sys.stderr)
    t0 = time.perf_counter()
    trainer = Trainer(spec, signs, config)
    for event in trainer.run():
        if isinstance(event, EpochEvent) and (event.epoch % 10 == 0 or event.epoch == config.epochs):
            print(f"  epoch {event.epoch:3d}  {time.perf_counter() - t0:7.1f}s  SIGNS test {event.test_acc:.1%}",
                  file=sys.stderr)
    seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(save_to) if save_to else Path(tmp) / "lenet-signs.pt"
        trainer.save(path)
        ckpt = load_checkpoint(path)
    figures = {"source": "trained here", "recipe": config.describe(), "seconds": seconds,
               "signs_test_acc": trainer.final_metrics()["test_acc"], "saved_to": save_to}
    return ckpt, figures


def base_checkpoint(args: argparse.Namespace) -> tuple[Checkpoint, dict[str, Any]]:
    if args.checkpoint:
        try:
            ckpt = load_checkpoint(args.checkpoint)
        except CheckpointError as e:
            raise BenchError(f"--checkpoint: {e}") from None
        return ckpt, {"source": str(args.checkpoint), "seconds": None,
                      "signs_test_acc": ckpt.metrics.get("test_acc"), "dataset": ckpt.dataset.get("title")}
    return train_base(args.data_dir, args.device, args.save_base, args.base_channels, args.base_augmentation,
                      args.base_epochs)


# --- the hands --------------------------------------------------------------------------------------


def load_hands(path: Path, ckpt: Checkpoint) -> Dataset:
    """webcam-hands at the side of the base net's training images, in the checkpoint's class order."""
    if not path.is_dir():
        raise BenchError(f"webcam-hands not found at {path} — set TORCHLAB_DATA_DIR (or --data-dir) to the folder "
                         "holding webcam-hands/, or give its path with --hands")
    try:
        hands = load_dataset(path, image_size=ckpt.train_image_size)
    except DatasetError as e:
        raise BenchError(f"webcam-hands at {path} cannot be used: {e}") from None
    if set(hands.classes) != set(ckpt.classes):
        raise BenchError(f"the checkpoint's classes ({', '.join(ckpt.classes)}) are not webcam-hands' "
                         f"({', '.join(hands.classes)}) — give a checkpoint trained on SIGNS")
    return hands.with_class_order(ckpt.classes)


def draw(hands: Dataset, n: int, seed: int) -> tuple[Dataset, list[int]]:
    """``n`` train photos per class (and one more per class for the Trainer's per-epoch test),
    chosen by ``seed``; the indices drawn into webcam-hands' train split come back too.

    One permutation per class, the same whatever ``n``: a smaller draw is the start of a larger one.
    """
    rng = np.random.default_rng(seed)
    train, monitor = [], []
    for c in range(hands.num_classes):
        perm = rng.permutation(np.flatnonzero(hands.y_train == c))
        if len(perm) < n + 1:
            raise BenchError(f"class {hands.classes[c]!r} of webcam-hands has {len(perm)} train photos; "
                             f"{n} per class (and one to watch the run) need {n + 1}")
        monitor.append(int(perm[0]))
        train += [int(i) for i in perm[1 : n + 1]]
    subset = replace(
        hands, key=f"{hands.key}-{n}x{seed}", title=f"{hands.title}, {n} per class (draw {seed})",
        x_train=hands.x_train[train], y_train=hands.y_train[train],
        x_test=hands.x_train[monitor], y_test=hands.y_train[monitor],
    )
    return subset, train


def load_captures(path: Path, ckpt: Checkpoint) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """webcam-hands' photos grouped by capture (the file-name part before ``_pic``), train and test
    pooled, each read by ``core.preprocess.load_photo`` at the base net's training size: capture →
    (images, labels in the checkpoint's class order). Files without a capture prefix are left out."""
    by: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for split in ("train", "test"):
        for cls in ckpt.classes:
            folder = path / split / cls
            for f in sorted(folder.iterdir()) if folder.is_dir() else ():
                if f.suffix.lower() not in IMAGE_EXTENSIONS or "_pic" not in f.name:
                    continue
                xs, ys = by.setdefault(f.name.split("_pic")[0], ([], []))
                xs.append(load_photo(f, ckpt.train_image_size, name=f.name))
                ys.append(ckpt.classes.index(cls))
    return {c: (np.stack(xs), np.array(ys, dtype=np.int64)) for c, (xs, ys) in sorted(by.items())}


def draw_capture(x: np.ndarray, y: np.ndarray, n: int, seed: int, classes: tuple[str, ...], name: str,
                 need: int) -> tuple[Dataset, np.ndarray, np.ndarray] | None:
    """From one capture's photos, for each class with ``need`` photos or more: ``n`` to train on
    and one to watch the run (a data set), and the rest to score on. None when fewer than 4 classes
    have that many."""
    rng = np.random.default_rng(seed)
    train, monitor, rest = [], [], []
    for c in range(len(classes)):
        perm = rng.permutation(np.flatnonzero(y == c))
        if len(perm) < need:
            continue
        monitor.append(perm[0])
        train += list(perm[1 : n + 1])
        rest += list(perm[n + 1 :])
    if len(monitor) < 4:
        return None
    subset = Dataset(key=f"capture-{name}-{n}x{seed}", title=f"capture {name}, {n} per class (draw {seed})",
                     classes=classes, x_train=x[train], y_train=y[train], x_test=x[monitor], y_test=y[monitor],
                     source=f"webcam-hands capture {name}", kind="folder")
    return subset, x[rest], y[rest]


# --- scoring ----------------------------------------------------------------------------------------


def score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...],
          mirror: bool = False) -> dict[str, Any]:
    """Accuracy overall, without the photos of class "3", per class, and the confusion matrix, read
    as the app reads photos (``mirror``: with the mirror image, for a net trained on mirrored
    images); with ``mirror``, also the accuracy reading each photo alone."""
    pred = evaluate(model, x, y, mirror=mirror).predictions.numpy()
    truth = y.cpu().numpy()
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (truth, pred), 1)
    ok = pred == truth
    odd = classes.index(ODD_CLASS) if ODD_CLASS in classes else None
    return {
        "accuracy": float(ok.mean()),
        "accuracy_without_3": float(ok[truth != odd].mean()) if odd is not None else None,
        "per_class": {c: float(ok[truth == i].mean()) for i, c in enumerate(classes) if (truth == i).any()},
        "confusion": confusion.tolist(),  # rows: true class, columns: predicted, in `classes` order
        "mirror_average": mirror,
        "accuracy_alone": evaluate(model, x, y).accuracy if mirror else None,
    }


def finetune(ckpt: Checkpoint, subset: Dataset, n: int, seed: int, freeze: str, device: str,
             x_test: torch.Tensor, y_test: torch.Tensor) -> dict[str, Any]:
    """One fine-tune, timed from building the Trainer to the end of its run, then scored."""
    config = finetune_recipe(ckpt.spec.arch, len(subset.x_train), subset.classes).replace(seed=seed, device=device)
    t0 = time.perf_counter()
    trainer = Trainer(None, subset, config, init_from=ckpt, freeze=freeze)
    for _ in trainer.run():
        pass
    seconds = time.perf_counter() - t0
    out = score(trainer.model, x_test.to(trainer.device), y_test.to(trainer.device), subset.classes,
                trainer.mirror_average)  # as the app will read photos
    return {"shots": n, "seed": seed, "freeze": freeze, "seconds": seconds, "steps": trainer.step,
            "trainable_parameters": trainer.trainable_parameters, "precision": str(trainer.engine.autocast_dtype or "fp32"),
            "recipe": config.describe(), **out}


# --- the report -------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]], classes: tuple[str, ...]) -> dict[str, Any]:
    accs = [r["accuracy"] for r in runs]
    no3 = [r["accuracy_without_3"] for r in runs if r["accuracy_without_3"] is not None]
    return {
        "shots": runs[0]["shots"], "freeze": runs[0]["freeze"], "draws": len(runs),
        "accuracy_mean": statistics.fmean(accs), "accuracy_min": min(accs), "accuracy_max": max(accs),
        "accuracy_without_3_mean": statistics.fmean(no3) if no3 else None,
        "accuracy_alone_mean": _mean_or_none([r["accuracy_alone"] for r in runs]),
        "per_class_mean": {c: statistics.fmean(r["per_class"][c] for r in runs) for c in classes if c in runs[0]["per_class"]},
        "seconds_median": statistics.median(r["seconds"] for r in runs),
        "seconds_min": min(r["seconds"] for r in runs), "seconds_max": max(r["seconds"] for r in runs),
    }


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) or not values else statistics.fmean(values)


def _precision(dtype: str) -> str:
    return "fp32" if dtype == "fp32" else f"{dtype.removeprefix('torch.').replace('bfloat16', 'bf16')} autocast"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def print_table(base: dict[str, Any], rows: list[dict[str, Any]], classes: tuple[str, ...], title: str) -> None:
    per_class_head = "per class " + " ".join(f"{c:>3}" for c in classes)
    print(f"\n{title}")
    print(f"{'photos/class':>12} {'freeze':<9} {'draws':>5} {'acc mean':>9} {'min':>7} {'max':>7} {'w/o 3':>7} "
          f"{'alone':>7} {'s median':>9}  {per_class_head}")

    def per_class(d: dict[str, float]) -> str:
        return "          " + " ".join(f"{100 * d[c]:>3.0f}" if c in d else "  —" for c in classes)

    print(f"{0:>12} {'(base)':<9} {'—':>5} {_pct(base['accuracy']):>9} {'':>7} {'':>7} "
          f"{_pct(base['accuracy_without_3']):>7} {_pct(base['accuracy_alone']):>7} {'—':>9}  {per_class(base['per_class'])}")
    for r in rows:
        print(f"{r['shots']:>12} {r['freeze']:<9} {r['draws']:>5} {_pct(r['accuracy_mean']):>9} "
              f"{_pct(r['accuracy_min']):>7} {_pct(r['accuracy_max']):>7} {_pct(r['accuracy_without_3_mean']):>7} "
              f"{_pct(r['accuracy_alone_mean']):>7} {r['seconds_median']:>8.2f}s  {per_class(r['per_class_mean'])}")


def by_capture(ckpt: Checkpoint, hands_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune on n photos of one capture and score on its other photos, per capture and draw."""
    t0 = time.perf_counter()
    captures = load_captures(hands_path, ckpt)
    print(f"{sum(len(y) for _, y in captures.values())} photos in {len(captures)} captures "
          f"(loaded in {time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    freeze = args.freeze[0]
    rows: list[dict[str, Any]] = []
    for name, (x, y) in captures.items():
        for n in args.shots:
            accs, alone, scored, n_classes = [], [], 0, 0
            for seed in range(args.draws):
                drawn = draw_capture(x, y, n, seed, ckpt.classes, name, max(args.shots) + 2)
                if drawn is None:
                    break
                subset, x_rest, y_rest = drawn
                xt = images_to_tensor(torch.from_numpy(x_rest), ckpt.spec.in_channels, ckpt.spec.input_size)
                r = finetune(ckpt, subset, n, seed, freeze, args.device, xt, torch.from_numpy(y_rest))
                accs.append(r["accuracy"])
                alone.append(r["accuracy_alone"])
                scored, n_classes = len(y_rest), len(set(subset.y_train.tolist()))
            if accs:
                rows.append({"capture": name, "shots": n, "freeze": freeze, "classes": n_classes, "scored": scored,
                             "accuracies": accs, "accuracy_mean": statistics.fmean(accs),
                             "accuracy_alone_mean": _mean_or_none(alone)})
                print(f"  capture {name:<16} {n:2d}/class {n_classes} classes: {statistics.fmean(accs):.1%} "
                      f"of {scored}", file=sys.stderr)
    return {"freeze": freeze, "draws": args.draws, "rows": rows}


def print_captures(captures: dict[str, Any]) -> None:
    rows = captures["rows"]
    shots = sorted({r["shots"] for r in rows})
    print(f"\nOne person's hand: fine-tuned on n photos per class of one capture, scored on its other photos "
          f"(freeze {captures['freeze']}, {captures['draws']} draws; mean (min–max))")
    print(f"{'capture':<18} " + " ".join(f"{f'n={n}: classes, scored, accuracy':>40}" for n in shots))
    names = list(dict.fromkeys(r["capture"] for r in rows))
    for name in names:
        cells = []
        for n in shots:
            r = next((r for r in rows if r["capture"] == name and r["shots"] == n), None)
            cells.append(f"{'—':>40}" if r is None else
                         f"{r['classes']:>9} {r['scored']:>7} {r['accuracy_mean']:>9.1%} "
                         f"({min(r['accuracies']):.0%}–{max(r['accuracies']):.0%})".rjust(40))
        print(f"{name:<18} " + " ".join(cells))
    for n in shots:
        rs = [r for r in rows if r["shots"] == n]
        if rs:
            pooled = sum(r["accuracy_mean"] * r["scored"] for r in rs) / sum(r["scored"] for r in rs)
            alone = _mean_or_none([r["accuracy_alone_mean"] for r in rs])
            print(f"n={n}: {len(rs)} captures, mean of captures {statistics.fmean(r['accuracy_mean'] for r in rs):.1%} "
                  f"(each photo alone: {_pct(alone)}) "
                  f"(lowest {min(r['accuracy_mean'] for r in rs):.1%}, highest {max(r['accuracy_mean'] for r in rs):.1%}), "
                  f"over all {sum(r['scored'] for r in rs)} photos scored {pooled:.1%}")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a SIGNS-trained checkpoint (default: train the default LeNet recipe here)")
    p.add_argument("--data-dir", help="the data directory (default $TORCHLAB_DATA_DIR, else datasets/)")
    p.add_argument("--hands", help="webcam-hands' folder (default DATA_DIR/webcam-hands)")
    p.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20, 30],
                   help="photos per class to fine-tune on (the Data page records 30 by default)")
    p.add_argument("--draws", type=int, default=5, help="draws per row: seeds 0..N-1")
    p.add_argument("--freeze", nargs="+", default=["features", "none"], choices=list(FREEZE))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--save-base", help="where to keep the base net trained here (default: not kept)")
    p.add_argument("--base-channels", type=int, choices=[1, 3], help="the base net trained here: input channels")
    p.add_argument("--base-augmentation", choices=list(AUGMENTATIONS),
                   help="the base net trained here: augmentation preset (default: the recipe's)")
    p.add_argument("--base-epochs", type=int, help="the base net trained here: epochs (default: the recipe's)")
    p.add_argument("--by-capture", action="store_true",
                   help="also: one person's hand — fine-tune on n photos of one capture, score on its other photos")
    p.add_argument("--all-photos", action="store_true",
                   help="also: the ceiling — fine-tune all layers on every webcam-hands train photo")
    p.add_argument("--json", default=str(RESULTS / "finetune.json"))
    args = p.parse_args()
    if args.draws < 1 or args.threads < 1 or any(n < 1 for n in args.shots):
        p.error("--draws, --threads and --shots must be 1 or more")

    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
    except DeviceError as e:
        print(f"bench_finetune: --device {args.device}: {e}", file=sys.stderr)
        return 2
    hands_path = Path(args.hands) if args.hands else resolve_data_dir(args.data_dir) / "webcam-hands"
    if not hands_path.is_dir():  # before a base net is trained for nothing
        print(f"bench_finetune: webcam-hands not found at {hands_path} — set TORCHLAB_DATA_DIR (or --data-dir) to the "
              "folder holding webcam-hands/, or give its path with --hands", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    try:
        ckpt, base_figures = base_checkpoint(args)
        t0 = time.perf_counter()
        hands = load_hands(hands_path, ckpt)
        load_seconds = time.perf_counter() - t0
        # Draw the largest set first, so a class too small for it fails before any run.
        for n in sorted(set(args.shots), reverse=True):
            draw(hands, n, 0)
    except BenchError as e:
        print(f"bench_finetune: {e}", file=sys.stderr)
        return 2
    print(f"{hands.describe()} (loaded in {load_seconds:.1f}s)", file=sys.stderr)
    x_test = images_to_tensor(torch.from_numpy(hands.x_test), ckpt.spec.in_channels, ckpt.spec.input_size)
    y_test = torch.from_numpy(hands.y_test)
    base = score(ckpt.model, x_test, y_test, hands.classes, ckpt.mirror_average)

    warm, _ = draw(hands, min(args.shots), 0)
    finetune(ckpt, warm, min(args.shots), 0, args.freeze[0], args.device, x_test, y_test)  # untimed warm-up

    runs: list[dict[str, Any]] = []
    for n in args.shots:
        for seed in range(args.draws):
            subset, drawn = draw(hands, n, seed)
            for freeze in args.freeze:
                r = finetune(ckpt, subset, n, seed, freeze, args.device, x_test, y_test)
                r["drawn_train_indices"] = drawn
                runs.append(r)
                print(f"  {n:2d}/class draw {seed} freeze {freeze:<8} {r['accuracy']:.1%} "
                      f"(w/o 3 {_pct(r['accuracy_without_3'])})  {r['seconds']:.2f}s", file=sys.stderr)
    rows = [summarise([r for r in runs if r["shots"] == n and r["freeze"] == f], hands.classes)
            for n in args.shots for f in args.freeze]
    captures = by_capture(ckpt, hands_path, args) if args.by_capture else None
    ceiling = None
    if args.all_photos:
        ceiling = finetune(ckpt, hands, len(hands.x_train), 0, "none", args.device, x_test, y_test)
        print(f"  all {len(hands.x_train)} train photos, freeze none: {ceiling['accuracy']:.1%} "
              f"in {ceiling['seconds']:.0f}s", file=sys.stderr)
    total = time.perf_counter() - t_start
    load_end = os.getloadavg()

    machine = f"{platform.machine()}, {describe_device(device)}, torch {torch.__version__}"
    if base_figures["seconds"] is None:
        base_line = f"base: {ckpt.describe()} — {base_figures['source']}"
    else:
        base_line = f"base: {ckpt.describe()} — trained here ({base_figures['recipe']}) in {base_figures['seconds']:.1f}s"
    title = (f"Fine-tuning on n webcam-hands photos per class, scored on its {len(hands.x_test)} test photos — "
             f"{machine}\n{args.threads} thread(s) used; load average at start {load_start[0]:.2f} "
             f"(1 min) on {os.cpu_count()} CPUs; {finetune_recipe(ckpt.spec.arch, None, ckpt.classes).describe()} "
             f"({_precision(runs[0]['precision'])})\n{base_line}")
    print_table(base, rows, hands.classes, title)
    n_odd = int((hands.y_test == hands.classes.index(ODD_CLASS)).sum()) if ODD_CLASS in hands.classes else 0
    trains = "; ".join(f"freeze {f}: {next(r['trainable_parameters'] for r in runs if r['freeze'] == f):,}"
                       for f in args.freeze)
    print(f"w/o 3: without the {n_odd} test photos of class \"{ODD_CLASS}\" (other finger convention); alone: each photo read "
          f"without its mirror image (the fine-tuned nets read both, as the app does); per class: mean "
          f"accuracy in %; s median: Trainer built + run, median over draws.\nParameters trained — {trains} (of "
          f"{sum(p.numel() for p in ckpt.model.parameters()):,}). Total {total:.0f}s, load average at end {load_end[0]:.2f}.")

    if ceiling is not None:
        print(f"\nThe ceiling — every one of the {len(hands.x_train)} train photos, all layers, {ceiling['recipe']}: "
              f"{_pct(ceiling['accuracy'])} of the {len(hands.x_test)} test photos (w/o 3 {_pct(ceiling['accuracy_without_3'])}), "
              f"{ceiling['seconds']:.0f}s")
    if captures is not None:
        print_captures(captures)

    out = Path(args.json)
    write_json(out, {
        "machine": machine, "threads": args.threads, "cpus": os.cpu_count(), "device": str(device),
        "load_average_start": load_start, "load_average_end": load_end, "total_seconds": total,
        "base": {**base_figures, "checkpoint": ckpt.describe(), "webcam_hands": base},
        "hands": {"path": str(hands_path), "describe": hands.describe(), "classes": list(hands.classes),
                  "train_per_class": np.bincount(hands.y_train, minlength=hands.num_classes).tolist(),
                  "test_per_class": np.bincount(hands.y_test, minlength=hands.num_classes).tolist(),
                  "image_size": hands.image_size, "load_seconds": load_seconds, "skipped": list(hands.skipped)},
        "draw": "numpy default_rng(seed).permutation per class of the train photos in load order; first is the "
                "Trainer's per-epoch test photo, the next n are trained on",
        "warm_up": f"one untimed fine-tune ({min(args.shots)}/class, draw 0, freeze {args.freeze[0]}) first",
        "rows": rows, "runs": runs, "by_capture": captures, "all_photos": ceiling,
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
