"""Time generate_finger_set at its defaults (1,200 train + 120 test images, 64×64).

Run from the repo root: ``python bench/bench_synthetic.py [runs]``. Prints wall-clock p50 and best,
plus the process CPU time: generation is single-threaded numpy, so on a busy shared machine the CPU
time is the better estimate of what an idle one would take.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from core.synthetic import generate_finger_set  # noqa: E402


def bench(runs: int, **kwargs) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds for each of ``runs`` calls, after one warm-up call."""
    generate_finger_set(**kwargs)  # warm-up: first-call imports and allocations
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        generate_finger_set(**kwargs)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    wall, cpu = bench(runs)
    print(f"generate_finger_set() (1200 + 120 images, 64×64), {runs} runs:")
    print(f"  wall p50 {statistics.median(wall) * 1000:6.0f} ms   best {min(wall) * 1000:6.0f} ms")
    print(f"  cpu  p50 {statistics.median(cpu) * 1000:6.0f} ms   best {min(cpu) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
