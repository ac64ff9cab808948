"""Training throughput: the tutorial's own loop against core's Trainer, at the same settings.

The tutorial's loop is a DataLoader over a TensorDataset (per-sample indexing, then collation of
each batch) feeding a plain forward/backward/step, on the net as the tutorial writes it (TorchLab's
generated code). Core's trainer keeps the data on the device and indexes whole batches there. Both
run the same net (LeNet-5 on SIGNS, gray; ResNet-50 on RGB) with
Adam lr 1e-4, weight decay 0.01, batch 128, no augmentation, constant rate — alternately, in one
process, so machine noise hits both alike. Then both train LeNet-5 for 30 epochs at those settings
over three seeds and report test accuracy, to show the speed-ups (bf16, oneDNN pooling, fused
Adam) leave the outcome the same.

Then whole epochs, the user's way: each loop's wall time from an epoch's start to its test accuracy.

    python bench/bench_train.py [--data-dir DIR] [--nets lenet resnet50] [--rounds 7] [--resnet-steps 5] [--epoch-rounds 3]
                                [--outcome-epochs 30] [--json out.json]

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
from core.codegen import generate_code  # noqa: E402
from core.nets import build_model, copy_weights  # noqa: E402
from core.spec import default_spec  # noqa: E402
from core.summary import summarize  # noqa: E402
from core.tensors import images_to_tensor  # noqa: E402
from core.trainer import TrainConfig, Trainer, evaluate  # noqa: E402

BATCH = 128
NAMES = {"lenet": "LeNet-5", "resnet50": "ResNet-50"}
TUTORIAL = TrainConfig(optimizer="adam", lr=1e-4, weight_decay=0.01, batch_size=128, schedule="constant",
                       augment=False, epochs=1, seed=0)


def tutorial_net(spec, seed: int) -> torch.nn.Module:
    """The net as the tutorial writes it — TorchLab's generated code, plain PyTorch layers (no oneDNN
    pooling) — holding the same initial weights as core's net for ``seed``."""
    namespace: dict = {}
    exec(compile(generate_code(spec, "module"), "<tutorial net>", "exec"), namespace)
    return copy_weights(build_model(spec, seed=seed), namespace["model"])


def tutorial_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device, max_steps: int | None = None,
                  epochs: int = 1) -> list[float]:
    """The tutorial's loop; returns the seconds of each full-size step (fetching its batch included)."""
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=0.01)
    model.train()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for step, (xb, yb) in enumerate(loader):
            if max_steps is not None and step >= max_steps:
                break
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()  # the tutorial logs the loss each step, which also syncs a GPU
            t1 = time.perf_counter()
            if len(yb) == BATCH:
                times.append(t1 - t0)
            t0 = t1
    return times


def same_outcome(dataset, config: TrainConfig, epochs: int, seeds: range) -> dict:
    """Test accuracy of LeNet after ``epochs`` at the tutorial's settings, the tutorial's loop against
    core's trainer, over a few seeds: the speed must not come from computing something else."""
    spec = default_spec("lenet", dataset.num_classes)
    device = pick_device(config.device)
    x, y = images_to_tensor(dataset.x_train, spec.in_channels), torch.from_numpy(dataset.y_train)
    x_test, y_test = images_to_tensor(dataset.x_test, spec.in_channels).to(device), torch.from_numpy(dataset.y_test).to(device)
    tutorial, core = [], []
    for seed in seeds:
        torch.manual_seed(seed)  # the DataLoader's shuffling
        model = tutorial_net(spec, seed).to(device)
        tutorial_loop(model, x, y, device, epochs=epochs)
        tutorial.append(evaluate(model, x_test, y_test).accuracy)
        trainer = Trainer(spec, dataset, config.replace(seed=seed, epochs=epochs))
        for _ in trainer.run():
            pass
        core.append(trainer.evaluate_test().accuracy)
        print(f"  LeNet-5 seed {seed}, {epochs} epochs: tutorial {tutorial[-1]:.1%}   core {core[-1]:.1%}", file=sys.stderr)
    return {"net": "LeNet-5", "epochs": epochs, "tutorial_test_acc": tutorial, "core_test_acc": core}


def core_loop(spec, dataset, config: TrainConfig, max_steps: int | None) -> list[float]:
    """Core's trainer; returns the seconds of each full-size step (evaluation excluded)."""
    trainer = Trainer(spec, dataset, config)
    steps = max_steps or len(trainer.batches)
    times, t0 = [], time.perf_counter()
    for _ in trainer.run():  # StepEvents only: we leave before the epoch's test pass
        t1 = time.perf_counter()
        lo, hi = trainer.batches[(trainer.step - 1) % len(trainer.batches)]
        if hi - lo == BATCH:
            times.append(t1 - t0)
        if trainer.step >= steps:
            break
        t0 = t1
    return times


def tutorial_epoch(model: torch.nn.Module, x, y, x_test, y_test, device) -> float:
    """Seconds of one whole epoch of the tutorial's loop, its test-set evaluation included."""
    t0 = time.perf_counter()
    tutorial_loop(model, x, y, device)
    evaluate(model, x_test, y_test)
    return time.perf_counter() - t0


def core_epoch(spec, dataset, config: TrainConfig) -> float:
    """Seconds of one whole epoch of core's trainer, as the user waits for it: from the first step
    to the epoch's figures (its test-set evaluation included)."""
    trainer = Trainer(spec, dataset, config.replace(epochs=1))
    t0 = time.perf_counter()
    for _ in trainer.run():
        pass
    return time.perf_counter() - t0


def compare_epochs(name: str, arch: str, dataset, rounds: int, config: TrainConfig) -> dict:
    """Whole epochs, the user's way: the wall time from an epoch's start to its test accuracy.

    Alternating rounds as in :func:`compare`; a warm-up epoch of each first builds oneDNN's kernels.
    """
    spec = default_spec(arch, dataset.num_classes)
    device = pick_device(config.device)
    x, y = images_to_tensor(dataset.x_train, spec.in_channels), torch.from_numpy(dataset.y_train)
    x_test = images_to_tensor(dataset.x_test, spec.in_channels).to(device)
    y_test = torch.from_numpy(dataset.y_test).to(device)
    ours, theirs = [], []
    for r in range(rounds + 1):
        t = tutorial_epoch(tutorial_net(spec, r).to(device), x, y, x_test, y_test, device)
        o = core_epoch(spec, dataset, config.replace(seed=r))
        if r:
            theirs.append(t)
            ours.append(o)
            print(f"  {name} epoch {r}: tutorial {t:6.2f} s   core {o:6.2f} s", file=sys.stderr)
    t, o = statistics.median(theirs), statistics.median(ours)
    return {"net": name, "tutorial_epoch_s": t, "core_epoch_s": o, "ratio": t / o, "rounds": rounds}


def compare(name: str, arch: str, dataset, rounds: int, max_steps: int | None, config: TrainConfig) -> dict:
    """Images per second of each loop: batch size over the median step time, over all rounds.

    Rounds alternate the two loops so drift in machine load hits both, and the median of many
    steps keeps a burst of noise (this shared VM has them) from deciding the ratio. Each round's
    first step is dropped from both: it includes oneDNN building its kernels.
    """
    spec = default_spec(arch, dataset.num_classes)
    device = pick_device(config.device)
    x = images_to_tensor(dataset.x_train, spec.in_channels)
    y = torch.from_numpy(dataset.y_train)
    ours, theirs = [], []
    for r in range(rounds):
        t = tutorial_loop(tutorial_net(spec, r).to(device), x, y, device, max_steps)[1:]
        o = core_loop(spec, dataset, config.replace(seed=r), max_steps)[1:]
        theirs += t
        ours += o
        print(f"  {name} round {r + 1}: tutorial {BATCH / statistics.median(t):7.1f} img/s   "
              f"core {BATCH / statistics.median(o):7.1f} img/s", file=sys.stderr)
    t, o = BATCH / statistics.median(theirs), BATCH / statistics.median(ours)
    return {"net": name, "tutorial_img_s": t, "core_img_s": o, "ratio": o / t, "rounds": rounds,
            "steps_timed": {"tutorial": len(theirs), "core": len(ours)}}


def matmul_tflops(device, n: int = 8192, repeats: int = 20) -> float:
    """What a bf16 matrix multiply reaches on ``device``: the ceiling the nets' TFLOP/s are read against."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def achieved_tflops(arch: str, dataset, img_s: float) -> float:
    """Training FLOP/s at ``img_s``: forward multiply-adds × 2 FLOPs × 3 (forward, and backward's two)."""
    macs = summarize(build_model(default_spec(arch, dataset.num_classes), seed=0), default_spec(arch, dataset.num_classes)).mult_adds
    return 6 * macs * img_s / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--dataset", default="signs", choices=["signs", "synthetic"])
    p.add_argument("--nets", nargs="+", default=list(NAMES), choices=list(NAMES))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--resnet-steps", type=int, default=5)
    p.add_argument("--epoch-rounds", type=int, default=3, help="whole epochs of each loop per net (0: skip)")
    p.add_argument("--device", default="auto")
    p.add_argument("--outcome-epochs", type=int, default=30, help="epochs of the accuracy comparison (0: skip it)")
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "train.json"))
    args = p.parse_args()
    dataset = load_dataset(args.dataset, args.data_dir)
    config = TUTORIAL.replace(device=args.device)
    # One net at a time, its steps then its whole epochs: a ResNet-50 run in between leaves the
    # process (allocator, oneDNN's caches) in another state, which moved LeNet's figures.
    nets = [(NAMES[arch], arch, None if arch == "lenet" else args.resnet_steps) for arch in args.nets]
    rows, epochs = [], []
    for name, arch, steps in nets:
        rows.append(compare(name, arch, dataset, args.rounds, steps, config))
        if args.epoch_rounds:
            epochs.append(compare_epochs(name, arch, dataset, args.epoch_rounds, config))
    if pick_device(args.device).type == "cuda":  # the same loops with each step captured in a CUDA graph
        graph = config.replace(cuda_graph=True)
        captured = [compare(f"{name} graph", arch, dataset, args.rounds, steps, graph) for name, arch, steps in nets]
        ceiling = matmul_tflops(pick_device(args.device))
        for row, arch in zip(rows + captured, [arch for _, arch, _ in nets] * 2):
            row["tflops"] = achieved_tflops(arch, dataset, row["core_img_s"])
            row["matmul_tflops"] = ceiling
        rows += captured
    outcome = (same_outcome(dataset, config, args.outcome_epochs, range(3))
               if args.outcome_epochs and "lenet" in args.nets else None)
    machine = f"{platform.machine()}, {describe_device(pick_device(args.device))}, torch {torch.__version__}"
    print(f"\nTraining throughput, same settings (Adam 1e-4, L2 0.01, batch 128) — {machine}")
    print(f"{'net':<16} {'tutorial img/s':>15} {'core img/s':>12} {'ratio':>7}")
    for r in rows:
        flops = f"   {r['tflops']:.1f} of {r['matmul_tflops']:.0f} TFLOP/s (bf16 matmul)" if "tflops" in r else ""
        print(f"{r['net']:<16} {r['tutorial_img_s']:>15.1f} {r['core_img_s']:>12.1f} {r['ratio']:>6.2f}×{flops}")
    if epochs:
        print(f"\nWhole epochs, the user's way (training + the test-set evaluation), median of {args.epoch_rounds}")
        print(f"{'net':<10} {'tutorial s':>11} {'core s':>8} {'speed-up':>9}")
        for r in epochs:
            print(f"{r['net']:<10} {r['tutorial_epoch_s']:>11.2f} {r['core_epoch_s']:>8.2f} {r['ratio']:>8.2f}×")
    if outcome:
        fmt = ", ".join
        print(f"\nSame accuracy outcome — LeNet-5 test accuracy after {outcome['epochs']} epochs, seeds 0–2: "
              f"tutorial {fmt(f'{a:.1%}' for a in outcome['tutorial_test_acc'])}; "
              f"core {fmt(f'{a:.1%}' for a in outcome['core_test_acc'])}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows, "epochs": epochs, "same_outcome": outcome}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
