"""Time to accuracy of the default recipes, and their robustness to photo-like shifts.

For each net (LeNet-5, ResNet-50) trains the app's default recipe on SIGNS and records the training
seconds (per-epoch evaluation included) until the test accuracy first reaches 95 % and 97 %, then
measures the final net on the SIGNS test set under shifted brightness/contrast, zoom and crop,
small rotations and other backgrounds.

    python bench/bench_recipes.py [--data-dir DIR] [--nets lenet resnet50] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data import load_dataset  # noqa: E402
from core.device import describe_device  # noqa: E402
from core.spec import default_spec  # noqa: E402
from core.tensors import images_to_tensor  # noqa: E402
from core.trainer import EpochEvent, Trainer, evaluate, recipe  # noqa: E402


def _affine(x: torch.Tensor, zoom: float = 1.0, angle_deg: float = 0.0, dx: float = 0.0) -> torch.Tensor:
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a) / zoom, -math.sin(a) / zoom, dx], [math.sin(a) / zoom, math.cos(a) / zoom, 0.0]])
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _new_background(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Swap the plain SIGNS backdrop (estimated from the border) for a coloured gradient + noise."""
    g = torch.Generator().manual_seed(seed)
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)  # N,3,4W
    bg = border.median(dim=-1).values[..., None, None]  # N,3,1,1
    mask = ((x - bg).abs().amax(dim=1, keepdim=True) < 0.12).float()  # 1 where backdrop
    n, _, h, w = x.shape
    colors = torch.rand(n, 3, 1, 1, generator=g)
    ramp = torch.linspace(0.6, 1.2, w).view(1, 1, 1, w)
    other = (colors * ramp + 0.08 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    return x * (1 - mask) + other * mask


SHIFTS = {
    "clean": lambda x: x,
    "brighter +0.2": lambda x: (x + 0.2).clamp(0, 1),
    "darker −0.2": lambda x: (x - 0.2).clamp(0, 1),
    "contrast ×0.6": lambda x: ((x - x.mean(dim=(1, 2, 3), keepdim=True)) * 0.6 + x.mean(dim=(1, 2, 3), keepdim=True)),
    "zoom in 1.15 (crop)": lambda x: _affine(x, zoom=1.15),
    "zoom out 0.85": lambda x: _affine(x, zoom=0.85),
    "shifted 10 %": lambda x: _affine(x, dx=0.2),
    "rotated +10°": lambda x: _affine(x, angle_deg=10),
    "rotated −10°": lambda x: _affine(x, angle_deg=-10),
    "other background": _new_background,
}


def robustness(trainer: Trainer, dataset) -> dict[str, float]:
    """Test accuracy of the trained net under each shift (applied to RGB, then converted as usual)."""
    rgb = images_to_tensor(dataset.x_test, 3)
    y = torch.from_numpy(dataset.y_test).to(trainer.device)
    out = {}
    for name, shift in SHIFTS.items():
        x = shift(rgb).clamp(0, 1)
        if trainer.spec.in_channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out[name] = evaluate(trainer.model, x.to(trainer.device), y).accuracy
    return out


def time_to_accuracy(arch: str, dataset, epochs: int | None) -> dict:
    config = recipe(arch, dataset.classes)
    if epochs:
        config = config.replace(epochs=epochs)
    trainer = Trainer(default_spec(arch, dataset.num_classes), dataset, config)
    reached: dict[str, float | None] = {"95%": None, "97%": None}
    curve, t0 = [], time.perf_counter()
    for event in trainer.run():
        if isinstance(event, EpochEvent):
            elapsed = time.perf_counter() - t0
            curve.append((event.epoch, round(elapsed, 2), event.test_acc))
            print(f"  {arch} epoch {event.epoch:3d}  {elapsed:7.1f}s  test {event.test_acc:.1%}", file=sys.stderr)
            for k, target in (("95%", 0.95), ("97%", 0.97)):
                if reached[k] is None and event.test_acc >= target:
                    reached[k] = elapsed
    return {
        "net": arch, "recipe": config.describe(), "seconds_to_95": reached["95%"], "seconds_to_97": reached["97%"],
        "final_test_acc": curve[-1][2], "total_seconds": curve[-1][1], "curve": curve,
        "robustness": robustness(trainer, dataset),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--nets", nargs="+", default=["lenet", "resnet50"])
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "recipes.json"))
    args = p.parse_args()
    dataset = load_dataset("signs", args.data_dir)
    rows = [time_to_accuracy(arch, dataset, args.epochs) for arch in args.nets]
    machine = f"{platform.machine()}, {describe_device(torch.device('cpu') if not torch.cuda.is_available() else torch.device('cuda'))}, torch {torch.__version__}"

    def fmt(s: float | None) -> str:
        return f"{s:.1f} s" if s is not None else "not reached"

    print(f"\nDefault recipes on SIGNS — {machine}")
    print(f"{'net':<10} {'to 95 %':>12} {'to 97 %':>12} {'final':>7} {'total':>9}")
    for r in rows:
        print(f"{r['net']:<10} {fmt(r['seconds_to_95']):>12} {fmt(r['seconds_to_97']):>12} "
              f"{r['final_test_acc']:>6.1%} {r['total_seconds']:>8.1f}s")
    print("\nTest accuracy under shifts")
    print(f"{'shift':<22}" + "".join(f"{r['net']:>10}" for r in rows))
    for name in SHIFTS:
        print(f"{name:<22}" + "".join(f"{r['robustness'][name]:>10.1%}" for r in rows))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
