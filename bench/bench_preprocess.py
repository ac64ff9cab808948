"""Time preprocess_image on a 12-megapixel phone-like JPEG (bytes → 1×3×64×64 tensor).

Run from the repo root: ``python bench/bench_preprocess.py [runs]``. Prints p50/p95 in ms.
"""
from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core.preprocess import preprocess_image  # noqa: E402


def phone_like_jpeg(width: int = 4000, height: int = 3000, orientation: int = 6) -> bytes:
    """Smooth gradients plus sensor-like noise at quality 90: sizes like a real photo (~MBs)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    img += rng.normal(0, 12, size=(height, width, 1)).astype(np.float32)
    arr = np.clip(img, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation  # phones store portrait shots sideways plus this tag
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def bench(data: bytes, runs: int, **kwargs) -> tuple[float, float]:
    preprocess_image(data, **kwargs)  # warm-up: first-call imports and allocations
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        preprocess_image(data, **kwargs)
        times.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(times, n=20, method="inclusive")
    return statistics.median(times), q[18]  # p50, p95


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    data = phone_like_jpeg()
    print(f"12 MP JPEG (4000×3000, EXIF orientation 6, {len(data) / 1e6:.1f} MB), {runs} runs:")
    for size, channels in ((64, 3), (64, 1)):
        p50, p95 = bench(data, runs, size=size, channels=channels)
        print(f"  bytes → 1×{channels}×{size}×{size} tensor: p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()
