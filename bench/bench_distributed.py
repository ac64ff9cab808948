"""Training throughput on one process and on several (torchrun, DDP), the command line's own figures.

Runs ``python -m core.train`` once as one process and once under ``torchrun --nproc-per-node N``
for each process count, alternately for a few rounds, and reads each run's JSON line:
images per second over all processes (the epochs' mean) and the test accuracy it ended at. The
per-process batch is ``--batch-size``; the global batch is that times the process count, so the
one-process rows are run at both the per-process and the global batch.

    python bench/bench_distributed.py [--data-dir DIR] [--dataset signs] [--model lenet] [--epochs 5]
                                      [--batch-size 64] [--procs 2] [--rounds 2] [--json out.json]

Prints a table and writes JSON (default bench/results/distributed.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(procs: int, threads: int, batch: int, args: argparse.Namespace, out: Path) -> dict:
    """One training run's JSON line (``procs`` > 1: under torchrun, ``threads`` intra-op threads each)."""
    flags = ["-m", "core.train", "--dataset", args.dataset, "--model", args.model, "--epochs", str(args.epochs),
             "--batch-size", str(batch), "--out", str(out)]
    if args.data_dir:
        flags += ["--data-dir", args.data_dir]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"] if procs > 1 \
        else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([*launcher, *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({procs} processes):\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--dataset", default="signs")
    p.add_argument("--model", default="lenet")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "distributed.json"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    setups = [  # (label, processes, threads each, per-process batch)
        (f"1 process × 1 thread, batch {args.batch_size}", 1, 1, args.batch_size),
        (f"1 process × {cores} threads, batch {args.batch_size}", 1, cores, args.batch_size),
        (f"1 process × {cores} threads, batch {args.batch_size * args.procs}", 1, cores, args.batch_size * args.procs),
        (f"{args.procs} processes × {max(1, cores // args.procs)} thread(s), batch {args.batch_size} each",
         args.procs, max(1, cores // args.procs), args.batch_size),
    ]
    results: dict[str, list[dict]] = {label: [] for label, *_ in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label, procs, threads, batch in setups:
                result = run(procs, threads, batch, args, Path(tmp) / f"r{r}-{procs}.pt")
                results[label].append(result)
                print(f"  round {r + 1}: {label}: {result['images_per_second']:.0f} img/s, "
                      f"test {result['test_acc']:.1%}", file=sys.stderr)
    rows = [{"setup": label, "processes": procs, "threads_each": threads, "batch_per_process": batch,
             "global_batch": batch * procs,
             "images_per_second": statistics.median(r["images_per_second"] for r in results[label]),
             "test_acc": [r["test_acc"] for r in results[label]]}
            for label, procs, threads, batch in setups]
    machine = f"{platform.machine()}, {cores} CPU cores, {args.model} on {args.dataset}, {args.epochs} epochs"
    print(f"\nTraining throughput, one process vs {args.procs} (torchrun, gloo) — {machine}")
    print(f"{'setup':<48} {'img/s':>8}  test accuracy per round")
    for row in rows:
        print(f"{row['setup']:<48} {row['images_per_second']:>8.0f}  {', '.join(f'{a:.1%}' for a in row['test_acc'])}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
