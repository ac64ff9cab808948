"""Robustness of the default recipes to what a webcam shows and SIGNS does not.

Builds test conditions from the SIGNS test set — hand size and position (zoom in/out, shifts),
tilt, other wall colours, cluttered backgrounds (the hand keyed onto the cat/non-cat set's real
photos when present, else onto procedural scenes), warm/cool light, dark/bright, blur, JPEG
quality 25 — and, when present, scores the nets on webcam-hands (``$TORCHLAB_DATA_DIR/webcam-hands``:
other people's hands in ordinary rooms; overall, without class "3", whose finger convention
differs from SIGNS', and per class). Every generated image is written as a file (PNG, or JPEG
where compression is the condition) and read back through ``core.preprocess``, the app's photo path.

Trains the default recipe for SIGNS (``core.trainer.recipe`` + ``core.augment.augment_for``; the
LeNet's adds generated hands) for each seed, or
measures saved checkpoints, and prints one table: condition → accuracy (mean over seeds, min–max).

    python bench/bench_robustness.py [--model lenet|resnet50] [--seeds 0 1 2] [--epochs N]
        [--channels 1|3] [--augmentation PRESET] [--generated-hands N] [--other-threes SHARE] [--legacy-augment] [--checkpoint PATH ...]
        [--threads N] [--data-dir DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.data  # noqa: E402
from core.augment import AUGMENTATIONS, AugmentConfig, background_mask  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import DatasetError, load_dataset, resolve_data_dir  # noqa: E402
from core.device import describe_device  # noqa: E402
from core.preprocess import ImageError, preprocess_image  # noqa: E402
from core.spec import default_spec  # noqa: E402
from core.trainer import Trainer, evaluate, recipe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
Condition = Callable[[np.ndarray, int], tuple[bytes, str]]  # image, index → file bytes, format


def _png(a: np.ndarray) -> tuple[bytes, str]:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue(), "png"


def _wall(a: np.ndarray) -> tuple[int, int, int]:
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))


def _zoom(factor: float) -> Condition:
    """>1: the hand fills more of the frame (a crop); <1: it is smaller, with more wall around it."""
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        im, side = Image.fromarray(a), a.shape[0]
        if factor >= 1:
            crop = round(side / factor)
            o = (side - crop) // 2
            return _png(np.asarray(im.crop((o, o, o + crop, o + crop))))
        big = round(side / factor)
        canvas = Image.new("RGB", (big, big), _wall(a))
        canvas.paste(im, ((big - side) // 2, (big - side) // 2))
        return _png(np.asarray(canvas))
    return make


def _shift(dx: float, dy: float) -> Condition:
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        side = a.shape[0]
        canvas = Image.new("RGB", (side, side), _wall(a))
        canvas.paste(Image.fromarray(a), (round(dx * side), round(dy * side)))
        return _png(np.asarray(canvas))
    return make


def _tilt(deg: float) -> Condition:
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        return _png(np.asarray(Image.fromarray(a).rotate(deg, Image.Resampling.BICUBIC, fillcolor=_wall(a))))
    return make


def _gains(r: float, g: float, b: float) -> Condition:
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        return _png(np.clip(a * np.array([r, g, b]), 0, 255).round().astype(np.uint8))
    return make


def _blur(radius: float) -> Condition:
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        return _png(np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius))))
    return make


def _jpeg(quality: int) -> Condition:
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=quality)
        return buf.getvalue(), "jpg"
    return make


def _keyed_onto(backdrops: Callable[[int, int], np.ndarray]) -> Condition:
    """The hand cut out by its wall colour (as the augmentation keys it) and put on another backdrop."""
    def make(a: np.ndarray, i: int) -> tuple[bytes, str]:
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        m = background_mask(x)[0, 0].numpy()[..., None]
        out = a * (1 - m) + backdrops(i, a.shape[0]) * m
        return _png(out.round().astype(np.uint8))
    return make


def _flat_walls(i: int, side: int) -> np.ndarray:
    """Painted walls: grey, dark grey, blue, green, beige, dark wood, white-blue, ochre; gently shaded."""
    palette = [(128, 128, 128), (60, 60, 64), (70, 110, 170), (90, 150, 90), (210, 190, 150),
               (95, 65, 45), (215, 225, 240), (200, 150, 60)]
    shade = np.linspace(1.1, 0.85, side)[:, None, None]
    return np.clip(np.array(palette[i % len(palette)], dtype=np.float64) * shade * np.ones((side, side, 3)), 0, 255)


def _photo_backdrops(photos: np.ndarray | None) -> Callable[[int, int], np.ndarray]:
    """Real photos (the cat/non-cat set: rooms, streets, animals) as backdrops; without them, a
    procedural scene of stripes and blurred blobs, made differently from the augmentation's."""
    def make(i: int, side: int) -> np.ndarray:
        if photos is not None:
            p = photos[(i * 7) % len(photos)]
            return np.asarray(Image.fromarray(p).resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64)
        rng = np.random.default_rng(i)
        blobs = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(blobs).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
        stripes = (np.arange(side)[None, :, None] // rng.integers(4, 12)) % 2 * rng.uniform(-60, 60)
        return np.clip(base + stripes, 0, 255)
    return make


def conditions(photos: np.ndarray | None) -> dict[str, Condition]:
    """Every generated condition, by the name the table prints."""
    return {
        "clean": lambda a, i: _png(a),
        "zoom in ×1.3 (hand bigger)": _zoom(1.3),
        "zoom in ×1.6": _zoom(1.6),
        "zoom out ×0.75 (hand smaller)": _zoom(0.75),
        "shifted 12 % left/up": _shift(-0.12, -0.12),
        "shifted 12 % right/down": _shift(0.12, 0.12),
        "tilted +15°": _tilt(15),
        "tilted −15°": _tilt(-15),
        "tilted +30°": _tilt(30),
        "tilted −30°": _tilt(-30),
        "other wall colours": _keyed_onto(_flat_walls),
        "cluttered background" + (" (photos)" if photos is not None else " (procedural)"): _keyed_onto(_photo_backdrops(photos)),
        "warm light (R×1.2, B×0.8)": _gains(1.2, 1.0, 0.8),
        "cool light (R×0.8, B×1.2)": _gains(0.8, 1.0, 1.2),
        "dark (×0.5)": _gains(0.5, 0.5, 0.5),
        "bright (×1.4)": _gains(1.4, 1.4, 1.4),
        "blur (Gaussian r 1.5 px)": _blur(1.5),
        "JPEG quality 25": _jpeg(25),
    }


def build_conditions(x: np.ndarray, photos: np.ndarray | None, size: int, channels: int) -> dict[str, torch.Tensor]:
    """Each condition's images as the net's input, made through files and core.preprocess."""
    out = {}
    for name, make in conditions(photos).items():
        tensors = [preprocess_image(make(a, i)[0], size, channels, name=f"{name} #{i}")[0] for i, a in enumerate(x)]
        out[name] = torch.cat(tensors)
    return out


def load_webcam_hands(root: Path, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """All webcam-hands crops (train and test: none of it is trained on) through core.preprocess."""
    if not root.is_dir():
        return None
    xs, ys = [], []
    for split in ("train", "test"):
        for c in range(6):
            for p in sorted((root / split / str(c)).glob("*.jpg")):
                try:
                    xs.append(preprocess_image(p, size, channels)[0])
                    ys.append(c)
                except ImageError as e:
                    print(f"skipped: {e}", file=sys.stderr)
    return (torch.cat(xs), torch.tensor(ys)) if xs else None


def webcam_scores(model: torch.nn.Module, web: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> dict:
    x, y = web
    pred = evaluate(model, x.to(device), y.to(device)).predictions.numpy()
    yn = y.numpy()
    ok = pred == yn
    confusion = np.zeros((6, 6), dtype=np.int64)
    np.add.at(confusion, (yn, pred), 1)
    return {
        "overall": float(ok.mean()),
        "without 3": float(ok[yn != 3].mean()),
        "per class": {str(c): float(ok[yn == c].mean()) for c in range(6)},
        "confusion": confusion.tolist(),
    }


def measure(model: torch.nn.Module, device: torch.device, conds: dict[str, torch.Tensor], y: torch.Tensor,
            web: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
    out = {"conditions": {name: evaluate(model, x.to(device), y.to(device)).accuracy for name, x in conds.items()}}
    if web is not None:
        out["webcam-hands"] = webcam_scores(model, web, device)
    return out


def train_one(arch: str, channels: int, seed: int, epochs: int | None, dataset, legacy: bool,
              augmentation: str | None = None, generated_hands: int | None = None) -> tuple[torch.nn.Module, dict]:
    config = recipe(arch, dataset.classes).replace(seed=seed)
    if augmentation:
        config = config.replace(augmentation=augmentation)
    if generated_hands is not None:
        config = config.replace(generated_hands=generated_hands)
    if epochs:
        config = config.replace(epochs=epochs)
    trainer = Trainer(default_spec(arch, dataset.num_classes).replace(in_channels=channels), dataset, config)
    if legacy:  # the pre-issue-11 augmentation: AugmentConfig's field defaults, 80 % swaps for ResNet-50
        trainer.augment_config = AugmentConfig(background_p=0.8) if arch == "resnet50" else AugmentConfig()
    t0 = time.perf_counter()
    for _ in trainer.run():
        pass
    info = {"seed": seed, "recipe": config.describe(), "augment": repr(trainer.augment_config),
            "train_seconds": round(time.perf_counter() - t0, 1)}
    print(f"  trained {arch} seed {seed} in {info['train_seconds']} s", file=sys.stderr)
    return trainer.model, info


def _mean_range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1%}"
    return f"{np.mean(values):.1%} ({min(values):.0%}–{max(values):.0%})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["lenet", "resnet50"], default="lenet")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--channels", type=int, choices=[1, 3], help="override the spec's input channels")
    p.add_argument("--augmentation", choices=list(AUGMENTATIONS),
                   help="the augmentation preset to train with (core.augment.AUGMENTATIONS; default: the recipe's)")
    p.add_argument("--generated-hands", type=int, metavar="N",
                   help="generated hands trained on beside SIGNS' photos (default: the recipe's)")
    p.add_argument("--other-threes", type=float, metavar="SHARE",
                   help=f"share of the generated 3s shown with index, middle and ring finger "
                        f"(default {core.data.GENERATED_OTHER_THREES})")
    p.add_argument("--legacy-augment", action="store_true", help="train with the augmentation before issue 11")
    p.add_argument("--checkpoint", nargs="+", help="measure saved checkpoints instead of training")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--data-dir")
    p.add_argument("--json", help=f"default {RESULTS}/robustness-<model>[-<augmentation>][-rgb].json")
    args = p.parse_args()
    if args.other_threes is not None:
        core.data.GENERATED_OTHER_THREES = args.other_threes  # read by core.data.generated_hands at each call
    if args.threads:
        torch.set_num_threads(args.threads)

    data_dir = resolve_data_dir(args.data_dir)
    dataset = load_dataset("signs", data_dir)
    try:
        photos = np.concatenate([load_dataset("cats", data_dir).x_train, load_dataset("cats", data_dir).x_test])
    except DatasetError:
        photos = None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    runs: list[tuple[torch.nn.Module, dict, int, int]] = []  # model, info, channels, size
    if args.checkpoint:
        for path in args.checkpoint:
            ckpt = load_checkpoint(path)
            if tuple(ckpt.classes) != tuple(dataset.classes):
                p.error(f"{path}: its classes {list(ckpt.classes)} are not SIGNS' {list(dataset.classes)}")
            runs.append((ckpt.model.to(device), {"checkpoint": os.path.basename(path), "spec": ckpt.spec.describe()},
                         ckpt.spec.in_channels, ckpt.spec.input_size))
    else:
        arch = args.model
        spec = default_spec(arch, dataset.num_classes)
        channels = args.channels or spec.in_channels
        for seed in args.seeds:
            model, info = train_one(arch, channels, seed, args.epochs, dataset, args.legacy_augment, args.augmentation,
                                    args.generated_hands)
            runs.append((model, info, channels, spec.input_size))

    web_root = data_dir / "webcam-hands"
    y = torch.from_numpy(dataset.y_test)
    cache: dict[tuple[int, int], tuple] = {}
    rows = []
    for model, info, channels, size in runs:
        if (channels, size) not in cache:
            cache[channels, size] = (build_conditions(dataset.x_test, photos, size, channels),
                                     load_webcam_hands(web_root, size, channels))
        conds, web = cache[channels, size]
        rows.append({**info, **measure(model, device, conds, y, web)})

    machine = f"{platform.machine()}, {describe_device(device)}, torch {torch.__version__}"
    label = args.model if not args.checkpoint else "checkpoint"
    used = recipe(args.model, dataset.classes)
    augmentation = "legacy" if args.legacy_augment else args.augmentation or used.augmentation
    generated = 0 if args.checkpoint else used.generated_hands if args.generated_hands is None else args.generated_hands
    threes = core.data.GENERATED_OTHER_THREES
    extra = f", + {generated:,} generated hands ({threes:.0%} of 3s the other way)" if generated else ""
    print(f"\nRobustness of {label} ({augmentation} augmentation{extra}), "
          f"{len(rows)} run(s) — {machine}")
    print(f"{'condition':<36} {'accuracy':>22}")
    for name in rows[0]["conditions"]:
        print(f"{name:<36} {_mean_range([r['conditions'][name] for r in rows]):>22}")
    if "webcam-hands" in rows[0]:
        n = len(cache[next(iter(cache))][1][1])
        print(f"{'webcam-hands, all ' + str(n) + ' crops':<36} {_mean_range([r['webcam-hands']['overall'] for r in rows]):>22}")
        print(f"{'webcam-hands without class 3':<36} {_mean_range([r['webcam-hands']['without 3'] for r in rows]):>22}")
        for c in range(6):
            print(f"{'  class ' + str(c):<36} {_mean_range([r['webcam-hands']['per class'][str(c)] for r in rows]):>22}")
        total = np.sum([r["webcam-hands"]["confusion"] for r in rows], axis=0)
        print("webcam-hands confusion, all runs summed (rows: true 0–5, columns: predicted 0–5)")
        for c, row in enumerate(total):
            print(f"  {c}: " + " ".join(f"{v:5d}" for v in row))
    else:
        print(f"webcam-hands: not found at {web_root} — that column is skipped")
    if photos is None:
        print("cluttered background: cat/non-cat photos not found, procedural scenes used instead")

    suffix = "" if augmentation == "standard" or args.checkpoint else f"-{augmentation}"
    suffix += f"-gen{generated}" + (f"-threes{threes:g}" if threes != 0.5 else "") if generated else ""
    suffix += "-rgb" if not args.checkpoint and args.channels == 3 else ""
    out = Path(args.json) if args.json else RESULTS / f"robustness-{label}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "model": label, "legacy_augment": args.legacy_augment,
                               "augmentation": augmentation, "generated_hands": generated, "other_threes": threes if generated else None,
                               "threads": torch.get_num_threads(), "runs": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
