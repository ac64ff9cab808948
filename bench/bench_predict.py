"""Prediction latency: a 12-megapixel JPEG's bytes → class probabilities, LeNet-5 and ResNet-50.

    python bench/bench_predict.py [runs] [--json out.json]

Untrained weights time the same as trained ones. Prints p50/p95 in ms and writes JSON.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_preprocess import phone_like_jpeg  # noqa: E402
from core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from core.inference import predict_image  # noqa: E402
from core.nets import build_model  # noqa: E402
from core.spec import default_spec  # noqa: E402


def checkpoint_for(arch: str, tmp: Path):
    spec = default_spec(arch, 6)
    path = save_checkpoint(tmp / f"{arch}.pt", build_model(spec, seed=0), spec, "module", [str(i) for i in range(6)])
    return load_checkpoint(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=int, nargs="?", default=30)
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "predict.json"))
    args = p.parse_args()
    import tempfile

    photo = phone_like_jpeg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("lenet", "resnet50"):
            ckpt = checkpoint_for(arch, Path(tmp))
            predict_image(ckpt, photo)  # warm-up
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                predict_image(ckpt, photo)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            rows.append({"net": arch, "p50_ms": statistics.median(times),
                         "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))], "runs": args.runs})
    machine = f"{platform.machine()}, CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"
    print(f"Prediction from a {len(photo) / 1e6:.1f} MB 12-megapixel JPEG — {machine}")
    print(f"{'net':<10} {'p50 ms':>8} {'p95 ms':>8}")
    for r in rows:
        print(f"{r['net']:<10} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "photo_bytes": len(photo), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
