"""Training throughput: the tutorial's own loop against core's Trainer, at the same settings.

The tutorial's loop is a DataLoader over a TensorDataset (per-sample indexing, then collation of
each batch) feeding a plain forward/backward/step. Core's trainer keeps the data on the device and
indexes whole batches there. Both run the same net (LeNet-5 on SIGNS, gray; ResNet-50 on RGB) with
Adam lr 1e-4, weight decay 0.01, batch 128, no augmentation, constant rate — alternately, in one
process, so machine noise hits both alike. Then both train LeNet-5 for 30 epochs at those settings
over three seeds and report test accuracy, to show the speed-ups (bf16, oneDNN pooling, fused
Adam) leave the outcome the same.

    python bench/bench_train.py [--data-dir DIR] [--rounds 3] [--resnet-steps 3] [--outcome-epochs 30] [--json out.json]

Prints a table and writes JSON (default bench/results/train.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data import load_dataset  # noqa: E402
from core.device import describe_device, pick_device  # noqa: E402
from core.nets import build_model  # noqa: E402
from core.spec import default_spec  # noqa: E402
from core.tensors import images_to_tensor  # noqa: E402
from core.trainer import TrainConfig, Trainer, evaluate  # noqa: E402

TUTORIAL = TrainConfig(optimizer="adam", lr=1e-4, weight_decay=0.01, batch_size=128, schedule="constant",
                       augment=False, epochs=1, seed=0)


def tutorial_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, max_steps: int | None, device,
                  epochs: int = 1) -> float:
    """The tutorial's loop; returns images per second over the steps run."""
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=0.01)
    model.train()
    seen, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for step, (xb, yb) in enumerate(loader):
            if max_steps is not None and step >= max_steps:
                break
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()  # the tutorial logs the loss each step, which also syncs a GPU
            seen += len(yb)
    return seen / (time.perf_counter() - t0)


def same_outcome(dataset, config: TrainConfig, epochs: int, seeds: range) -> dict:
    """Test accuracy of LeNet after ``epochs`` at the tutorial's settings, the tutorial's loop against
    core's trainer, over a few seeds: the speed must not come from computing something else."""
    spec = default_spec("lenet", dataset.num_classes)
    device = pick_device(config.device)
    x, y = images_to_tensor(dataset.x_train, 1), torch.from_numpy(dataset.y_train)
    x_test, y_test = images_to_tensor(dataset.x_test, 1).to(device), torch.from_numpy(dataset.y_test).to(device)
    tutorial, core = [], []
    for seed in seeds:
        torch.manual_seed(seed)  # the DataLoader's shuffling
        model = build_model(spec, seed=seed).to(device)
        tutorial_loop(model, x, y, None, device, epochs=epochs)
        tutorial.append(evaluate(model, x_test, y_test).accuracy)
        trainer = Trainer(spec, dataset, config.replace(seed=seed, epochs=epochs))
        for _ in trainer.run():
            pass
        core.append(trainer.evaluate_test().accuracy)
        print(f"  LeNet-5 seed {seed}, {epochs} epochs: tutorial {tutorial[-1]:.1%}   core {core[-1]:.1%}", file=sys.stderr)
    return {"net": "LeNet-5", "epochs": epochs, "tutorial_test_acc": tutorial, "core_test_acc": core}


def core_loop(spec, dataset, config: TrainConfig, max_steps: int | None) -> float:
    """Core's trainer; returns training images per second (evaluation excluded, as above)."""
    trainer = Trainer(spec, dataset, config)
    steps = max_steps or len(trainer.batches)
    seen, t0 = 0, time.perf_counter()
    for _ in trainer.run():  # StepEvents only: we leave before the epoch's test pass
        lo, hi = trainer.batches[(trainer.step - 1) % len(trainer.batches)]
        seen += hi - lo
        if trainer.step >= steps:
            break
    return seen / (time.perf_counter() - t0)


def compare(name: str, arch: str, dataset, rounds: int, max_steps: int | None, config: TrainConfig) -> dict:
    spec = default_spec(arch, dataset.num_classes)
    device = pick_device(config.device)
    x = images_to_tensor(dataset.x_train, spec.in_channels)
    y = torch.from_numpy(dataset.y_train)
    ours, theirs = [], []
    for r in range(rounds):  # alternate so drift in machine load hits both
        theirs.append(tutorial_loop(build_model(spec, seed=r).to(device), x, y, max_steps, device))
        ours.append(core_loop(spec, dataset, config.replace(seed=r), max_steps))
        print(f"  {name} round {r + 1}: tutorial {theirs[-1]:7.1f} img/s   core {ours[-1]:7.1f} img/s", file=sys.stderr)
    t, o = statistics.median(theirs), statistics.median(ours)
    return {"net": name, "tutorial_img_s": t, "core_img_s": o, "ratio": o / t, "rounds": rounds,
            "steps_per_round": max_steps or "1 epoch"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--dataset", default="signs", choices=["signs", "synthetic"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--resnet-steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--outcome-epochs", type=int, default=30, help="epochs of the accuracy comparison (0: skip it)")
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "train.json"))
    args = p.parse_args()
    dataset = load_dataset(args.dataset, args.data_dir)
    config = TUTORIAL.replace(device=args.device)
    rows = [
        compare("LeNet-5", "lenet", dataset, args.rounds, None, config),
        compare("ResNet-50", "resnet50", dataset, args.rounds, args.resnet_steps, config),
    ]
    outcome = same_outcome(dataset, config, args.outcome_epochs, range(3)) if args.outcome_epochs else None
    machine = f"{platform.machine()}, {describe_device(pick_device(args.device))}, torch {torch.__version__}"
    print(f"\nTraining throughput, same settings (Adam 1e-4, L2 0.01, batch 128) — {machine}")
    print(f"{'net':<10} {'tutorial img/s':>15} {'core img/s':>12} {'ratio':>7}")
    for r in rows:
        print(f"{r['net']:<10} {r['tutorial_img_s']:>15.1f} {r['core_img_s']:>12.1f} {r['ratio']:>6.2f}×")
    if outcome:
        fmt = ", ".join
        print(f"\nSame accuracy outcome — LeNet-5 test accuracy after {outcome['epochs']} epochs, seeds 0–2: "
              f"tutorial {fmt(f'{a:.1%}' for a in outcome['tutorial_test_acc'])}; "
              f"core {fmt(f'{a:.1%}' for a in outcome['core_test_acc'])}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows, "same_outcome": outcome}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
